"""Forms of the coordinator pages: the study wizard, editing, readers, questions, case lists."""

from __future__ import annotations

from django import forms

from readerstudy import building, selectors, services
from readerstudy.models import AnswerMode, StudyQuestion, UntouchedRanking
from retrieval.models import Dataset, ModelRun, Split, SplitPart

MAX_CASE_LIST_BYTES = 5 * 1024 * 1024


class DatasetTaggedMixin:
    """Options carry data-dataset="<id>" so the wizard can show only the chosen dataset's runs and splits."""

    def create_option(self, name, value, label, selected, index, subindex=None, attrs=None):
        option = super().create_option(name, value, label, selected, index, subindex=subindex, attrs=attrs)
        instance = getattr(value, "instance", None)
        if instance is not None:
            option["attrs"]["data-dataset"] = instance.dataset_id
        return option


class DatasetTaggedSelect(DatasetTaggedMixin, forms.Select):
    pass


class DatasetTaggedCheckboxes(DatasetTaggedMixin, forms.CheckboxSelectMultiple):
    pass


class UsernameChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        return obj.get_username()


class UsernameMultipleChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj) -> str:
        return obj.get_username()


class RunChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        return f"{obj.name} ({obj.method}, {obj.status})"


class RunMultipleChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj) -> str:
        return f"{obj.name} ({obj.method}, {obj.status})"


def _choices_csv(value: str) -> list[str]:
    return [c.strip() for c in value.split(",") if c.strip()]


