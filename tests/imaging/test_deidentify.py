"""De-identification removes identifying attributes everywhere and leaves pixels alone."""

import io

import numpy as np
import pydicom
import pytest
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from retrieval.imports.imaging.decode import decode_image
from retrieval.imports.imaging.deid import BLANKED_KEYWORDS, REMOVED_KEYWORDS, deidentify_dicom
from retrieval.imports.imaging.errors import ImageDecodeError

from .samples import dataset_bytes, sample_bytes

BRIEF_TAGS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientAddress",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientTelephoneNumbers",
    "InstitutionName",
    "InstitutionAddress",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "AccessionNumber",
    "StudyID",
)

VALUES_BY_VR = {
    "PN": "Doe^Jane",
    "LO": "secret",
    "SH": "secret",
    "ST": "secret",
    "LT": "secret",
    "UT": "secret",
    "CS": "SECRET",
    "DA": "19700101",
    "TM": "120000",
    "DT": "19700101120000",
    "AS": "051Y",
    "AE": "SECRETAE",
    "UI": "1.2.3.4",
    "IS": "7",
    "DS": "7",
    "US": 7,
    "SS": 7,
    "UL": 7,
    "SL": 7,
    "FD": 7.0,
    "FL": 7.0,
}


def read(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def all_keywords(ds: Dataset) -> set[str]:
    return {elem.keyword for elem in ds.iterall()}


def phi_filled(ds: Dataset) -> Dataset:
    """CT_small with every listed attribute set, also nested inside a sequence."""
    nested = Dataset()
    for keyword in REMOVED_KEYWORDS + BLANKED_KEYWORDS:
        vr = dictionary_VR(tag_for_keyword(keyword)).split(" or ")[0]
        if vr == "SQ":
            item = Dataset()
            item.PatientName = "Doe^Jane"
            setattr(ds, keyword, Sequence([item]))
        elif vr in VALUES_BY_VR:
            setattr(ds, keyword, VALUES_BY_VR[vr])
            setattr(nested, keyword, VALUES_BY_VR[vr])
    ds.ReferencedImageSequence = Sequence([nested])
    return ds


def test_brief_tags_are_in_the_profile_lists():
    covered = set(REMOVED_KEYWORDS) | set(BLANKED_KEYWORDS) | {"PatientName", "PatientID"}
    assert set(BRIEF_TAGS) <= covered


def test_every_listed_keyword_is_a_dicom_keyword():
    assert [k for k in REMOVED_KEYWORDS + BLANKED_KEYWORDS if tag_for_keyword(k) is None] == []


def test_every_listed_tag_is_removed_or_blanked_also_in_sequences(ct_small):
    original = dataset_bytes(phi_filled(ct_small))
    ds = read(deidentify_dicom(original, pseudo_id="ANON-0001"))
    assert not (all_keywords(ds) & set(REMOVED_KEYWORDS))
    for elem in ds.iterall():
        if elem.keyword in BLANKED_KEYWORDS:
            assert elem.value in ("", None, b"") or len(elem.value) == 0, elem.keyword
    assert "Doe^Jane" not in str(ds) and "secret" not in str(ds)
    assert ds.PatientID == "ANON-0001" and str(ds.PatientName) == "ANON-0001"


def test_identity_flags_and_private_tags(ct_small):
    ds = read(deidentify_dicom(dataset_bytes(ct_small), pseudo_id="ANON-0001"))
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethod
    assert {item.CodeValue for item in ds.DeidentificationMethodCodeSequence} >= {"113100"}
    assert not any(elem.tag.is_private for elem in ds.iterall())
    assert "OtherPatientIDsSequence" not in ds  # CT_small carries two other IDs
    assert b"1CT1" not in deidentify_dicom(dataset_bytes(ct_small), pseudo_id="X")
    # Retained: UIDs (series grouping) and patient characteristics.
    assert ds.SOPInstanceUID == ct_small.SOPInstanceUID
    assert ds.SeriesInstanceUID == ct_small.SeriesInstanceUID
    assert ds.PatientSex == ct_small.PatientSex


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "MR_small_bigendian.dcm", "SC_rgb_jpeg_dcmtk.dcm", "examples_ybr_color.dcm"]
)
def test_pixel_data_is_identical(name):
    original = sample_bytes(name)
    cleaned = deidentify_dicom(original, pseudo_id="ANON-0002")
    before, after = read(original), read(cleaned)
    assert after.PixelData == before.PixelData
    assert after.file_meta.TransferSyntaxUID == before.file_meta.TransferSyntaxUID
    assert np.array_equal(after.pixel_array, before.pixel_array)
    assert np.array_equal(decode_image(cleaned).pixels, decode_image(original).pixels)


@pytest.mark.parametrize("pseudo_id", ["", "  ", "a\\b", "x" * 65, "tab\there"])
def test_invalid_pseudonym_is_refused(pseudo_id):
    with pytest.raises(ValueError):
        deidentify_dicom(sample_bytes("CT_small.dcm"), pseudo_id=pseudo_id)


def test_non_dicom_input_is_a_decode_error():
    with pytest.raises(ImageDecodeError):
        deidentify_dicom(b"hello world" * 20, pseudo_id="X")
