"""Reader-study domain: studies, cases (a query and its catalogue), reader assignments.

Blinding: a candidate's provenance (which method proposed it, at what rank and distance) is
stored here for the analysis and is never sent to readers. Each reader sees the cases in their
own order and the candidates of a case in their own positions, both derived from the
assignment's stored seed, so every reader's screen can be reproduced exactly.
"""

from __future__ import annotations

import numpy as np
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.urls import reverse

from core import image_links


class WorkerPing(models.Model):
    """Written by the `ping` task: proves a worker process consumed a message (health check)."""

    token = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)


class AnswerMode(models.TextChoices):
    CHOOSE_K = "choose_k", "Choose the k most similar"
    RANK_ALL = "rank_all", "Rank the whole catalogue"
    RATE = "rate", "Rate each candidate"


class StudyStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"


class UntouchedRanking(models.TextChoices):
    """What a rank-all study does with a ranking the reader did not change (the shown random order)."""

    ALLOW = "allow", "Allow"
    WARN = "warn", "Warn before submitting"
    REFUSE = "refuse", "Refuse"


class Study(models.Model):
    name = models.CharField(max_length=200, unique=True)
    instructions = models.TextField(blank=True)
    dataset = models.ForeignKey("retrieval.Dataset", on_delete=models.PROTECT, related_name="studies")
    mode = models.CharField(max_length=16, choices=AnswerMode.choices)
    k = models.PositiveSmallIntegerField(null=True, blank=True, help_text="choose k: how many to pick")
    rating_min = models.PositiveSmallIntegerField(default=1)
    rating_max = models.PositiveSmallIntegerField(default=5)
    status = models.CharField(max_length=8, choices=StudyStatus.choices, default=StudyStatus.DRAFT)
    allow_revisions = models.BooleanField(default=False, help_text="readers may change a submitted answer")
    show_candidate_labels = models.BooleanField(default=False, help_text="readers see the labels of candidates")
    show_saliency = models.BooleanField(default=False, help_text="readers see saliency overlays where available")
    untouched_ranking = models.CharField(
        max_length=8,
        choices=UntouchedRanking.choices,
        default=UntouchedRanking.WARN,
        help_text="rank all: a ranking left in the shown order is allowed, warned about, or refused",
    )
    # How the cases were built: recorded so the study can be explained and rebuilt.
    builder = models.CharField(max_length=32, blank=True)
    builder_config = models.JSONField(default=dict, blank=True)
    seed = models.BigIntegerField(default=0)
    ground_truth_reader = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "studies"
        constraints = [
            models.CheckConstraint(condition=~Q(mode="choose_k") | Q(k__gte=1), name="study_choose_k_has_k"),
            models.CheckConstraint(condition=Q(rating_min__lt=models.F("rating_max")), name="study_rating_range"),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("studies:detail", args=[self.pk])


class StudyQuestion(models.Model):
    """An optional per-image question, e.g. "does this image show pleural effusion?" (paper 003)."""

    class AppliesTo(models.TextChoices):
        QUERY = "query", "The query image"
        CANDIDATES = "candidates", "Every candidate"
        ALL = "all", "Query and candidates"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="questions")
    key = models.SlugField(max_length=50)
    text = models.CharField(max_length=300)
    choices = models.JSONField(default=list, help_text='e.g. ["yes", "no", "unsure"]')
    applies_to = models.CharField(max_length=16, choices=AppliesTo.choices, default=AppliesTo.ALL)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["study_id", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["study", "key"], name="question_unique_key_per_study")]


class Case(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="cases")
    position = models.PositiveIntegerField(help_text="canonical order; readers see their own order")
    query = models.ForeignKey("retrieval.Image", on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["study_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["study", "position"], name="case_unique_position"),
            models.UniqueConstraint(fields=["study", "query"], name="case_unique_query"),
        ]

    def __str__(self) -> str:
        return f"{self.study} case {self.position + 1}"


class Candidate(models.Model):
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="candidates")
    image = models.ForeignKey("retrieval.Image", on_delete=models.PROTECT, related_name="+")
    position = models.PositiveSmallIntegerField(help_text="canonical catalogue index")
    # Who proposed this candidate: [{"method": str, "run": int|None, "rank": int, "distance": float}]
    # (several entries when pooled methods proposed the same image). Never shown to readers.
    provenance = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["case_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["case", "image"], name="candidate_unique_image"),
            models.UniqueConstraint(fields=["case", "position"], name="candidate_unique_position"),
        ]


class Assignment(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="assignments")
    reader = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    seed = models.BigIntegerField(help_text="drives this reader's case order and candidate positions")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study_id", "reader_id"]
        constraints = [models.UniqueConstraint(fields=["study", "reader"], name="assignment_unique_reader")]

    def __str__(self) -> str:
        return f"{self.reader} in {self.study}"

    def case_order(self, case_ids: list[int]) -> list[int]:
        """This reader's order of the study's cases (a seeded permutation of the sorted ids)."""
        ids = sorted(case_ids)
        perm = np.random.default_rng([self.seed, 0]).permutation(len(ids))
        return [ids[i] for i in perm]

    def candidate_order(self, case_id: int, candidate_ids: list[int]) -> list[int]:
        """The positions in which this reader sees a case's candidates (seeded by reader and case)."""
        ids = sorted(candidate_ids)
        perm = np.random.default_rng([self.seed, 1, case_id]).permutation(len(ids))
        return [ids[i] for i in perm]

    @property
    def image_link_scope(self) -> str:
        """The scope of this reader's image links (core.image_links): one folder per assignment."""
        return f"assignment:{self.pk}"


@receiver(post_delete, sender=Assignment)
def _image_links_revoke(sender, instance: Assignment, **kwargs) -> None:
    """A reader taken off a study (or a study deleted) loses the addresses of its images at once. The links are
    made again by the pages that hand them out, so removing them early (a deletion rolled back) loses nothing."""
    image_links.revoke(instance.image_link_scope)