class StudyWizardForm(forms.Form):
    """Everything a study needs, in the order of the wizard's sections."""

    # 1. Basics
    name = forms.CharField(max_length=200)
    instructions = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}), required=False, help_text="Shown to readers before the first case."
    )
    # 2. Dataset and answer mode
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.order_by("name"))
    mode = forms.ChoiceField(choices=AnswerMode.choices, initial=AnswerMode.CHOOSE_K)
    k = forms.IntegerField(
        min_value=1,
        max_value=services.MAX_CATALOGUE - 1,
        initial=5,
        required=False,
        label="k (candidates to pick)",
        help_text="Choose k: how many candidates each reader picks (paper 000: 5 of 10).",
    )
    rating_min = forms.IntegerField(min_value=0, max_value=99, initial=1)
    rating_max = forms.IntegerField(min_value=1, max_value=100, initial=5)
    allow_revisions = forms.BooleanField(required=False, help_text="Readers may change a submitted answer.")
    untouched_ranking = forms.ChoiceField(
        choices=UntouchedRanking.choices,
        initial=UntouchedRanking.WARN,
        label="Untouched ranking",
        help_text="Rank all: a ranking still in the order it was shown is allowed, warned about, or refused.",
    )
    show_candidate_labels = forms.BooleanField(required=False, help_text="Readers see the candidates' labels.")
    show_saliency = forms.BooleanField(required=False, help_text="Readers see saliency overlays where available.")
    # 3. Builder, sizes and seed
    builder = forms.ChoiceField(choices=list(building.BUILDERS.items()), initial=building.STRATIFIED_RANDOM)
    seed = forms.IntegerField(
        min_value=0, max_value=2**63 - 1, help_text="Recorded with the study: the same seed rebuilds the same cases."
    )
    n_queries = forms.IntegerField(
        min_value=1, max_value=services.MAX_CASES, initial=10, required=False, label="Number of queries (cases)"
    )
    split = forms.ModelChoiceField(
        queryset=Split.objects.order_by("name"),
        required=False,
        widget=DatasetTaggedSelect,
        empty_label="No split: any image of the dataset",
        help_text="With a split, queries come from its test part by default.",
    )
    query_part = forms.ChoiceField(choices=SplitPart.choices, initial=SplitPart.TEST, required=False)
    query_label = forms.CharField(
        max_length=100,
        required=False,
        label="Stratify queries by label",
        help_text="Optional: a label name; queries keep its class proportions.",
    )
    pool_part = forms.ChoiceField(
        choices=[(building.ALL_IMAGES, "Every image of the dataset"), *SplitPart.choices],
        required=False,
        label="Candidate pool",
    )
    exclude_queries = forms.BooleanField(
        required=False, initial=True, label="Never show a query image as a candidate of another case"
    )
    catalogue_size = forms.IntegerField(
        min_value=1,
        max_value=services.MAX_CATALOGUE,
        initial=10,
        required=False,
        help_text="Stratified random and top N: candidates per case.",
    )
    class_label = forms.CharField(
        max_length=100,
        required=False,
        label="Class label",
        help_text="Stratified random: the label whose values are the classes.",
    )
    allocation = forms.ChoiceField(
        choices=[("proportional", "Keep the pool's class proportions"), ("equal", "Equal numbers per class")],
        initial="proportional",
        required=False,
        label="Strata",
        help_text="How classes are filled when stratifying queries or catalogues.",
    )
    nearest_k = forms.IntegerField(
        min_value=1,
        max_value=services.MAX_CATALOGUE // 2,
        initial=5,
        required=False,
        label="k nearest + k farthest",
        help_text="Paper 000: 5 + 5 = a catalogue of 10.",
    )
    run = RunChoiceField(
        queryset=ModelRun.objects.order_by("name"), required=False, widget=DatasetTaggedSelect, label="Model run"
    )
    runs = RunMultipleChoiceField(
        queryset=ModelRun.objects.order_by("name"),
        required=False,
        widget=DatasetTaggedCheckboxes,
        label="Model runs to pool",
    )
    per_method = forms.IntegerField(
        min_value=1, max_value=services.MAX_CATALOGUE, initial=5, required=False, label="Top candidates per run"
    )
    case_list = forms.FileField(
        required=False,
        label="Case list (CSV)",
        help_text="Columns query, candidate (image ids or file names), optional position.",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,.txt"}),
    )
    # 4. Readers
    readers = UsernameMultipleChoiceField(
        queryset=selectors.eligible_readers(), required=False, widget=forms.CheckboxSelectMultiple
    )
    ground_truth_reader = UsernameChoiceField(
        queryset=selectors.eligible_readers(),
        required=False,
        empty_label="None",
        help_text="Papers 001/003: R1's answers are the ground truth.",
    )

    SECTIONS = (
        ("basics", "1. Basics", ("name", "instructions")),
        (
            "design",
            "2. Dataset and answer mode",
            (
                "dataset",
                "mode",
                "k",
                "rating_min",
                "rating_max",
                "allow_revisions",
                "untouched_ranking",
                "show_candidate_labels",
                "show_saliency",
            ),
        ),
        (
            "builder",
            "3. Cases: builder, sizes and seed",
            (
                "builder",
                "seed",
                "n_queries",
                "split",
                "query_part",
                "query_label",
                "pool_part",
                "exclude_queries",
                "allocation",
                "catalogue_size",
                "class_label",
                "nearest_k",
                "run",
                "runs",
                "per_method",
                "case_list",
            ),
        ),
        ("readers", "4. Readers", ("readers", "ground_truth_reader")),
    )
    # Which builder shows which field (wizard.js hides the others; the server ignores them).
    BUILDER_FIELDS = {
        "n_queries": building.RUN_BUILDERS + (building.STRATIFIED_RANDOM,),
        "split": building.RUN_BUILDERS + (building.STRATIFIED_RANDOM,),
        "query_part": building.RUN_BUILDERS + (building.STRATIFIED_RANDOM,),
        "query_label": building.RUN_BUILDERS + (building.STRATIFIED_RANDOM,),
        "pool_part": building.RUN_BUILDERS + (building.STRATIFIED_RANDOM,),
        "exclude_queries": building.RUN_BUILDERS + (building.STRATIFIED_RANDOM,),
        "catalogue_size": (building.STRATIFIED_RANDOM, building.TOP_N),
        "class_label": (building.STRATIFIED_RANDOM,),
        "allocation": building.RUN_BUILDERS + (building.STRATIFIED_RANDOM,),
        "nearest_k": (building.KNN_FARTHEST,),
        "run": (building.KNN_FARTHEST, building.TOP_N),
        "runs": (building.POOLED,),
        "per_method": (building.POOLED,),
        "case_list": (building.CASE_LIST,),
    }

    MODE_FIELDS = {"k": (AnswerMode.CHOOSE_K,), "rating_min": (AnswerMode.RATE,), "rating_max": (AnswerMode.RATE,)}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial.setdefault("seed", services.new_seed())
        self.fields["readers"].queryset = selectors.eligible_readers()
        self.fields["ground_truth_reader"].queryset = selectors.eligible_readers()

    def sections(self) -> list[dict]:
        """Per wizard section: id, title and its fields, each with the builders and modes that use it."""
        return [
            {
                "id": sid,
                "title": title,
                "fields": [
                    {
                        "field": self[f],
                        "builders": " ".join(self.BUILDER_FIELDS.get(f, ())),
                        "modes": " ".join(self.MODE_FIELDS.get(f, ())),
                    }
                    for f in names
                ],
            }
            for sid, title, names in self.SECTIONS
        ]

    def clean(self):
        data = super().clean()
        dataset = data.get("dataset")
        if data.get("mode") == AnswerMode.CHOOSE_K and not data.get("k"):
            self.add_error("k", "Choose k needs k (how many candidates each reader picks).")
        builder = data.get("builder")
        if builder in building.RUN_BUILDERS + (building.STRATIFIED_RANDOM,) and not data.get("n_queries"):
            self.add_error("n_queries", "How many queries (cases) should the study have?")
        if builder == building.STRATIFIED_RANDOM and not data.get("class_label"):
            self.add_error("class_label", "The stratified random builder needs the label whose values are the classes.")
        if builder in (building.KNN_FARTHEST, building.TOP_N) and not data.get("run"):
            self.add_error("run", "This builder ranks with a model run: choose one.")
        if builder == building.POOLED and not data.get("runs"):
            self.add_error("runs", "Pooling needs at least one model run.")
        if builder == building.CASE_LIST and not data.get("case_list"):
            self.add_error("case_list", "Choose the case-list CSV file.")
        if data.get("case_list") and data["case_list"].size > MAX_CASE_LIST_BYTES:
            self.add_error("case_list", "The case list is larger than 5 MB.")
        for field in ("split", "run"):
            if dataset and data.get(field) and data[field].dataset_id != dataset.pk:
                self.add_error(field, f"This {field} belongs to another dataset.")
        if dataset and any(r.dataset_id != dataset.pk for r in data.get("runs") or []):
            self.add_error("runs", "A chosen run belongs to another dataset.")
        return data

    def design(self) -> dict:
        """The keyword arguments of `study_create` (minus seed and created_by)."""
        d = self.cleaned_data
        return {
            f: d[f]
            for f in (
                "name",
                "instructions",
                "dataset",
                "mode",
                "k",
                "rating_min",
                "rating_max",
                "allow_revisions",
                "untouched_ranking",
                "show_candidate_labels",
                "show_saliency",
                "ground_truth_reader",
            )
        }

    def builder_config(self) -> dict:
        """The builder's configuration as `study_build_cases` records it."""
        d, builder = self.cleaned_data, self.cleaned_data["builder"]
        if builder == building.CASE_LIST:
            return {}
        config = {
            "n_queries": d["n_queries"],
            "split": d["split"].pk if d.get("split") else 0,
            "query_part": d.get("query_part") or SplitPart.TEST,
            "query_label": d.get("query_label", ""),
            "allocation": d.get("allocation") or "proportional",
            "pool_part": d.get("pool_part") or building.ALL_IMAGES,
            "exclude_queries": d.get("exclude_queries", False),
        }
        if builder == building.STRATIFIED_RANDOM:
            config.update(n=d["catalogue_size"] or 10, class_label=d["class_label"])
        elif builder == building.KNN_FARTHEST:
            config.update(run=d["run"].pk, k=d["nearest_k"] or 5)
        elif builder == building.TOP_N:
            config.update(run=d["run"].pk, n=d["catalogue_size"] or 10)
        else:
            config.update(runs=[r.pk for r in d["runs"]], per_method=d["per_method"] or 5)
        return config


