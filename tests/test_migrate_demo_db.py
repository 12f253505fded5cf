"""An upgrade keeps every row (issue 11): a database made by the demo of commit 961dcb8 migrates forward intact.

The fixture (tests/fixtures/demo_db_961dcb8.sqlite3, made by tests/fixtures/make_old_demo_db.py with that
commit's code) has rows in every table of that day's schema. A copy is migrated exactly as a user upgrading
would (`python manage.py migrate` in a subprocess, on SQLite); then every row of every old table must still
be there, by primary key, with the same value in every old column, nothing may be left to migrate, and the
ORM of today's code must read every old row through the model that owns its table, whichever app that is.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from retrieval.imports.names import path_pseudonym

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "demo_db_961dcb8.sqlite3"

# What migrations legitimately change, spelled out; everything else must come through unchanged.
# - Tables a migration renames (old name → new name). A model moved between apps that keeps its table
#   (SeparateDatabaseAndState with db_table, e.g. ReportRun into `reports`) needs no entry here.
TABLE_RENAMES: dict[str, str] = {}
# - Columns a migration renames: (old table, old column) → new column.
COLUMN_RENAMES: dict[tuple[str, str], str] = {}


# - Rows a migration rewrites on purpose: old table → function from the old row (a dict, columns already
#   renamed) to the row expected now; a column a migration drops must be removed from the dict here, e.g.
#   "django_content_type": lambda row: {**row, "app_label": "reports"} if row["model"] == "reportrun" else row
def _dataset_keys() -> dict[int, str]:
    with sqlite3.connect(f"file:{FIXTURE}?mode=ro", uri=True) as con:
        return dict(con.execute("SELECT id, pseudonym_key FROM retrieval_dataset"))


def _image_pseudonymised(row: dict) -> dict:
    """retrieval/0007: stored file names become their pseudonyms under the dataset's key (issue 12)."""
    return {**row, "source_name": path_pseudonym(_dataset_keys()[row["dataset_id"]], row["source_name"])}


def _import_forgets_names(row: dict) -> dict:
    """retrieval/0007: a finished import forgets its paths and last file; its report names pseudonyms. The
    fixture's imports all succeeded, and their report lines name imported files."""
    assert row["status"] == "succeeded"
    key = _dataset_keys()[row["dataset_id"]]
    report = [{**r, "file": path_pseudonym(key, r["file"])} for r in json.loads(row["report"])]
    return {**row, "source_path": "", "labels_path": "", "progress_note": "", "report": json.dumps(report)}


VALUE_CHANGES: dict[str, Callable[[dict], dict]] = {
    # ReportRun moved from annotations to reports with its table (reports/0001): its content type moves with
    # it, so its permissions and admin log entries keep pointing at it.
    "django_content_type": lambda row: (
        {**row, "app_label": "reports"} if (row["app_label"], row["model"]) == ("annotations", "reportrun") else row
    ),
    "retrieval_image": _image_pseudonymised,
    "retrieval_importjob": _import_forgets_names,
}
# SQLite's own bookkeeping (the AUTOINCREMENT counters), not data.
NOT_DATA = {"sqlite_sequence"}
# Tables that belong to no model: Django's record of applied migrations.
NO_MODEL = {"django_migrations"}


def _tables(con: sqlite3.Connection) -> list[str]:
    rows = con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    return [name for (name,) in rows if name not in NOT_DATA]


