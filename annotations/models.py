"""What readers answered: picks, rankings, ratings, per-image answers, flags and timings.

Rules that the database itself enforces: one final answer per reader and case; one item per
candidate of an answer; a rank used once per answer; ranks ≥ 1; exactly one of selected, rank
and rating per item; one visit and one flag per reader and case. That exactly k candidates are
picked, that a ranking is a full permutation and that ratings are in the study's range is
validated by `annotations.services.answer_submit` before anything is written.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class CaseVisit(models.Model):
    """Server-side timing and the autosaved draft of one reader on one case."""

    assignment = models.ForeignKey("readerstudy.Assignment", on_delete=models.CASCADE, related_name="visits")
    case = models.ForeignKey("readerstudy.Case", on_delete=models.CASCADE, related_name="visits")
    opened_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    active_ms = models.PositiveBigIntegerField(default=0, help_text="time with the case on screen and in focus")
    draft = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["assignment", "case"], name="visit_unique_per_case")]


class Answer(models.Model):
    assignment = models.ForeignKey("readerstudy.Assignment", on_delete=models.CASCADE, related_name="answers")
    case = models.ForeignKey("readerstudy.Case", on_delete=models.CASCADE, related_name="answers")
    revision = models.PositiveIntegerField(default=1)
    # The client's token for this submission: a retried request with the same token is a no-op.
    client_token = models.CharField(max_length=64, blank=True)
    submitted_at = models.DateTimeField()
    active_ms = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["assignment_id", "case_id"]
        constraints = [models.UniqueConstraint(fields=["assignment", "case"], name="answer_one_per_reader_case")]


class AnswerItem(models.Model):
    """One candidate in one answer: selected (choose k), rank (rank all) or rating (rate)."""

    answer = models.ForeignKey(Answer, on_delete=models.CASCADE, related_name="items")
    candidate = models.ForeignKey("readerstudy.Candidate", on_delete=models.CASCADE, related_name="+")
    selected = models.BooleanField(null=True)
    rank = models.PositiveSmallIntegerField(null=True)
    rating = models.SmallIntegerField(null=True)
    # Where the reader saw it (1-based), for position-bias checks.
    shown_position = models.PositiveSmallIntegerField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["answer", "candidate"], name="item_unique_candidate"),
            models.UniqueConstraint(
                fields=["answer", "rank"], condition=Q(rank__isnull=False), name="item_unique_rank"
            ),
            models.CheckConstraint(condition=Q(rank__isnull=True) | Q(rank__gte=1), name="item_rank_positive"),
            # Exactly one of the three answers per item. Which one the study's mode asks for needs a
            # join the database cannot check; answer_submit does.
            models.CheckConstraint(
                condition=Q(selected__isnull=False, rank__isnull=True, rating__isnull=True)
                | Q(selected__isnull=True, rank__isnull=False, rating__isnull=True)
                | Q(selected__isnull=True, rank__isnull=True, rating__isnull=False),
                name="item_one_value",
            ),
        ]


class AnswerRevision(models.Model):
    """A replaced answer, kept when a study allows readers to change their answers."""

    answer = models.ForeignKey(Answer, on_delete=models.CASCADE, related_name="revisions")
    revision = models.PositiveIntegerField()
    payload = models.JSONField()
    submitted_at = models.DateTimeField()
    replaced_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["answer", "revision"], name="revision_unique")]


class ImageAnswer(models.Model):
    """A reader's answer to a per-image question (e.g. "pleural effusion?") within one answer."""

    answer = models.ForeignKey(Answer, on_delete=models.CASCADE, related_name="image_answers")
    question = models.ForeignKey("readerstudy.StudyQuestion", on_delete=models.CASCADE, related_name="+")
    image = models.ForeignKey("retrieval.Image", on_delete=models.CASCADE, related_name="+")
    value = models.CharField(max_length=100)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["answer", "question", "image"], name="image_answer_unique"),
        ]


class CaseFlag(models.Model):
    """A reader's flag on a case, with a comment (e.g. "the label looks wrong")."""

    assignment = models.ForeignKey("readerstudy.Assignment", on_delete=models.CASCADE, related_name="flags")
    case = models.ForeignKey("readerstudy.Case", on_delete=models.CASCADE, related_name="flags")
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["assignment", "case"], name="flag_unique_per_case")]
