"""What an import stores carries no identifier: PNG/JPEG originals without their metadata, DICOM
under the whole Basic Profile (issue 12, findings 6 and 7). Every stored byte is scanned."""

import io

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage
from PIL import PngImagePlugin
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from retrieval.models import Image
from tests.factories import dicom_with, write_files
from tests.importing import image_named, run_import

pytestmark = pytest.mark.django_db

NAME = "Doe^John"
MRN = "MRN-99182736"


def stored_bytes(settings) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in settings.MEDIA_ROOT.rglob("*") if p.is_file()}


def png_with_text() -> tuple[bytes, np.ndarray]:
    pixels = np.random.default_rng(1).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", f"Patient: {NAME}")
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, "PNG", pnginfo=info)
    return out.getvalue(), pixels


def jpeg_with_exif() -> bytes:
    exif = PILImage.Exif()
    exif[0x013B] = NAME  # Artist
    out = io.BytesIO()
    PILImage.fromarray(np.random.default_rng(2).integers(0, 255, (24, 32), dtype=np.uint8)).save(
        out, "JPEG", exif=exif, comment=f"MRN {MRN}", quality=95
    )
    return out.getvalue()


def test_png_and_jpeg_originals_are_stored_without_metadata(tmp_path, settings):
    png, pixels = png_with_text()
    jpg = jpeg_with_exif()
    assert f"Patient: {NAME}".encode() in png and NAME.encode() in jpg and MRN.encode() in jpg
    job = run_import(source=write_files(tmp_path / "src", {"a.png": png, "b.jpg": jpg}))
    assert job.n_imported == 2, job.report
    for path, data in stored_bytes(settings).items():
        assert NAME.encode() not in data and MRN.encode() not in data and b"Doe" not in data, path
    a, b = image_named("a.png"), image_named("b.jpg")
    with a.original.open("rb") as fh:
        assert np.array_equal(np.asarray(PILImage.open(fh)), pixels)  # lossless, the same pixels
    with b.original.open("rb") as fh:
        stored_jpeg = fh.read()
    # The JPEG is not re-encoded: its scan data is the uploaded one, so the pixels are too.
    assert stored_jpeg[stored_jpeg.index(b"\xff\xda") :] == jpg[jpg.index(b"\xff\xda") :]
    assert np.array_equal(
        np.asarray(PILImage.open(io.BytesIO(stored_jpeg))), np.asarray(PILImage.open(io.BytesIO(jpg)))
    )


def test_dicom_original_keeps_no_identifier_of_the_profile(tmp_path, settings):
    nested = Dataset()
    nested.ConsultingPhysicianName = "Nested^Consultant"
    nested.PatientName = NAME
    nested.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.7"
    data = dicom_with(
        PatientName=NAME,
        PatientID=MRN,
        ConsultingPhysicianName="Consult^Carla",
        ClinicalTrialSubjectID="SUBJ-778899",
        ClinicalTrialSponsorName="Acme Trials Sponsor",
        ClinicalTrialSiteName="Northside Trial Site",
        PatientBirthDateInAlternativeCalendar="5730-02-11",
        ReasonForVisit="Fell off ladder",
        ScheduledProcedureStepID="SPS-99881",
        ReferencedImageSequence=Sequence([nested]),
    )
    job = run_import(source=write_files(tmp_path / "src", {"ct.dcm": data}))
    assert job.n_imported == 1, job.report
    secrets = [
        NAME,
        MRN,
        "Consult^Carla",
        "Nested^Consultant",
        "SUBJ-778899",
        "Acme Trials",
        "Northside",
        "5730-02-11",
        "Fell off ladder",
        "SPS-99881",
    ]
    for path, stored in stored_bytes(settings).items():
        for secret in secrets:
            assert secret.encode() not in stored, (path, secret)
    image = Image.objects.get()
    ds = pydicom.dcmread(image.original.path)
    assert [e.keyword for e in ds.iterall() if e.VR == "PN"] == ["PatientName"]
    assert ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID == "1.2.826.0.1.3680043.8.498.7"
    assert ds.PatientIdentityRemoved == "YES"
    assert "113100" in {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}
