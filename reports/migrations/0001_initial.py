"""ReportRun moves from the annotations app to this one, keeping its table and rows.

The table `annotations_reportrun` (created by annotations/0002) stays as it is: this migration
only adds the model to this app's state (`SeparateDatabaseAndState`, no SQL), and
annotations/0004 removes it from that app's state. The content type of the model is renamed
with it, so its permissions and admin log entries follow instead of being left stale.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def content_type_forward(apps, schema_editor):
    _rename_content_type(apps, schema_editor, "annotations", "reports")


def content_type_backward(apps, schema_editor):
    _rename_content_type(apps, schema_editor, "reports", "annotations")


def _rename_content_type(apps, schema_editor, old: str, new: str) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    if not ContentType.objects.using(db).filter(app_label=new, model="reportrun").exists():
        ContentType.objects.using(db).filter(app_label=old, model="reportrun").update(app_label=new)


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("annotations", "0003_answeritem_one_value"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("readerstudy", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="ReportRun",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        (
                            "status",
                            models.CharField(
                                choices=[
                                    ("pending", "Pending"),
                                    ("running", "Running"),
                                    ("succeeded", "Succeeded"),
                                    ("failed", "Failed"),
                                    ("cancelled", "Cancelled"),
                                ],
                                default="pending",
                                max_length=16,
                            ),
                        ),
                        ("progress_done", models.PositiveIntegerField(default=0)),
                        ("progress_total", models.PositiveIntegerField(default=0)),
                        ("progress_note", models.CharField(blank=True, max_length=300)),
                        ("error", models.TextField(blank=True)),
                        ("attempts", models.PositiveSmallIntegerField(default=0)),
                        ("heartbeat_at", models.DateTimeField(blank=True, null=True)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("started_at", models.DateTimeField(blank=True, null=True)),
                        ("finished_at", models.DateTimeField(blank=True, null=True)),
                        ("options", models.JSONField(default=dict)),
                        ("key", models.CharField(max_length=64)),
                        ("fingerprint", models.CharField(max_length=64)),
                        ("result", models.JSONField(blank=True, null=True)),
                        (
                            "created_by",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "study",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="report_runs",
                                to="readerstudy.study",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "annotations_reportrun",
                        "ordering": ["-created_at"],
                        "constraints": [models.UniqueConstraint(fields=("study", "key"), name="report_run_unique_key")],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(content_type_forward, content_type_backward, elidable=False),
    ]
