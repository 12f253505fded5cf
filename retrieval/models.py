"""The image collection: datasets, images with their renditions, labels, and import jobs."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse

from core.jobs import TrackedJob, TrackedPart


def _new_salt() -> str:
    return secrets.token_hex(32)


class Dataset(models.Model):
    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    # Secret key of the pseudonymisation HMAC: the same patient gets the same pseudonym within
    # a dataset, and pseudonyms of two datasets cannot be linked. Never shown.
    pseudonym_key = models.CharField(max_length=64, default=_new_salt, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("retrieval:dataset-detail", args=[self.pk])


class SourceFormat(models.TextChoices):
    DICOM = "dicom", "DICOM"
    PNG = "png", "PNG"
    JPEG = "jpeg", "JPEG"


def _image_path(instance: Image, kind: str, ext: str) -> str:
    h = instance.content_hash
    return f"datasets/{instance.dataset_id}/{kind}/{h[:2]}/{h}.{ext}"


class Image(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="images")
    # Path of the file inside the imported folder/archive, as label tables name it.
    source_name = models.CharField(max_length=500)
    source_format = models.CharField(max_length=8, choices=SourceFormat.choices)
    patient_pseudo_id = models.CharField(max_length=32, blank=True, db_index=True)
    study_uid = models.CharField(max_length=64, blank=True)
    series_uid = models.CharField(max_length=64, blank=True)
    sop_instance_uid = models.CharField(max_length=64, null=True, blank=True)
    modality = models.CharField(max_length=16, blank=True)
    view_position = models.CharField(max_length=16, blank=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    frames = models.PositiveIntegerField(default=1)
    slices_in_series = models.PositiveIntegerField(default=1)
    window_center = models.FloatField(null=True, blank=True)
    window_width = models.FloatField(null=True, blank=True)
    window_source = models.CharField(max_length=16, blank=True)
    content_hash = models.CharField(max_length=64)
    # The import that created the image: a re-run of the same job recognises its own work.
    import_job = models.ForeignKey("ImportJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    original = models.FileField(max_length=300)
    rendition = models.FileField(max_length=300)
    thumbnail = models.FileField(max_length=300)
    # Greyscale DICOM: the modality values as a 16-bit PNG of the rendition's size, and what turns it
    # back into values and how the viewer shows it by default (retrieval.imports.imaging.values).
    values = models.FileField(max_length=300, blank=True)
    display = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dataset_id", "source_name"]
        constraints = [
            # Duplicate detection on import: same bytes, or same DICOM instance.
            models.UniqueConstraint(fields=["dataset", "content_hash"], name="image_unique_hash_per_dataset"),
            models.UniqueConstraint(
                fields=["dataset", "sop_instance_uid"],
                condition=Q(sop_instance_uid__isnull=False),
                name="image_unique_sop_per_dataset",
            ),
        ]
        indexes = [
            # Label tables match rows to images by source name within a dataset.
            models.Index(fields=["dataset", "source_name"], name="image_dataset_source_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.dataset.name}/{self.source_name}"


class Label(models.Model):
    """One label of one image: a finding (1/0/-1), a class name or a number (e.g. weight)."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="labels")
    name = models.CharField(max_length=100)
    value_num = models.FloatField(null=True, blank=True)
    value_text = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["image_id", "name"]
        constraints = [models.UniqueConstraint(fields=["image", "name"], name="label_unique_name_per_image")]
        indexes = [
            # Selecting images by finding (e.g. Cardiomegaly == 1) for tasks and study pools.
            models.Index(fields=["name", "value_num"], name="label_name_value_idx"),
        ]

    @property
    def value(self) -> float | str:
        return self.value_num if self.value_num is not None else self.value_text

    def __str__(self) -> str:
        v = self.value
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        return f"{self.name}={v}"


class Rating(models.Model):
    """One reader's rating vector of one image (paper 004: several readers rate each nodule).

    Imported from a generic label table with a `rater` (or `reader`, `radiologist`) column: one
    row per image and reader, each numeric column one rated characteristic.
    """

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="ratings")
    rater = models.CharField(max_length=100)
    values = models.JSONField(help_text="characteristic name -> number")

    class Meta:
        ordering = ["image_id", "rater"]
        constraints = [models.UniqueConstraint(fields=["image", "rater"], name="rating_unique_per_rater")]


class LabelFormat(models.TextChoices):
    NIH = "nih", "NIH ChestX-ray14 (Data_Entry_2017.csv)"
    CHEXPERT = "chexpert", "CheXpert / MIMIC-CXR-JPG"
    GENERIC = "generic", "Generic CSV (file name + columns)"


class ImportJob(TrackedJob):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="imports")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    source_path = models.CharField(max_length=500, help_text="Folder or .zip on the server")
    labels_path = models.CharField(max_length=500, blank=True)
    label_format = models.CharField(max_length=16, choices=LabelFormat.choices, default=LabelFormat.GENERIC)
    # Delete source/labels after the import (uploads); never for a folder given on the server.
    remove_sources = models.BooleanField(default=False)
    # Import free-text label columns (notes, comments…) the coordinator allowed; refused otherwise.
    allow_free_text = models.BooleanField(default=False)
    # One entry per file or label row with a problem: {"file", "line", "status", "message"}.
    report = models.JSONField(default=list, blank=True)
    n_imported = models.PositiveIntegerField(default=0)
    n_skipped = models.PositiveIntegerField(default=0)
    n_failed = models.PositiveIntegerField(default=0)
    n_labels = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Import #{self.pk} into {self.dataset}"

    def get_absolute_url(self) -> str:
        return reverse("retrieval:import-detail", args=[self.pk])


