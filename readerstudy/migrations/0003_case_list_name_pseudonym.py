"""A case list's upload name is stored as its pseudonym (issue 12, finding 2), as an imported file's name is.

Studies built from a case list before kept the uploaded file's name in `builder_config["file_name"]`; it
becomes its pseudonym under the dataset's key (retrieval.imports.names), as study_load_case_list stores it
now. It cannot be undone.
"""

from django.db import migrations

from retrieval.imports.names import path_pseudonym


def pseudonymise(apps, schema_editor):
    Study = apps.get_model("readerstudy", "Study")
    for study in Study.objects.filter(builder="case_list").select_related("dataset").iterator():
        config = study.builder_config if isinstance(study.builder_config, dict) else {}
        name = config.get("file_name")
        if isinstance(name, str) and name:
            config["file_name"] = path_pseudonym(study.dataset.pseudonym_key, name)[:200]
            study.builder_config = config
            study.save(update_fields=["builder_config"])


class Migration(migrations.Migration):
    dependencies = [
        ("readerstudy", "0002_study_untouched_ranking"),
        ("retrieval", "0008_pseudonymise_file_names"),
    ]

    operations = [migrations.RunPython(pseudonymise, migrations.RunPython.noop, elidable=False)]