class QuestionForm(forms.Form):
    text = forms.CharField(
        max_length=300,
        required=False,
        label="Question",
        widget=forms.TextInput(
            attrs={"placeholder": "Does this image show pleural effusion?", "aria-label": "Question"}
        ),
    )
    # aria-label: the study page shows these fields in one row without their <label>s.
    choices = forms.CharField(
        max_length=600,
        required=False,
        initial="yes, no, unsure",
        help_text="Comma-separated answer choices.",
        widget=forms.TextInput(attrs={"aria-label": "Choices, comma-separated"}),
    )
    applies_to = forms.ChoiceField(
        choices=StudyQuestion.AppliesTo.choices,
        initial=StudyQuestion.AppliesTo.ALL,
        widget=forms.Select(attrs={"aria-label": "Asked about"}),
    )

    def clean(self):
        data = super().clean()
        if data.get("text") and len(_choices_csv(data.get("choices", ""))) < 2:
            self.add_error("choices", "Give at least two comma-separated choices.")
        return data

    def question(self) -> dict | None:
        """The keyword arguments of `question_add`, or None for an empty row."""
        d = self.cleaned_data
        if not d.get("text"):
            return None
        return {"text": d["text"], "choices": _choices_csv(d["choices"]), "applies_to": d["applies_to"]}