class ImportChunk(TrackedPart):
    """A chunk of an import's planned units, imported by its own task (core.fanout; retrieval.imports.ingest)."""

    parent = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="parts")
    n_imported = models.PositiveIntegerField(default=0)
    # What the chunk noted, merged in order by the import's finishing step: report lines, counts by status,
    # lines left out, label-table keys matched.
    result = models.JSONField(default=dict, blank=True)

    class Meta(TrackedPart.Meta):
        constraints = [models.UniqueConstraint(fields=["parent", "index"], name="import_chunk_unique_index")]


class SplitPart(models.TextChoices):
    TRAIN = "train", "Train"
    VAL = "val", "Validation"
    TEST = "test", "Test"


class Split(models.Model):
    """A train/validation/test split of a dataset by patient (no patient in two parts)."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="splits")
    name = models.CharField(max_length=100)
    seed = models.BigIntegerField()
    fractions = models.JSONField(default=list, help_text="[train, val, test], e.g. [0.6, 0.3, 0.1]")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dataset_id", "name"]
        constraints = [models.UniqueConstraint(fields=["dataset", "name"], name="split_unique_name")]

    def __str__(self) -> str:
        return f"{self.dataset.name} / {self.name}"


class SplitMember(models.Model):
    split = models.ForeignKey(Split, on_delete=models.CASCADE, related_name="members")
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="+")
    part = models.CharField(max_length=8, choices=SplitPart.choices)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["split", "image"], name="split_member_unique")]
        # Study builders and evaluation select the images of one part of a split.
        indexes = [models.Index(fields=["split", "part"], name="split_member_part_idx")]


class RunStage(models.TextChoices):
    QUEUED = "queued", "Queued"
    TRAINING = "training", "Training"
    EMBEDDING = "embedding", "Embedding"
    INDEXING = "indexing", "Indexing"
    EVALUATING = "evaluating", "Evaluating"
    DONE = "done", "Done"


class ModelRun(TrackedJob):
    """One retrieval method applied to a dataset: its configuration, artefacts, metrics, timings.

    `method` names a retrieval method (retrieval.runs.methods): off-the-shelf timm features, a
    fine-tuned classifier/regressor's embeddings, SSIM, … `config` holds everything needed to
    redo the run (backbone, weights, task definition, image size, epochs, seed, metric).
    """

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="runs")
    split = models.ForeignKey(Split, null=True, blank=True, on_delete=models.PROTECT, related_name="runs")
    name = models.CharField(max_length=200)
    method = models.CharField(max_length=40)
    config = models.JSONField(default=dict, blank=True)
    stage = models.CharField(max_length=16, choices=RunStage.choices, default=RunStage.QUEUED)
    device = models.CharField(max_length=16, blank=True)
    # Live training progress (epoch, batch, loss, validation metric) and the per-epoch history.
    live = models.JSONField(default=dict, blank=True)
    history = models.JSONField(default=list, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    timings = models.JSONField(default=dict, blank=True, help_text="seconds per stage")
    artefact_dir = models.CharField(max_length=500, blank=True)
    n_embedded = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["dataset", "name"], name="run_unique_name_per_dataset")]

    def __str__(self) -> str:
        return f"{self.name} ({self.method})"

    def get_absolute_url(self) -> str:
        return reverse("retrieval:run-detail", args=[self.pk])


class EmbedShard(TrackedPart):
    """A shard of a run's images to embed, by its own task (core.fanout; retrieval.runs.stages)."""

    parent = models.ForeignKey(ModelRun, on_delete=models.CASCADE, related_name="parts")

    class Meta(TrackedPart.Meta):
        constraints = [models.UniqueConstraint(fields=["parent", "index"], name="embed_shard_unique_index")]


class SearchRequest(TrackedJob):
    """A search with an uploaded image: embedded on the worker, results stored for the page."""

    run = models.ForeignKey(ModelRun, on_delete=models.CASCADE, related_name="searches")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    upload_path = models.CharField(max_length=500)
    k = models.PositiveSmallIntegerField(default=10)
    results = models.JSONField(default=list, blank=True)


class Evaluation(TrackedJob):
    """A re-evaluation of a finished run with chosen options (k, mAP definition, gain, part, labels).

    Its own job, like a search or a report: the run stays finished while it is queued, runs or fails
    (its model, embeddings and index are unaffected). A successful evaluation's result also becomes
    the run's shown metrics (`run.metrics["retrieval"]`)."""

    run = models.ForeignKey(ModelRun, on_delete=models.CASCADE, related_name="evaluations")
    options = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Evaluation {self.pk} of {self.run}"


class DicomwebSource(models.Model):
    """What an import retrieves from a PACS over DICOMweb (retrieval.imports.dicomweb).

    Only the endpoint's name (or URL, `manage.py import_dicomweb`) and the chosen UIDs are stored: the
    patient identifiers a search shows the coordinator are never saved, and credentials stay in the
    settings (DICOMWEB_ENDPOINTS).
    """

    job = models.OneToOneField(ImportJob, on_delete=models.CASCADE, related_name="dicomweb")
    endpoint = models.CharField(max_length=500, help_text="a name of DICOMWEB_ENDPOINTS, or a URL")
    # [{"study": StudyInstanceUID, "series": SeriesInstanceUID or ""}]: a whole study when series is "".
    selections = models.JSONField(default=list)

    def __str__(self) -> str:
        return f"DICOMweb {self.endpoint}: {len(self.selections)} selections"


class WeightsFetch(TrackedJob):
    """A download of a model's pretrained weights into the workers' Hugging Face cache (retrieval.ml.fetch), run on
    the `gpu` queue, where the runs that read that cache run; the run form's *Fetch weights* button."""

    model_name = models.CharField(max_length=300)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    # The cached files once done.
    paths = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Weights of {self.model_name}"
