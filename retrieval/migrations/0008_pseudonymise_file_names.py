"""Folder and file names of imported images become keyed pseudonyms (issue 12, finding 2).

Images stored before keep their file names in `Image.source_name`; import reports name files and label
tables, finished imports keep the server path they read. This migration rewrites them as an import does
now (retrieval.imports.names): every stored name becomes its pseudonym under its dataset's key, so that a
label table or case list naming the original files still matches; report lines name pseudonyms, the
source or "label table"; the paths of finished imports are forgotten (a failed import keeps them for a
retry until IMPORT_UPLOAD_KEEP_HOURS have passed, as at run time). It cannot be undone: the names are gone.
"""

import re
from pathlib import Path

from django.db import migrations

from retrieval.imports.names import path_pseudonym

LABEL_TABLE, SOURCE = "label table", "source"
_ROW = re.compile(r"^label row for (['\"])(.+?)\1 (.*)$", re.S)
_DUPLICATE = re.compile(r"^duplicate of (.+) \((same .*)\)$", re.S)
_NO_NAME = ("expected ", "column ", "empty file name", "series of ")


def _scrub_paths(text: str, job) -> str:
    for path, what in ((job.source_path, SOURCE), (job.labels_path, LABEL_TABLE)):
        if path:
            for spelling in sorted({path, str(Path(path))}, key=len, reverse=True):
                text = text.replace(spelling, what)
            name = Path(path).name
            if name:  # the whole name only, never a part of another word
                text = re.sub(r"(?<![^\s'\"(/])" + re.escape(name) + r"(?=$|[\s'\":,)])", what, text)
    return text


def _line(entry: dict, job, key: str) -> dict:
    entry = dict(entry)
    name, message = entry.get("file") or "", entry.get("message") or ""
    sources = {Path(p).name for p in (job.source_path, job.labels_path) if p}

    def pseudo(text: str) -> str:
        return path_pseudonym(key, text)

    if entry.get("line") is not None:  # a label-table line: its file is the table, the message may name a row
        entry["file"] = LABEL_TABLE
        row = _ROW.match(message)
        if row:
            message = f"label row for {pseudo(row.group(2))!r} {row.group(3)}"
        elif not message.startswith(_NO_NAME) and ": " in message:
            prefix, rest = message.split(": ", 1)
            message = f"{pseudo(prefix)}: {rest}"
    elif name and name in sources:  # about the source or table as a whole
        entry["file"] = SOURCE if Path(job.source_path).name == name else LABEL_TABLE
        message = _scrub_paths(message, job)
    elif name:
        entry["file"] = pseudo(name)
        duplicate = _DUPLICATE.match(message)
        if duplicate:
            message = f"duplicate of {pseudo(duplicate.group(1))} ({duplicate.group(2)})"
    entry["message"] = message
    return entry


def pseudonymise(apps, schema_editor):
    Dataset = apps.get_model("retrieval", "Dataset")
    Image = apps.get_model("retrieval", "Image")
    ImportJob = apps.get_model("retrieval", "ImportJob")
    for dataset in Dataset.objects.all().iterator():
        key = dataset.pseudonym_key
        images = list(Image.objects.filter(dataset=dataset).only("pk", "source_name"))
        for image in images:
            image.source_name = path_pseudonym(key, image.source_name)[:500]
        Image.objects.bulk_update(images, ["source_name"], batch_size=500)
        for job in ImportJob.objects.filter(dataset=dataset).iterator():
            job.report = [_line(entry, job, key) for entry in job.report or [] if isinstance(entry, dict)]
            job.error = _scrub_paths(job.error, job)
            if job.status in ("succeeded", "failed", "cancelled"):
                job.progress_note = ""
            paths = [p for p in (job.source_path, job.labels_path) if p]
            uploads_gone = job.remove_sources and not all(Path(p).exists() for p in paths)
            if job.status == "succeeded" or (job.status in ("failed", "cancelled") and uploads_gone):
                job.source_path = job.labels_path = ""
            job.save(update_fields=["report", "error", "progress_note", "source_path", "labels_path"])


class Migration(migrations.Migration):
    dependencies = [("retrieval", "0007_dicomweb_source_weights_fetch")]

    operations = [migrations.RunPython(pseudonymise, migrations.RunPython.noop, elidable=False)]
