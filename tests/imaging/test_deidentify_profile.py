"""The whole Basic Application Level Confidentiality Profile (PS3.15 Table E.1-1) applies, from
the maintained table, plus every person name, the patient and clinical-trial groups; the file
records the profile and the options used (issue 12, finding 6)."""

import io

import pydicom
import pytest
from pydicom.datadict import DicomDictionary, dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from retrieval.imports.imaging import deid
from retrieval.imports.imaging.deid import deidentify_dicom

from .samples import dataset_bytes, sample_dataset

#: The attributes the audit found surviving the hand-written subset, with the value seeded.
SURVIVORS = {
    "ConsultingPhysicianName": "Consult^Carla",
    "ClinicalTrialSubjectID": "SUBJ-778899",
    "ClinicalTrialSponsorName": "Acme Trials Sponsor",
    "ClinicalTrialSiteName": "Northside Trial Site",
    "ClinicalTrialSiteID": "SITE-4455",
    "PatientBirthDateInAlternativeCalendar": "5730-02-11",
    "ReasonForVisit": "Fell off ladder at 12 Elm Road",
    "ScheduledProcedureStepID": "SPS-99881",
}

#: Every non-retired PN attribute of the data dictionary (groups 0000/0002 excluded).
ALL_PN = sorted(
    entry[4]
    for tag, entry in DicomDictionary.items()
    if entry[0] == "PN" and entry[3] != "Retired" and entry[4] and tag >> 16 not in (0, 2)
)


def seeded(ds: Dataset) -> Dataset:
    """`ds` with the survivors and every PN set at the top level and inside two sequences:
    one the profile keeps and cleans (Referenced Image Sequence, UIDs retained) and one it does
    not list (Anatomic Region Sequence), nested two deep."""

    def fill(target: Dataset, tagged: str) -> None:
        for keyword, value in SURVIVORS.items():
            setattr(target, keyword, value)
        for i, keyword in enumerate(ALL_PN):
            setattr(target, keyword, f"Person{i}^{tagged}")

    fill(ds, "Top")
    inner = Dataset()
    fill(inner, "Inner")
    referenced = Dataset()
    referenced.ReferencedSOPClassUID = ds.SOPClassUID
    referenced.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    fill(referenced, "Referenced")
    referenced.AnatomicRegionSequence = Sequence([inner])
    ds.ReferencedImageSequence = Sequence([referenced])
    region = Dataset()
    region.CodeValue = "T-D3000"
    region.CodingSchemeDesignator = "SRT"
    region.CodeMeaning = "Chest"
    fill(region, "Region")
    ds.AnatomicRegionSequence = Sequence([region])
    return ds


def read(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data))


SAMPLES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "JPEG2000.dcm",
    "SC_rgb_small_odd.dcm",
    "examples_overlay.dcm",
    "rtdose_1frame.dcm",
]


@pytest.mark.parametrize("name", SAMPLES)
def test_survivors_and_every_person_name_are_gone_also_nested(name):
    original = dataset_bytes(seeded(sample_dataset(name)))
    cleaned = deidentify_dicom(original, pseudo_id="P0123456789A")
    ds = read(cleaned)
    keywords = [elem.keyword for elem in ds.iterall()]
    assert not set(SURVIVORS) & set(keywords)
    person_names = [(elem.keyword, str(elem.value)) for elem in ds.iterall() if elem.VR == "PN"]
    assert person_names == [("PatientName", "P0123456789A")]
    for value in SURVIVORS.values():
        assert value.encode() not in cleaned
    for tagged in ("Top", "Inner", "Referenced", "Region"):
        assert f"^{tagged}".encode() not in cleaned
    # The kept sequences are still there, cleaned, with their UIDs (Retain UIDs option).
    item = ds.ReferencedImageSequence[0]
    assert item.ReferencedSOPInstanceUID == "1.2.826.0.1.3680043.8.498.1"
    assert ds.AnatomicRegionSequence[0].CodeMeaning == "Chest"
    assert len(item.AnatomicRegionSequence) == 1


def test_the_file_records_the_profile_and_only_the_options_applied(ct_small):
    ds = read(deidentify_dicom(dataset_bytes(ct_small), pseudo_id="X1"))
    assert ds.PatientIdentityRemoved == "YES"
    assert any("Basic Profile" in m for m in ds.DeidentificationMethod)
    codes = {(item.CodeValue, item.CodingSchemeDesignator) for item in ds.DeidentificationMethodCodeSequence}
    # 113100 Basic profile, 113108 Retain Patient Characteristics, 113110 Retain UIDs; no Clean
    # Pixel Data (113101) nor Retain Longitudinal (113106/113107): neither is done.
    assert codes == {("113100", "DCM"), ("113108", "DCM"), ("113110", "DCM")}
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"


def test_the_table_is_the_maintained_one_and_complete():
    # Table E.1-1 has some 650 rows; the hand-written subset had 230.
    assert len(deid._TABLE) > 600
    assert deid._TABLE[tag_for_keyword("ReasonForVisit")] == "X"
    assert deid._TABLE[tag_for_keyword("StudyInstanceUID")] == "U"
    assert deid._TABLE[tag_for_keyword("ClinicalTrialSponsorName")] == "D"


def test_every_table_action_applies_at_the_top_level(ct_small):
    """Each X attribute of the table set on CT_small is gone, each Z is empty, each D a dummy;
    the retained characteristics and UIDs stay."""
    ds = ct_small
    skipped = {"PixelData", "DataSetTrailingPadding"}
    values = {"DA": "19700101", "TM": "120000", "DT": "19700101120000", "AS": "051Y", "CS": "SECRET"}
    seeded_keywords = []
    for tag, action in deid._TABLE.items():
        keyword = keyword_for_tag(tag)
        if not keyword or tag >> 16 in (0, 2) or keyword in skipped or action == "U":
            continue
        vr = dictionary_VR(tag).split(" or ")[0]
        if vr in ("LO", "SH", "LT", "ST", "UT", "UC"):
            setattr(ds, keyword, "secret")
        elif vr in values:
            setattr(ds, keyword, values[vr])
        else:
            continue
        seeded_keywords.append(keyword)
    ds.PatientSex, ds.PatientAge, ds.PatientWeight = "F", "051Y", 70
    out = read(deidentify_dicom(dataset_bytes(ds), pseudo_id="X1"))
    assert len(seeded_keywords) > 300
    for keyword in seeded_keywords:
        action = deid._TABLE[tag_for_keyword(keyword)]
        if keyword in deid.RETAINED_CHARACTERISTICS or keyword in ("PatientID", "PatientName"):
            continue
        value = out.get(keyword)
        if action == "X" or tag_for_keyword(keyword) >> 16 in (0x0010, 0x0012):
            assert keyword not in out, keyword
        elif action == "Z":
            assert value in ("", None), keyword
        elif action == "D":
            assert value not in (None, "") and "secret" not in str(value).lower(), keyword
    assert (out.PatientSex, out.PatientAge, out.PatientWeight) == ("F", "051Y", 70)
    assert out.StudyInstanceUID == ct_small.StudyInstanceUID
    assert b"secret" not in deidentify_dicom(dataset_bytes(ds), pseudo_id="X1").lower()