QuestionFormSet = forms.formset_factory(QuestionForm, extra=2, max_num=20)


class StudyEditForm(forms.Form):
    """Name, instructions and revisions always; mode, k and display options only before answers."""

    name = forms.CharField(max_length=200)
    instructions = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), required=False)
    allow_revisions = forms.BooleanField(required=False)
    untouched_ranking = forms.ChoiceField(
        choices=UntouchedRanking.choices,
        label="Untouched ranking",
        help_text="Rank all: a ranking still in the order it was shown is allowed, warned about, or refused.",
    )
    ground_truth_reader = UsernameChoiceField(queryset=None, required=False, empty_label="None")
    mode = forms.ChoiceField(choices=AnswerMode.choices)
    k = forms.IntegerField(
        min_value=1, max_value=services.MAX_CATALOGUE - 1, required=False, label="k (candidates to pick)"
    )
    rating_min = forms.IntegerField(min_value=0, max_value=99)
    rating_max = forms.IntegerField(min_value=1, max_value=100)
    show_candidate_labels = forms.BooleanField(required=False)
    show_saliency = forms.BooleanField(required=False)

    def __init__(self, *args, study, locked: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["ground_truth_reader"].queryset = selectors.eligible_readers().filter(assignments__study=study)
        self.fields["ground_truth_reader"].help_text = "One of the study's readers."
        if locked:
            for name in services.LOCKED_ONCE_ANSWERED:
                self.fields[name].disabled = True
                self.fields[name].help_text = "Locked: readers have answered."


class AssignmentAddForm(forms.Form):
    reader = UsernameChoiceField(queryset=None, empty_label=None)

    def __init__(self, *args, study, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["reader"].queryset = selectors.eligible_readers().exclude(assignments__study=study)


class CloneForm(forms.Form):
    name = forms.CharField(
        max_length=200, label="Name of the copy", widget=forms.TextInput(attrs={"aria-label": "Name of the copy"})
    )


class CaseListForm(forms.Form):
    case_list = forms.FileField(
        label="Case list (CSV)",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,.txt"}),
        help_text="Columns query, candidate (image ids or file names); optional position, "
        "method, rank, distance. Replaces the current cases.",
    )
    seed = forms.IntegerField(
        min_value=0,
        max_value=2**63 - 1,
        required=False,
        help_text="Shuffles catalogues without positions; empty keeps the study seed.",
    )

    def clean_case_list(self):
        f = self.cleaned_data["case_list"]
        if f.size > MAX_CASE_LIST_BYTES:
            raise forms.ValidationError("The case list is larger than 5 MB.")
        return f
