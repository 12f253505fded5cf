"""ReportRun now belongs to the reports app (reports/0001): removed from this app's state only.

No SQL: the table `annotations_reportrun` and its rows stay, and reports.ReportRun uses it.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("annotations", "0003_answeritem_one_value"),
        ("reports", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="ReportRun")],
            database_operations=[],
        ),
    ]
