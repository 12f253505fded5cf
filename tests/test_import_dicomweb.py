"""Import from a PACS over DICOMweb, against a real Orthanc (with its DICOMweb plugin) started by the tests."""

from __future__ import annotations

import io
import json

import pydicom
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from core.errors import ApplicationError
from retrieval.imports import dicomweb, ingest, pacs, services
from retrieval.models import Dataset, DicomwebSource, Image, ImportJob, Label
from tests.factories import dicom_sample, dicom_with
from tests.orthanc import PASSWORD, USER, free_port, start_orthanc

pytestmark = pytest.mark.django_db

CT = pydicom.dcmread(get_testdata_file("CT_small.dcm"), stop_before_pixels=True)
MR = pydicom.dcmread(get_testdata_file("MR_small.dcm"), stop_before_pixels=True)
SERIES_PATIENT = {"PatientID": "PACS-MRN-7", "PatientName": "Series^Patient"}


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    """Orthanc holding CT_small, MR_small and a 5-slice CT series of another patient."""
    process, server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    try:
        server.upload(dicom_sample("CT_small.dcm"))
        server.upload(dicom_sample("MR_small.dcm"))
        server.series_study, server.series_uid, server.slices = generate_uid(), generate_uid(), []
        for i in range(5):
            sop = generate_uid()
            server.slices.append(sop)
            server.upload(
                dicom_with(
                    StudyInstanceUID=server.series_study,
                    SeriesInstanceUID=server.series_uid,
                    SOPInstanceUID=sop,
                    InstanceNumber=i + 1,
                    ImagePositionPatient=[0.0, 0.0, 10.0 * i],
                    **SERIES_PATIENT,
                )
            )
        yield server
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture
def pacs_settings(settings, orthanc):
    settings.DICOMWEB_ENDPOINTS = {
        "pacs": {"url": orthanc.dicomweb, "username": USER, "password": PASSWORD, "timeout": 10},
        "wrong-password": {"url": orthanc.dicomweb, "username": USER, "password": "nope", "timeout": 10},
        "closed": {"url": f"http://127.0.0.1:{free_port()}/dicom-web", "timeout": 5},
    }
    return settings


def _dataset() -> Dataset:
    return services.dataset_create(name="pacs")


def _run(job: ImportJob) -> ImportJob:
    ingest.import_job_run(job_id=job.pk)
    job.refresh_from_db()
    return job


def test_search_by_patient_modality_and_date(pacs_settings, orthanc):
    endpoint = dicomweb.endpoint_resolve("pacs")
    rows = dicomweb.search(endpoint, patient_id=CT.PatientID)
    assert [r.study_uid for r in rows] == [CT.StudyInstanceUID]
    assert rows[0].patient_id == CT.PatientID and rows[0].modality == "CT" and rows[0].instances == 1
    assert [r.study_uid for r in dicomweb.search(endpoint, modality="MR")] == [MR.StudyInstanceUID]
    dated = dicomweb.search(endpoint, date_from=CT.StudyDate, date_to=CT.StudyDate)
    assert CT.StudyInstanceUID in {r.study_uid for r in dated}
    series = dicomweb.search(endpoint, level="series", study_uid=orthanc.series_study)
    assert [(r.series_uid, r.instances) for r in series] == [(orthanc.series_uid, 5)]
    assert series[0].selection == f"{orthanc.series_study}/{orthanc.series_uid}"


def test_studies_and_series_import_like_files(pacs_settings, orthanc):
    job = pacs.dicomweb_import_create(
        dataset=_dataset(),
        endpoint="pacs",
        selections=[CT.StudyInstanceUID, f"{orthanc.series_study}/{orthanc.series_uid}"],
        enqueue=False,
    )
    job = _run(job)
    assert job.status == "succeeded" and job.n_imported == 2, job.report
    ct = Image.objects.get(sop_instance_uid=CT.SOPInstanceUID)
    assert ct.study_uid == CT.StudyInstanceUID and ct.modality == "CT"
    volume = Image.objects.get(series_uid=orthanc.series_uid)
    assert volume.slices_in_series == 5 and volume.sop_instance_uid == orthanc.slices[2]  # the middle slice
    # De-identified at ingest: no identifier in the rows, the stored files or the PACS selection.
    rows = json.dumps(list(Image.objects.values()), default=str) + json.dumps(
        list(DicomwebSource.objects.values()), default=str
    )
    for value in (CT.PatientID, str(CT.PatientName), *SERIES_PATIENT.values()):
        assert value not in rows
        for image in Image.objects.all():
            assert value.encode() not in open(image.original.path, "rb").read()
    assert pydicom.dcmread(volume.original.path).PatientID == volume.patient_pseudo_id
    assert DicomwebSource.objects.get().selections == [
        {"study": CT.StudyInstanceUID, "series": ""},
        {"study": orthanc.series_study, "series": orthanc.series_uid},
    ]
    # The retrieved (identified) files are gone.
    assert not any((pacs_settings.UPLOAD_ROOT / "dicomweb").rglob("*"))


