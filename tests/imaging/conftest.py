import pydicom
import pytest

from .samples import sample_dataset


@pytest.fixture
def ct_small() -> pydicom.Dataset:
    """CT_small.dcm: 128×128 CT, Rescale -1024, Pixel Padding -2000, no VOI window."""
    return sample_dataset("CT_small.dcm")
