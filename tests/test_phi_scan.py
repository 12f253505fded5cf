"""PHI scan (issue 12, Done-when): identifiers seeded in every place an import takes them from are found nowhere.

One world is built through the product's own doors: a server folder imported with `manage.py import_images`
(folders named after a patient and an MRN, a pydicom-style folder per PatientID, DICOM headers with names, ids,
dates and nested person names, a PNG tEXt chunk, a JPEG comment and EXIF), a zip and a label table uploaded
through the web form, a broken zip uploaded through the API (a failed import), a label table naming the
original files with identifier columns, a case list naming the original files, a study with a reader's
answers and a model run. Then everything that is kept or shown is scanned for every seeded identifier:

- the database: every column of every table (raw SQL over the introspected tables, Django's own included);
- every file under DATA_DIR (media, uploads, artefacts), as bytes;
- every page a coordinator, a researcher, a reader and a superuser (the admin) reach by following links from
  the start pages, with the files they link (thumbnails, renditions, originals, figures, exports);
- every GET operation of the API's OpenAPI schema, with every id the database holds;
- every export of the study's report.

Each seeded identifier belongs to a finding of issue 12 (names: 2; DICOM profile: 6; label columns: 5; PNG/JPEG
metadata: 7; failed uploads: 3) or to what main de-identified before, and each finding is its own test case.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from PIL import Image as PILImage
from PIL import PngImagePlugin

from annotations import services as reading
from core.roles import COORDINATOR, READER, RESEARCHER, user_set_roles
from readerstudy import building
from readerstudy import services as studies
from readerstudy.models import AnswerMode
from reports import exports
from retrieval.imports import ingest
from retrieval.models import Dataset, ImportJob
from tests.factories import csv_bytes, dicom_with, jpeg_bytes, png_bytes, write_files, zip_bytes

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Seed:
    text: str
    where: str
    finding: str


NAMES = "names"  # finding 2: folder and file names, server paths (this branch: names)
DICOM = "dicom"  # the de-identification main already does (PatientName/ID, dates, nested names): a regression guard
PROFILE = "profile"  # finding 6: the whole PS3.15 Basic Profile (branch privacy)
COLUMNS_EXACT = "columns"  # identifier columns by exact name, the label table's patient id (main): a guard
COLUMNS_FUZZY = "columns-fuzzy"  # finding 5: identifier tokens inside column names, free text (branch privacy)
METADATA = "metadata"  # finding 7: PNG tEXt, JPEG COM and EXIF (branch privacy)
UPLOADS = "uploads"  # finding 3: what a failed upload held (main)

SEEDS = [
    # finding 2: names of folders and files, of the server folder, the label table and the uploads
    Seed("Roe_Richard", "server folder", NAMES),
    Seed("55102938", "server folder (MRN)", NAMES),
    Seed("Doe^Jane", "folder", NAMES),
    Seed("80917342", "folder (MRN)", NAMES),
    Seed("19610203", "folder (date of birth)", NAMES),
    Seed("77654033", "folder per PatientID (pydicom dicomdirtests)", NAMES),
    Seed("Smith_John", "file name", NAMES),
    Seed("4471902", "file name (MRN)", NAMES),
    Seed("Tablename^Theo", "server label table name", NAMES),
    Seed("Ghost^Gary", "label row naming no file", NAMES),
    Seed("Okafor_Chidi", "uploaded zip's name", NAMES),
    Seed("66012345", "uploaded zip's name (MRN)", NAMES),
    Seed("Jones^Mary", "folder inside the uploaded zip", NAMES),
    Seed("20010101", "file inside the uploaded zip (date of birth)", NAMES),
    Seed("Uploadtable^Uma", "uploaded label table's name", NAMES),
    Seed("Caselist^Carl", "case list's name", NAMES),
    # DICOM attributes main de-identifies
    Seed("Vandermeer^Hubert", "DICOM PatientName", DICOM),
    Seed("PID-86420975", "DICOM PatientID", DICOM),
    Seed("19470815", "DICOM PatientBirthDate", DICOM),
    Seed("St Elsewhere Clinic", "DICOM InstitutionName", DICOM),
    Seed("Referring^Rex", "DICOM ReferringPhysicianName", DICOM),
    Seed("Nested^Nora", "DICOM PatientName inside a sequence", DICOM),
    # finding 6: the rest of the profile
    Seed("Consulting^Cora", "DICOM ConsultingPhysicianName", PROFILE),
    Seed("Nestconsult^Nils", "DICOM ConsultingPhysicianName inside a sequence", PROFILE),
    Seed("CTS-97531", "DICOM ClinicalTrialSubjectID", PROFILE),
    # label table columns
    Seed("MRN-31415926", "label table patient_id (pseudonymised)", COLUMNS_EXACT),
    Seed("Ulfsdottir^Ingrid", "label table PatientName column", COLUMNS_EXACT),
    Seed("MRN-27182818", "label table patient_mrn column", COLUMNS_FUZZY),
    Seed("Quimby^Zelda", "label table pt_name column", COLUMNS_FUZZY),
    Seed("Kowalczyk", "label table free-text notes", COLUMNS_FUZZY),
    # finding 7: metadata of PNG/JPEG originals
    Seed("Xiomara Bellweather", "PNG tEXt chunk", METADATA),
    Seed("Yusuf Okonkwo", "JPEG COM segment", METADATA),
    Seed("Exifson^Erik", "JPEG EXIF Artist", METADATA),
    # finding 3: a failed upload
    Seed("Failing^Fred", "content of a broken upload", UPLOADS),
]

# The server folder, as pydicom's dicomdirtests and a hospital export name things.
SERVER_FOLDER = "Roe_Richard_MRN-55102938"
PNG_NAME = "Doe^Jane_MRN-80917342_DOB19610203/chest_Doe^Jane.png"
DICOM_NAME = "77654033/CR1/6154"
JPEG_NAME = "MRN4471902_Smith_John.jpg"
ZIP_MEMBER = "Patient_Jones^Mary/Jones^Mary_20010101.png"


def _png_with_text() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Xiomara Bellweather")
    out = io.BytesIO()
    PILImage.open(io.BytesIO(png_bytes(101))).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def _jpeg_with_comment_and_exif() -> bytes:
    exif = PILImage.Exif()
    exif[0x013B] = "Exifson^Erik"  # Artist
    out = io.BytesIO()
    PILImage.open(io.BytesIO(jpeg_bytes(102))).save(
        out, format="JPEG", comment=b"Patient Yusuf Okonkwo", exif=exif.tobytes()
    )
    return out.getvalue()


def _dicom() -> bytes:
    from pydicom.dataset import Dataset as DicomDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import generate_uid

    nested = DicomDataset()
    nested.PatientName = "Nested^Nora"
    nested.ConsultingPhysicianName = "Nestconsult^Nils"
    return dicom_with(
        "CT_small.dcm",
        SOPInstanceUID=generate_uid(),
        PatientName="Vandermeer^Hubert",
        PatientID="PID-86420975",
        PatientBirthDate="19470815",
        InstitutionName="St Elsewhere Clinic",
        ReferringPhysicianName="Referring^Rex",
        ConsultingPhysicianName="Consulting^Cora",
        ClinicalTrialSubjectID="CTS-97531",
        ReferencedPatientSequence=Sequence([nested]),
    )


def _label_table(names: list[str], *, ghost: bool) -> bytes:
    header = ["filename", "patient_id", "finding", "PatientName", "patient_mrn", "pt_name", "notes"]
    rows = [header]
    for i, name in enumerate(names):
        rows.append(
            [name, "MRN-31415926", f"f{i}", "Ulfsdottir^Ingrid", "MRN-27182818", "Quimby^Zelda", "seen by Kowalczyk"]
        )
    if ghost:
        rows.append(["Ghost^Gary_MRN-1357911.png", "MRN-31415926", "x", "", "", "", ""])
    return csv_bytes(rows)


# --------------------------------------------------------------------------- the world


def _users(django_user_model):
    users = {}
    for name, roles in (("phi-coord", [COORDINATOR]), ("phi-research", [RESEARCHER]), ("phi-reader", [READER])):
        users[name] = django_user_model.objects.create_user(username=name, password="pw")
        user_set_roles(user=users[name], roles=roles)
    users["phi-admin"] = django_user_model.objects.create_superuser(username="phi-admin", password="pw")
    return users


def _build(tmp_path: Path, client, django_user_model, capture) -> dict:
    users = _users(django_user_model)
    client.force_login(users["phi-coord"])

    # 1. A server folder through manage.py import_images (path, folders, files, headers, metadata, table).
    server = write_files(
        tmp_path / "server" / SERVER_FOLDER,
        {PNG_NAME: _png_with_text(), DICOM_NAME: _dicom(), JPEG_NAME: _jpeg_with_comment_and_exif()},
    )
    table = tmp_path / "server" / "Tablename^Theo.csv"
    table.write_bytes(_label_table([PNG_NAME, DICOM_NAME, JPEG_NAME], ghost=True))
    call_command("import_images", "phi", str(server), "--labels", str(table), "--sync", stdout=io.StringIO())
    dataset = Dataset.objects.get(name="phi")

    # 2. A zip and a label table uploaded through the web form.
    upload = {
        "archive": SimpleUploadedFile("Okafor_Chidi_MRN-66012345.zip", zip_bytes({ZIP_MEMBER: png_bytes(103)})),
        "labels": SimpleUploadedFile("Uploadtable^Uma.csv", _label_table([ZIP_MEMBER], ghost=False)),
        "label_format": "generic",
    }
    preview = client.post(f"/datasets/{dataset.pk}/import/", upload)  # the label table's column preview
    assert preview.status_code == 200, preview.content
    token = re.search(rb'name="token" value="([^"]+)"', preview.content).group(1).decode()
    with capture(execute=False):
        confirm = {"token": token, "action": "confirm"}
        assert client.post(f"/datasets/{dataset.pk}/import/confirm/", confirm).status_code == 302
    ingest.import_job_run(job_id=ImportJob.objects.latest("pk").pk)

    # 3. A broken zip uploaded through the API: the import fails on it.
    broken = SimpleUploadedFile("broken.zip", b"PatientName=Failing^Fred, not a zip")
    with capture(execute=False):
        assert client.post(f"/api/datasets/{dataset.pk}/imports/", {"archive": broken}).status_code == 202
    ingest.import_job_run(job_id=ImportJob.objects.latest("pk").pk)

    # The free-text column (notes) is refused, not allowed: a coordinator who allows free text stores it by choice.
    jobs = list(ImportJob.objects.order_by("pk"))
    assert [j.status for j in jobs] == ["succeeded", "succeeded", "failed"], [(j.status, j.error) for j in jobs]
    assert dataset.images.count() == 4, jobs[0].report

    # 4. A model run over the images (search page, run pages), a study built from a case list naming originals.
    from tests.reports.factories import _run

    ids = list(dataset.images.order_by("pk").values_list("pk", flat=True))
    run = _run(dataset, tmp_path / "run", ids, __import__("numpy").random.default_rng(0).normal(size=(4, 8)), "phi-run")
    study = studies.study_create(name="PHI study", dataset=dataset, mode=AnswerMode.CHOOSE_K, k=1)
    cases = f"query,candidate\n{PNG_NAME},{DICOM_NAME}\n{PNG_NAME},{JPEG_NAME}\n{ZIP_MEMBER},{DICOM_NAME}\n"
    cases += f"{ZIP_MEMBER},{JPEG_NAME}\n"
    building.study_load_case_list(study=study, data=cases.encode(), file_name="Caselist^Carl.csv")
    assert study.cases.count() == 2
    assignment = studies.assignment_add(study=study, reader=users["phi-reader"])
    studies.study_open(study=study)
    for i, case in enumerate(study.cases.order_by("position")):
        first = case.candidates.order_by("pk").first()
        reading.answer_submit(
            assignment=assignment, case=case, payload={"selected": [first.pk]}, client_token=f"phi-token-{i}"
        )
    return {
        "users": users,
        "dataset": dataset,
        "study": study,
        "run": run,
        "assignment": assignment,
        "preview": preview.content,
    }


# --------------------------------------------------------------------------- the scans


def _database() -> dict[str, str]:
    """Every row of every table, as text: {"table": rows}."""
    out = {}
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            out[f"db:{table}"] = "\n".join(repr(row) for row in cursor.fetchall())
    return out


def _files() -> dict[str, bytes]:
    roots = {Path(django_settings.DATA_DIR)} | {
        Path(getattr(django_settings, name)) for name in ("MEDIA_ROOT", "UPLOAD_ROOT", "ARTEFACT_ROOT")
    }
    out = {}
    for root in roots:
        for folder, _, files in os.walk(root):
            for name in files:
                path = Path(folder) / name
                out[f"file:{path}"] = path.read_bytes() + str(path.relative_to(root)).encode()
    return out


_LINK = re.compile(rb"""(?:href|src|data-src|data-job-progress)=["']([^"'#]+)["']""")
_SKIP = ("/logout", "/static/", "/delete/", "/history/", "/add/", "/password/", "/api/docs", "/api/redoc")


def _crawl(client, user, seeds: list[str], limit: int = 600) -> dict[str, bytes]:
    """GET every same-site link reachable from `seeds` as `user` (no form is submitted)."""
    client.force_login(user)
    queue, seen, out = list(seeds), set(), {}
    variants: dict[str, int] = defaultdict(int)  # query strings per path: filters and sort orders repeat a page
    while queue and len(seen) < limit:
        url = queue.pop(0)
        if url in seen or any(s in url for s in _SKIP):
            continue
        seen.add(url)
        path = url.split("?")[0]
        variants[path] += 1
        if variants[path] > 3:
            continue
        response = client.get(url)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        out[f"page:{user.username}:{url}"] = body + "".join(f"{k}: {v}\n" for k, v in response.items()).encode()
        if "html" not in response.get("Content-Type", ""):
            continue
        for link in _LINK.findall(body):
            target = urljoin(url, link.decode().replace("&amp;", "&"))
            parts = urlsplit(target)
            if parts.netloc and parts.netloc not in ("testserver", ""):
                continue
            queue.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    return out


def _api(client, user) -> dict[str, bytes]:
    """Every GET operation of the OpenAPI schema, each path parameter given every id the database holds."""
    client.force_login(user)
    schema = client.get("/api/schema/", {"format": "json"}, HTTP_ACCEPT="application/json")
    paths = json.loads(schema.content)["paths"]
    # Every id of every row of the world's tables (not 1…max: in a long test session ids are large and sparse),
    # and case numbers 1…10 for `index`.
    with connection.cursor() as cursor:
        ids = set()
        for table in connection.introspection.table_names():
            columns = {c.name for c in connection.introspection.get_table_description(cursor, table)}
            if "id" in columns and not table.startswith(("django_", "auth_", "axes_")):
                cursor.execute(f'SELECT id FROM "{table}"')
                ids.update(row[0] for row in cursor.fetchall() if isinstance(row[0], int))
    values = {"index": [str(i) for i in range(1, 11)]}
    out = {}
    for template, operations in paths.items():
        if "get" not in operations:
            continue
        urls = [template]
        for name in re.findall(r"\{(\w+)\}", template):
            urls = [u.replace("{" + name + "}", v) for u in urls for v in values.get(name, map(str, sorted(ids)))]
        for url in urls:
            response = client.get(url)
            out[f"api:{user.username}:{url}"] = response.content
    return out


def _exports(client, user, study) -> dict[str, bytes]:
    client.force_login(user)
    out = {}
    for fmt in exports.FORMATS:
        response = client.get(f"/reports/studies/{study.pk}/download/{fmt}/")
        out[f"export:{fmt}"] = b"".join(response.streaming_content) if response.streaming else response.content
    return out


_RESULT: dict[str, list[str]] = {}


@pytest.fixture
def found(tmp_path, client, django_user_model, settings, django_capture_on_commit_callbacks):
    """{seeded text: [where it was found]}, computed once for the module (the scans are what takes time)."""
    if _RESULT:
        return _RESULT
    settings.DATA_DIR = tmp_path / "data"
    settings.MEDIA_ROOT = tmp_path / "data" / "media"
    settings.UPLOAD_ROOT = tmp_path / "data" / "uploads"
    settings.ARTEFACT_ROOT = tmp_path / "data" / "artefacts"
    world = _build(tmp_path, client, django_user_model, django_capture_on_commit_callbacks)
    users, dataset, study, run = world["users"], world["dataset"], world["study"], world["run"]
    image = dataset.images.order_by("pk").first()
    starts = [
        "/",
        "/datasets/",
        f"/datasets/{dataset.pk}/",
        "/studies/",
        f"/studies/{study.pk}/",
        "/reports/",
        f"/reports/studies/{study.pk}/",
        f"/runs/{run.pk}/",
        f"/runs/{run.pk}/search/?image={image.pk}",
        *(f"/imports/{j.pk}/" for j in ImportJob.objects.all()),
        *(f"/images/{pk}/" for pk in dataset.images.values_list("pk", flat=True)),
    ]
    where: dict[str, bytes | str] = {}
    where.update(_database())
    where.update(_files())
    for name in ("phi-coord", "phi-research"):
        where.update(_crawl(client, users[name], starts))
        where.update(_api(client, users[name]))
    reader_starts = ["/", "/read/", f"/read/{study.pk}/", *(f"/read/{study.pk}/case/{i}/" for i in range(3))]
    where.update(_crawl(client, users["phi-reader"], reader_starts))
    where.update(_crawl(client, users["phi-admin"], ["/admin/"], limit=400))
    where.update(_exports(client, users["phi-coord"], study))
    where[f"page:phi-coord:/datasets/{dataset.pk}/import/ (the label table's column preview)"] = world["preview"]
    assert any(k.startswith("page:phi-reader:") for k in where) and any(k.startswith("export:") for k in where)
    hits = defaultdict(list)
    for place, content in where.items():
        blob = content.lower() if isinstance(content, bytes) else content.lower().encode()
        for seed in SEEDS:
            if seed.text.lower().encode() in blob:
                hits[seed.text].append(place)
    _RESULT.update({seed.text: hits.get(seed.text, []) for seed in SEEDS})
    _RESULT["__places__"] = sorted(where)
    return _RESULT


def _leaks(found: dict, finding: str) -> list[str]:
    return [
        f"{seed.text!r} ({seed.where}) in {len(found[seed.text])} places, e.g. {found[seed.text][:4]}"
        for seed in SEEDS
        if seed.finding == finding and found[seed.text]
    ]


def test_the_scan_reaches_every_kind_of_place(found):
    """The scan is only as good as its reach: database, files, each persona's pages, API, admin, exports."""
    places = found["__places__"]
    for prefix in ("db:retrieval_image", "file:", "page:phi-coord:", "page:phi-research:", "page:phi-reader:"):
        assert any(p.startswith(prefix) for p in places), prefix
    for prefix in ("page:phi-admin:/admin/retrieval/image/", "api:phi-coord:/api/images/", "export:csv"):
        assert any(p.startswith(prefix) for p in places), prefix
    assert sum(p.startswith("page:") for p in places) > 40


@pytest.mark.parametrize(
    "finding",
    [
        NAMES,
        DICOM,
        COLUMNS_EXACT,
        UPLOADS,
        PROFILE,
        COLUMNS_FUZZY,
        METADATA,
    ],
)
def test_no_seeded_identifier_is_found_anywhere(found, finding):
    leaks = _leaks(found, finding)
    assert not leaks, "\n".join(leaks)