def test_a_second_import_of_the_same_study_skips_duplicates(pacs_settings, orthanc):
    dataset = _dataset()
    _run(pacs.dicomweb_import_create(dataset=dataset, endpoint="pacs", selections=[MR.StudyInstanceUID], enqueue=False))
    job = _run(
        pacs.dicomweb_import_create(dataset=dataset, endpoint="pacs", selections=[MR.StudyInstanceUID], enqueue=False)
    )
    assert job.n_imported == 0 and job.n_skipped == 1 and Image.objects.count() == 1, job.report


def test_labels_keyed_by_study_and_sop_uid(pacs_settings, orthanc, tmp_path):
    by_study = tmp_path / "by_study.csv"
    by_study.write_text(
        f"StudyInstanceUID,Nodule,PatientName\n{orthanc.series_study},1,Series^Patient\n{CT.StudyInstanceUID},0,x\n"
        f"1.2.3.4.5,1,nobody\n"
    )
    job = _run(
        pacs.dicomweb_import_create(
            dataset=_dataset(),
            endpoint="pacs",
            selections=[CT.StudyInstanceUID, orthanc.series_study],
            labels_path=by_study,
            enqueue=False,
        )
    )
    assert job.status == "succeeded", job.report
    labels = dict(Label.objects.values_list("image__sop_instance_uid", "value_num"))
    assert labels == {orthanc.slices[2]: 1.0, CT.SOPInstanceUID: 0.0}
    assert not Label.objects.filter(name="PatientName").exists()  # an identifier column is never imported
    # The unknown UID is reported on its line; like every name a table gives, it is shown as its pseudonym.
    assert any("names no imported file" in r["message"] and r["line"] == 4 for r in job.report), job.report
    assert not any("1.2.3.4.5" in r["message"] for r in job.report)

    by_sop = tmp_path / "by_sop.csv"
    by_sop.write_text(f"SOPInstanceUID;Grade\n{orthanc.slices[2]};3\n")
    job = _run(
        pacs.dicomweb_import_create(
            dataset=Dataset.objects.get(),
            endpoint="pacs",
            selections=[orthanc.series_study],
            labels_path=by_sop,
            enqueue=False,
        )
    )
    assert Label.objects.get(name="Grade").image.sop_instance_uid == orthanc.slices[2], job.report


@pytest.mark.parametrize(
    ("endpoint", "selection", "message"),
    [
        ("closed", "1.2.3", "cannot be reached"),
        ("wrong-password", "1.2.3", "refused the search for study 1.2.3 (HTTP 401)"),
        ("pacs", "1.2.840.99999.1", "has no study 1.2.840.99999.1"),
        ("pacs", "1.2.840.99999.1/1.2.3", "has no series 1.2.3 of study 1.2.840.99999.1"),
        ("elsewhere", "1.2.3", "No DICOMweb endpoint named 'elsewhere'"),
        ("pacs", "Doe^John", "is not a DICOM UID"),
    ],
)
def test_an_unusable_pacs_or_selection_creates_nothing(pacs_settings, endpoint, selection, message):
    dataset = _dataset()
    with pytest.raises(ApplicationError, match=message.replace("(", r"\(").replace(")", r"\)").replace("^", r"\^")):
        pacs.dicomweb_import_create(dataset=dataset, endpoint=endpoint, selections=[selection], enqueue=False)
    assert not ImportJob.objects.exists() and not DicomwebSource.objects.exists()


