"""read_dicom_header reads identity and geometry without the pixels."""

import pytest

from retrieval.imports.imaging.dicom import read_dicom_header
from retrieval.imports.imaging.errors import ImageDecodeError

from .samples import sample_bytes


def test_ct_small_header():
    header = read_dicom_header(sample_bytes("CT_small.dcm"))
    assert header.modality == "CT"
    assert (header.rows, header.columns, header.frames) == (128, 128, 1)
    assert header.sop_instance_uid == "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"
    assert header.series_uid == "1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322"
    assert header.study_uid == "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
    assert header.patient_id == "1CT1"
    assert header.instance_number == 1
    assert header.slice_position == pytest.approx(-75.699997)  # axial: z of IPP


def test_multiframe_count():
    assert read_dicom_header(sample_bytes("examples_ybr_color.dcm")).frames == 30


def test_header_of_a_structured_report_is_refused():
    with pytest.raises(ImageDecodeError, match="without an image"):
        read_dicom_header(sample_bytes("test-SR.dcm"))


def test_header_of_a_png_is_refused():
    with pytest.raises(ImageDecodeError, match="not a DICOM file"):
        read_dicom_header(b"\x89PNG\r\n\x1a\n" + bytes(100))


@pytest.mark.filterwarnings("ignore::UserWarning")  # the sample has invalid VRs
def test_invalid_number_of_frames_is_named():
    with pytest.raises(ImageDecodeError, match="Number of Frames '1A'"):
        read_dicom_header(sample_bytes("badVR.dcm"))