def _rows(con: sqlite3.Connection, table: str) -> tuple[str, dict]:
    """The table's single primary-key column and its rows as {pk: {column: value}}."""
    info = con.execute(f'PRAGMA table_info("{table}")').fetchall()
    keys = [col[1] for col in sorted(info, key=lambda col: col[5]) if col[5]]
    assert len(keys) == 1, f"{table}: expected one primary-key column, got {keys}"
    cursor = con.execute(f'SELECT * FROM "{table}"')
    columns = [d[0] for d in cursor.description]
    rows = [dict(zip(columns, row)) for row in cursor]
    return keys[0], {row[keys[0]]: row for row in rows}


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _manage(*args: str, db: Path, data_dir: Path, **extra_env: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{db}",
        "DEBUG": "true",
        "DATA_DIR": str(data_dir),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        **extra_env,
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


# Run by `manage.py shell -c` on the migrated copy: every installed model (auto-created m2m tables included)
# with its table and the primary keys the ORM reads, loading every concrete field of every row.
ORM_READ = """
import json, os
from django.apps import apps
out = {}
for model in apps.get_models(include_auto_created=True):
    if not model._meta.managed or model._meta.proxy:
        continue
    fields = [f.attname for f in model._meta.concrete_fields]
    pks = []
    for obj in model._base_manager.all().iterator():
        [getattr(obj, name) for name in fields]
        pks.append(obj.pk)
    out[model._meta.db_table] = {"model": model._meta.label, "pks": pks}
with open(os.environ["ORM_READ_OUT"], "w") as fh:
    json.dump(out, fh, default=str)
"""


@pytest.fixture(scope="module")
def migrated(tmp_path_factory):
    """(old connection, migrated connection, the migrated database's path, its DATA_DIR)."""
    assert FIXTURE.exists() and FIXTURE.stat().st_size > 0, f"{FIXTURE} is missing (see make_old_demo_db.py)"
    folder = tmp_path_factory.mktemp("upgrade")
    db, data_dir = folder / "db.sqlite3", folder / "data"
    db.write_bytes(FIXTURE.read_bytes())
    done = _manage("migrate", "--no-input", db=db, data_dir=data_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    old = sqlite3.connect(f"file:{FIXTURE}?mode=ro", uri=True)
    new = sqlite3.connect(db)
    yield old, new, db, data_dir
    old.close()
    new.close()


def test_the_fixture_has_rows_in_every_table(migrated):
    """The fixture is only as strong as what it holds: every table of the old schema has rows."""
    old, *_ = migrated
    empty = [t for t in _tables(old) if not old.execute(f'SELECT 1 FROM "{t}" LIMIT 1').fetchone()]
    assert not empty and "annotations_reportrun" in _tables(old)


def test_every_old_row_survives_the_migration_with_its_values(migrated):
    old, new, *_ = migrated
    now_tables = set(_tables(new))
    problems = []
    for table in _tables(old):
        target = TABLE_RENAMES.get(table, table)
        if target not in now_tables:
            problems.append(f"{table}: table gone (map it in TABLE_RENAMES if a migration renamed it)")
            continue
        _, before = _rows(old, table)
        _, after = _rows(new, target)
        change = VALUE_CHANGES.get(table, lambda row: row)
        for pk, row in before.items():
            expected = change({COLUMN_RENAMES.get((table, c), c): v for c, v in row.items()})
            now = after.get(pk)
            if now is None:
                problems.append(f"{target} pk={pk}: row gone")
                continue
            for column, value in expected.items():
                if column not in now:
                    problems.append(f"{target}.{column}: column gone (map it in COLUMN_RENAMES or VALUE_CHANGES)")
                elif now[column] != value:
                    problems.append(f"{target} pk={pk} {column}: {_short(value)} became {_short(now[column])}")
    assert not problems, f"{len(problems)} differences, e.g.:\n" + "\n".join(sorted(set(problems))[:40])


def test_nothing_is_left_to_migrate(migrated):
    """Every migration is applied, and the models need no migration that does not exist (a model moved
    between apps without its migrations would show here)."""
    *_, db, data_dir = migrated
    check = _manage("migrate", "--check", db=db, data_dir=data_dir)
    assert check.returncode == 0, check.stdout + check.stderr
    missing = _manage("makemigrations", "--check", "--dry-run", db=db, data_dir=data_dir)
    assert missing.returncode == 0, missing.stdout + missing.stderr


def test_the_orm_reads_every_old_row_through_the_model_that_owns_its_table(migrated, tmp_path):
    """Whichever app a model lives in now (ReportRun in annotations or in reports), the table it reads
    must be the old one, with every old row."""
    old, new, db, data_dir = migrated
    out = tmp_path / "orm.json"
    done = _manage("shell", "-c", ORM_READ, db=db, data_dir=data_dir, ORM_READ_OUT=str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    read = json.loads(out.read_text())
    problems = []
    for table in _tables(old):
        if table in NO_MODEL:
            continue
        target = TABLE_RENAMES.get(table, table)
        if target not in read:
            problems.append(f"{target}: no installed model reads this table")
            continue
        _, before = _rows(old, table)
        _, after = _rows(new, target)
        orm = read[target]
        if sorted(map(str, orm["pks"])) != sorted(map(str, after)):
            problems.append(
                f"{target} ({orm['model']}): the ORM reads {len(orm['pks'])} rows, the table has {len(after)}"
            )
        missing = set(map(str, before)) - set(map(str, orm["pks"]))
        if missing:
            problems.append(f"{target} ({orm['model']}): {len(missing)} old rows not read by the ORM")
    assert not problems, "\n".join(problems)
    report_runs = [v for v in read.values() if v["model"].endswith(".ReportRun")]
    assert len(report_runs) == 1 and len(report_runs[0]["pks"]) == len(_rows(old, "annotations_reportrun")[1]) > 0