def test_a_pacs_gone_when_the_worker_runs_fails_the_import_and_creates_nothing(pacs_settings, orthanc):
    job = pacs.dicomweb_import_create(
        dataset=_dataset(), endpoint="pacs", selections=[CT.StudyInstanceUID], enqueue=False
    )
    pacs_settings.DICOMWEB_ENDPOINTS = {"pacs": {"url": f"http://127.0.0.1:{free_port()}/dicom-web"}}
    job = _run(job)
    assert job.status == "failed" and "cannot be reached" in job.error
    assert job.report[-1]["status"] == "failed" and "cannot be reached" in job.report[-1]["message"]
    assert not Image.objects.exists()
    # Back up: Retry imports the same selection.
    pacs_settings.DICOMWEB_ENDPOINTS = {"pacs": {"url": orthanc.dicomweb, "username": USER, "password": PASSWORD}}
    job = _run(services.import_job_retry(job=job, enqueue=False))
    assert job.status == "succeeded" and Image.objects.get().sop_instance_uid == CT.SOPInstanceUID


def test_the_command_imports_by_url_with_the_configured_credentials(pacs_settings, orthanc):
    out = io.StringIO()
    call_command(
        "import_dicomweb", "cmd", "--dicomweb", orthanc.dicomweb, "--study", MR.StudyInstanceUID, "--sync", stdout=out
    )
    assert "1 imported" in out.getvalue()
    assert DicomwebSource.objects.get().endpoint == "pacs"  # the configured endpoint of that URL
    assert Image.objects.get().sop_instance_uid == MR.SOPInstanceUID
    out = io.StringIO()
    call_command("import_dicomweb", "--endpoint", "pacs", "--search", "--modality", "CT", stdout=out)
    assert CT.StudyInstanceUID in out.getvalue() and orthanc.series_study in out.getvalue()
    with pytest.raises(CommandError, match="cannot be reached"):
        call_command("import_dicomweb", "cmd", "--endpoint", "closed", "--study", "1.2.3", "--sync")


def test_a_machine_without_orthanc_fails_the_tests_saying_how_to_install_it(tmp_path, monkeypatch):
    from tests import orthanc as module

    monkeypatch.setattr(module, "ORTHANC", str(tmp_path / "no-Orthanc"))
    with pytest.raises(pytest.fail.Exception, match="make orthanc"):
        start_orthanc(tmp_path)


def test_the_api_searches_and_imports_and_refuses_a_bad_pacs(pacs_settings, orthanc, client, coordinator, reader):
    dataset = _dataset()
    client.force_login(reader)
    assert client.post("/api/dicomweb/search/", {"endpoint": "pacs"}).status_code == 403
    assert client.post(f"/api/datasets/{dataset.pk}/imports/dicomweb/", {}).status_code == 403
    client.force_login(coordinator)
    found = client.post("/api/dicomweb/search/", {"endpoint": "pacs", "modality": "MR"})
    assert found.status_code == 200 and [r["selection"] for r in found.json()] == [MR.StudyInstanceUID]
    refused = client.post("/api/dicomweb/search/", {"endpoint": "wrong-password"})
    assert refused.status_code == 400 and "HTTP 401" in refused.json()["detail"]
    url = f"/api/datasets/{dataset.pk}/imports/dicomweb/"
    bad = client.post(url, {"endpoint": "closed", "select": ["1.2.3"]}, content_type="application/json")
    assert bad.status_code == 400 and "cannot be reached" in bad.json()["detail"]
    assert not ImportJob.objects.exists()
    made = client.post(url, {"endpoint": "pacs", "select": [MR.StudyInstanceUID]}, content_type="application/json")
    assert made.status_code == 202, made.content
    job = _run(ImportJob.objects.get(pk=made.json()["id"]))
    assert job.n_imported == 1 and Image.objects.get().sop_instance_uid == MR.SOPInstanceUID


