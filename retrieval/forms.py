from django import forms

from retrieval.models import LabelFormat, ModelRun, Split
from retrieval.runs.methods import METHODS
from retrieval.runs.splits import split_create


class DatasetForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)


class ImportUploadForm(forms.Form):
    archive = forms.FileField(
        required=False,
        help_text="A .zip of DICOM/PNG/JPEG files, or a single image file.",
        widget=forms.ClearableFileInput(attrs={"accept": ".zip,.dcm,.png,.jpg,.jpeg"}),
    )
    labels = forms.FileField(
        required=False,
        help_text="Optional label table (CSV).",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,.txt"}),
    )
    label_format = forms.ChoiceField(choices=LabelFormat.choices, initial=LabelFormat.GENERIC)
    allow_free_text = forms.BooleanField(
        required=False,
        label="Import free-text columns",
        help_text="Notes, comments and other free text are refused unless ticked (they may name patients). "
        "Identifier columns (names, dates of birth, MRN…) are dropped either way.",
    )

    def clean(self):
        data = super().clean()
        if not data.get("archive") and not data.get("labels"):
            raise forms.ValidationError("Choose an archive of images, a label table, or both.")
        return data


class RunForm(forms.Form):
    """Create a model run: a method, its backbone and weights, and (for training) the task."""

    name = forms.CharField(max_length=200)
    method = forms.ChoiceField(choices=[(m.name, f"{m.title} (paper {m.paper})") for m in METHODS.values()])
    runs = forms.CharField(required=False, help_text="ensemble: ids of the fine-tuned runs to combine, comma-separated")
    backbone = forms.CharField(
        initial="resnet18", help_text="any timm model name, e.g. vit_small_patch16_224, densenet121"
    )
    weights = forms.CharField(
        initial="pretrained",
        help_text="'pretrained' (Hugging Face cache), 'random', or the name of a checkpoint in the server's "
        "checkpoint folder (WEIGHTS_DIR)",
    )
    metric = forms.ChoiceField(
        choices=[("", "the method's default"), ("cosine", "cosine"), ("l2", "Euclidean (L2)")],
        required=False,
        help_text="default: cosine; Euclidean on raw penultimate features for "
        "densenet_cnn, attention and igcbir (papers 001/003)",
    )
    classifier_run = forms.ModelChoiceField(
        queryset=None,
        required=False,
        empty_label="—",
        help_text="igcbir: the finished classifier run whose saliency maps the "
        "second network learns from (its task and labels are used "
        "unless given below)",
    )
    input_saliency = forms.ChoiceField(
        choices=[("deep_taylor", "Deep Taylor (LRP); Grad-CAM where it does not apply"), ("grad_cam", "Grad-CAM")],
        initial="deep_taylor",
        required=False,
        help_text="igcbir: the classifier's saliency method",
    )
    normalisation = forms.ChoiceField(
        choices=[("backbone", "the backbone's own mean/std"), ("dataset", "this dataset's mean/std (train part)")],
        initial="backbone",
        required=False,
        help_text="input normalisation; the dataset's is computed when the run starts",
    )
    split = forms.ModelChoiceField(queryset=None, required=False, empty_label="create a new 60/30/10 split by patient")
    split_seed = forms.IntegerField(initial=0, required=False)
    task = forms.ChoiceField(
        choices=[("binary", "binary"), ("multilabel", "multi-label"), ("regression", "regression")], required=False
    )
    positive = forms.CharField(required=False, help_text="binary: positive findings, comma-separated (their union)")
    negative = forms.CharField(
        required=False, initial="No Finding", help_text="binary: negative findings, comma-separated"
    )
    labels = forms.CharField(required=False, help_text="multi-label: label names, comma-separated")
    target = forms.CharField(required=False, help_text="regression: the numeric label, e.g. weight")
    graded_label = forms.CharField(required=False, help_text="numeric label for graded nDCG, e.g. ctr or weight")
    epochs = forms.IntegerField(initial=5, min_value=1, max_value=500)
    lr = forms.FloatField(initial=1e-4, min_value=0)
    batch_size = forms.IntegerField(initial=32, min_value=1, max_value=1024)

    def __init__(self, *args, dataset, **kwargs):
        super().__init__(*args, **kwargs)

        self.dataset = dataset
        self.fields["split"].queryset = Split.objects.filter(dataset=dataset)
        self.fields["classifier_run"].queryset = classifier_runs(dataset)

    def clean(self):
        data = super().clean()
        if data.get("method") == "igcbir" and not data.get("classifier_run"):
            self.add_error("classifier_run", "IG-CBIR needs a finished classifier run of this dataset.")
        return data

    def split_or_create(self):
        if self.cleaned_data.get("split"):
            return self.cleaned_data["split"]
        if self.cleaned_data["method"] == "ssim" and not Split.objects.filter(dataset=self.dataset).exists():
            return None
        seed = self.cleaned_data.get("split_seed") or 0
        name = f"seed {seed}"
        return Split.objects.filter(dataset=self.dataset, name=name).first() or split_create(
            dataset=self.dataset, name=name, seed=seed
        )

    def config(self) -> dict:
        d = self.cleaned_data
        listed = lambda v: [x.strip() for x in (v or "").split(",") if x.strip()]  # noqa: E731
        cfg = {"backbone": d["backbone"].strip(), "weights": d["weights"].strip(), "batch_size": d["batch_size"]}
        if d["metric"]:  # else the method's own default (config_validate)
            cfg["metric"] = d["metric"]
        if d["graded_label"]:
            cfg["graded_label"] = d["graded_label"].strip()
        if d.get("normalisation") == "dataset":
            cfg["normalisation"] = "dataset"
        if d["method"] == "ensemble":
            cfg = {
                **({"metric": d["metric"]} if d["metric"] else {}),
                "runs": [int(x) for x in listed(d["runs"]) if x.isdigit()],
            }
        if d["method"] == "igcbir":
            classifier = d["classifier_run"]
            cfg.update(classifier_run=classifier.pk, input_saliency=d["input_saliency"] or "deep_taylor")
            if not (d["positive"] or d["labels"] or d["target"]):  # the classifier's task and labels
                d = {**d, **{k: classifier.config.get(k) for k in ("task", "positive", "negative", "labels", "target")}}
                d = {**d, **{k: ", ".join(d[k]) for k in ("positive", "negative", "labels") if isinstance(d[k], list)}}
        if d["method"] in ("finetune", "densenet_cnn", "attention", "igcbir"):
            cfg.update(task=d["task"] or "binary", epochs=d["epochs"], lr=d["lr"])
            cfg.update(
                {
                    "binary": {"positive": listed(d["positive"]), "negative": listed(d["negative"]) or ["No Finding"]},
                    "multilabel": {"labels": listed(d["labels"])},
                    "regression": {"target": (d["target"] or "").strip()},
                }[cfg["task"]]
            )
        if d["method"] == "rating_metric":  # paper 004: learns from the dataset's rating table
            cfg.update(epochs=d["epochs"], lr=d["lr"])
        if d["method"] == "ssim":
            cfg = {"metric": "ssim", **({"graded_label": cfg["graded_label"]} if "graded_label" in cfg else {})}
        return cfg


def classifier_runs(dataset):
    """Finished classifier runs of the dataset: what an IG-CBIR run can take its saliency maps from."""
    return ModelRun.objects.filter(
        dataset=dataset, status="succeeded", method__in=("finetune", "densenet_cnn", "attention")
    ).order_by("-pk")


class SearchForm(forms.Form):
    file = forms.FileField(
        help_text="a DICOM, PNG or JPEG image",
        widget=forms.ClearableFileInput(attrs={"accept": ".dcm,.png,.jpg,.jpeg"}),
    )
    k = forms.IntegerField(min_value=1, max_value=100, initial=10)