def test_the_page_shows_identifiers_to_the_coordinator_and_stores_uids_only(
    pacs_settings, orthanc, client, coordinator
):
    dataset = _dataset()
    client.force_login(coordinator)
    page = client.post(
        f"/datasets/{dataset.pk}/import/pacs/", {"action": "search", "endpoint": "pacs", "patient_id": CT.PatientID}
    )
    html = page.content.decode()
    assert page.status_code == 200 and CT.PatientID in html and CT.StudyInstanceUID in html
    assert "no-store" in page["Cache-Control"]
    posted = client.post(f"/datasets/{dataset.pk}/import/pacs/", {"endpoint": "pacs", "select": [CT.StudyInstanceUID]})
    job = ImportJob.objects.get()
    assert posted.status_code == 302 and posted["Location"] == job.get_absolute_url()
    stored = json.dumps(list(ImportJob.objects.values()), default=str) + json.dumps(
        list(DicomwebSource.objects.values()), default=str
    )
    assert CT.PatientID not in stored and str(CT.PatientName) not in stored
    failed = client.post(f"/datasets/{dataset.pk}/import/pacs/", {"action": "search", "endpoint": "wrong-password"})
    assert "HTTP 401" in failed.content.decode()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not json", "DICOMWEB_ENDPOINTS must be a JSON object"),
        ('{"pacs": {"url": "ftp://x"}}', 'needs a \\"url\\" starting with http'),
        ('{"pacs": {"url": "http://x", "pasword": "typo"}}', "unknown keys ['pasword']"),
        ('{"pacs": {"url": "http://x", "token": "t", "username": "u"}}', "a token or a username and password"),
    ],
)
def test_a_malformed_endpoint_setting_stops_start_up(tmp_path, value, message):
    from tests.test_settings_env import _load_settings

    result = _load_settings(DEBUG="true", DATA_DIR=str(tmp_path), DICOMWEB_ENDPOINTS=value)
    assert result.returncode != 0 and message.replace("\\", "") in result.stderr, result.stderr


def test_a_selection_over_the_instance_limit_is_refused(pacs_settings, orthanc):
    pacs_settings.IMPORT_MAX_ARCHIVE_MEMBERS = 4
    with pytest.raises(ApplicationError, match="holds 5 instances, more than an import may"):
        pacs.dicomweb_import_create(dataset=_dataset(), endpoint="pacs", selections=[orthanc.series_study])
    assert not ImportJob.objects.exists()


def test_a_pacs_sending_more_than_it_announced_is_stopped(pacs_settings, orthanc, monkeypatch):
    job = pacs.dicomweb_import_create(
        dataset=_dataset(), endpoint="pacs", selections=[orthanc.series_study], enqueue=False
    )
    monkeypatch.setattr(dicomweb, "plan", lambda endpoint, selections: [(orthanc.series_study, orthanc.series_uid, 1)])
    pacs_settings.IMPORT_MAX_ARCHIVE_MEMBERS = 3
    job = _run(job)
    assert job.status == "failed" and "sent more than IMPORT_MAX_ARCHIVE_MEMBERS = 3 instances" in job.error
    assert not Image.objects.exists() and not any((pacs_settings.UPLOAD_ROOT / "dicomweb").rglob("*"))


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_pacs_import_runs_on_a_cpu_worker_as_users_start_it(pacs_settings, orthanc, start_worker, monkeypatch):
    from retrieval.tasks import import_run
    from tests.conftest import send, wait_until

    # The worker reads the endpoints from its own environment, as a deployment sets them for every process.
    monkeypatch.setenv("DICOMWEB_ENDPOINTS", json.dumps(pacs_settings.DICOMWEB_ENDPOINTS))
    job = pacs.dicomweb_import_create(
        dataset=_dataset(), endpoint="pacs", selections=[CT.StudyInstanceUID, orthanc.series_study], enqueue=False
    )
    worker = start_worker("filesystem://localhost/", roles=("cpu",))
    send(import_run, "filesystem://localhost/", job_id=job.pk)
    wait_until(lambda: ImportJob.objects.get(pk=job.pk).is_finished, worker=worker, timeout=120)
    job.refresh_from_db()
    assert job.status == "succeeded" and job.n_imported == 2, (job.error, job.report, worker.output()[-3000:])
    assert Image.objects.get(series_uid=orthanc.series_uid).sop_instance_uid == orthanc.slices[2]


def _token(page: str) -> str:
    start = page.index('name="token" value="') + len('name="token" value="')
    return page[start : page.index('"', start)]


def test_the_page_previews_the_label_table_before_the_pacs_import(
    pacs_settings, orthanc, client, coordinator, settings
):
    """With a label table, the PACS page shows the same column preview as a file upload before anything is
    imported; free text is refused unless allowed there; confirming imports the selection with its labels."""
    settings.UPLOAD_ROOT = settings.DATA_DIR / "uploads-pacs-preview"
    dataset = _dataset()
    client.force_login(coordinator)
    table = (
        f"StudyInstanceUID,Nodule,notes,PatientName\n{CT.StudyInstanceUID},1,Called the husband at home,x\n"
        f"{orthanc.series_study},0,,y\n"
    ).encode()
    page = client.post(
        f"/datasets/{dataset.pk}/import/pacs/",
        {
            "endpoint": "pacs",
            "select": [CT.StudyInstanceUID, orthanc.series_study],
            "labels": SimpleUploadedFile("labels.csv", table),
            "label_format": "generic",
        },
    )
    html = page.content.decode()
    assert page.status_code == 200 and "Check the label table before importing" in html
    assert "<td>notes</td><td>refused: free text</td>" in html and "<td>Nodule</td><td>imported as a label</td>" in html
    assert "the chosen PACS studies and series with" in html
    assert not ImportJob.objects.exists()  # nothing before the coordinator confirms

    again = client.post(
        f"/datasets/{dataset.pk}/import/confirm/", {"token": _token(html), "action": "preview", "allow_free_text": "on"}
    ).content.decode()
    assert "<td>notes</td><td>imported as a label</td>" in again
    confirmed = client.post(f"/datasets/{dataset.pk}/import/confirm/", {"token": _token(again), "action": "confirm"})
    job = ImportJob.objects.get()
    assert confirmed.status_code == 302 and confirmed["Location"] == job.get_absolute_url()
    assert job.allow_free_text and job.labels_path and DicomwebSource.objects.get(job=job).endpoint == "pacs"
    job = _run(job)
    assert job.status == "succeeded", job.report
    values = {
        (name, uid): (num, text)
        for name, uid, num, text in Label.objects.values_list(
            "name", "image__sop_instance_uid", "value_num", "value_text"
        )
    }
    assert values[("Nodule", CT.SOPInstanceUID)][0] == 1.0 and values[("Nodule", orthanc.slices[2])][0] == 0.0
    assert values[("notes", CT.SOPInstanceUID)][1] == "Called the husband at home"
    assert not Label.objects.filter(name="PatientName").exists()


def test_a_pacs_preview_cancelled_or_refused_by_the_pacs_creates_nothing_and_keeps_no_upload(
    pacs_settings, orthanc, client, coordinator, settings
):
    settings.UPLOAD_ROOT = settings.DATA_DIR / "uploads-pacs-cancel"
    dataset = _dataset()
    client.force_login(coordinator)

    def preview(selection: str) -> str:
        return client.post(
            f"/datasets/{dataset.pk}/import/pacs/",
            {
                "endpoint": "pacs",
                "select": [selection],
                "labels": SimpleUploadedFile("l.csv", b"StudyInstanceUID,A\n1.2,1\n"),
            },
        ).content.decode()

    cancelled = client.post(
        f"/datasets/{dataset.pk}/import/confirm/", {"token": _token(preview(CT.StudyInstanceUID)), "action": "cancel"}
    )
    assert cancelled.status_code == 302
    refused = client.post(
        f"/datasets/{dataset.pk}/import/confirm/", {"token": _token(preview("1.2.840.99999.1")), "action": "confirm"}
    )
    assert refused.status_code == 302 and refused["Location"] == f"/datasets/{dataset.pk}/import/pacs/"
    assert "has no study 1.2.840.99999.1" in client.get(refused["Location"]).content.decode()
    assert not ImportJob.objects.exists()
    assert not [p for p in settings.UPLOAD_ROOT.rglob("*") if p.is_file()]


def test_the_api_and_command_pass_allow_free_text_to_a_pacs_import(
    pacs_settings, orthanc, client, coordinator, tmp_path
):
    dataset = _dataset()
    client.force_login(coordinator)
    response = client.post(
        f"/api/datasets/{dataset.pk}/imports/dicomweb/",
        {"endpoint": "pacs", "select": [CT.StudyInstanceUID], "allow_free_text": "true"},
    )
    assert response.status_code == 202 and ImportJob.objects.get().allow_free_text, response.content
    table = tmp_path / "t.csv"
    table.write_text(f"StudyInstanceUID,notes\n{CT.StudyInstanceUID},Called the husband at home\n")
    call_command(
        "import_dicomweb",
        "pacs",
        "--endpoint",
        "pacs",
        "--study",
        CT.StudyInstanceUID,
        "--labels",
        str(table),
        "--allow-free-text",
        "--sync",
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )
    job = ImportJob.objects.latest("pk")
    assert job.allow_free_text and job.status == "succeeded", job.report
