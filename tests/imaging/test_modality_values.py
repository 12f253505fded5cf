"""Modality values kept for the viewer (issue 16, point 1): a 16-bit PNG of the rescaled values (HU for CT)
beside the rendition, with offset/scale, units, the file's windows and the rendition's window, so that the
viewer's default view equals the rendition and a CT can be re-windowed in Hounsfield units."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from django.core.files.storage import default_storage
from PIL import Image as PILImage
from pydicom.pixels import apply_modality_lut

from retrieval.imports.imaging.decode import decode_image
from retrieval.imports.imaging.values import make_values_png
from retrieval.imports.imaging.windowing import window_linear_exact
from retrieval.models import Image
from tests.factories import dicom_sample, dicom_with, write_files
from tests.importing import run_import


def _stored_values(image) -> np.ndarray:
    with default_storage.open(image.values.name, "rb") as fh:
        png = PILImage.open(io.BytesIO(fh.read()))
        assert png.mode in ("I;16", "I") and png.format == "PNG"
        stored = np.asarray(png, dtype=np.float64)
    return stored * image.display["scale"] + image.display["offset"]


@pytest.mark.django_db
def test_ct_import_keeps_hounsfield_units_and_the_rendition_window(tmp_path):
    run_import(source=write_files(tmp_path / "s", {"ct.dcm": dicom_sample("CT_small.dcm")}))
    image = Image.objects.get()
    ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    hu = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    d = image.display
    assert (d["units"], d["modality"], d["monochrome1"]) == ("HU", "CT", False)
    assert (d["min"], d["max"]) == (hu.min(), hu.max())
    assert d["scale"] == 1.0  # whole HU that fit in 16 bits are stored exactly
    np.testing.assert_array_equal(_stored_values(image), hu)  # 128×128: no resize, every value exact
    # The rendition is the LINEAR_EXACT window `rendition` of these values (the viewer's default view).
    with default_storage.open(image.rendition.name, "rb") as fh:
        rendition = np.asarray(PILImage.open(io.BytesIO(fh.read())).convert("L"), dtype=int)
    r = d["rendition"]
    expected = window_linear_exact(hu.astype(np.float32), r["center"], r["width"]).astype(int)
    assert np.abs(rendition - expected).max() <= 1
    if "WindowCenter" in ds:
        assert d["windows"][0]["center"] == float(np.atleast_1d(ds.WindowCenter)[0])


@pytest.mark.django_db
def test_png_and_colour_images_have_no_values(tmp_path):
    from tests.factories import png_bytes

    run_import(source=write_files(tmp_path / "s", {"a.png": png_bytes(1)}))
    image = Image.objects.get()
    assert not image.values and image.display == {}


def test_monochrome1_and_file_windows_are_recorded():
    data = dicom_with(
        "CT_small.dcm",
        PhotometricInterpretation="MONOCHROME1",
        WindowCenter=["40", "-600"],
        WindowWidth=["400", "1500"],
        WindowCenterWidthExplanation=["SOFT TISSUE", "LUNG"],
    )
    decoded = decode_image(data)
    d = decoded.values_display
    assert d["monochrome1"] is True
    assert [(w["center"], w["width"], w["name"]) for w in d["windows"]] == [
        (40.0, 400.0, "SOFT TISSUE"),
        (-600.0, 1500.0, "LUNG"),
    ]
    # LINEAR (the default function): the rendition window as LINEAR_EXACT is centre − ½, width − 1.
    assert d["rendition"] == {"center": 39.5, "width": 399.0}


def test_sigmoid_windows_keep_the_rendition_alone():
    decoded = decode_image(dicom_with("CT_small.dcm", WindowCenter="40", WindowWidth="400", VOILUTFunction="SIGMOID"))
    assert decoded.values is None and decoded.values_display is None


def test_values_that_are_not_whole_or_too_wide_are_scaled():
    values = np.linspace(-1.25, 80000.5, 64 * 64, dtype=np.float32).reshape(64, 64)
    display = {"min": float(values.min()), "max": float(values.max())}
    data, out = make_values_png(values, display, max_side=1024)
    stored = np.asarray(PILImage.open(io.BytesIO(data)), dtype=np.float64)
    back = stored * out["scale"] + out["offset"]
    assert out["scale"] == pytest.approx((80000.5 + 1.25) / 65535)
    assert np.abs(back - values).max() <= out["scale"] / 2 + 1e-6


def test_large_images_are_stored_at_the_rendition_size():
    values = np.tile(np.arange(2048, dtype=np.float32), (1024, 1)) - 1024
    display = {"min": -1024.0, "max": 1023.0}
    data, out = make_values_png(values, display, max_side=1024)
    png = PILImage.open(io.BytesIO(data))
    assert png.size == (1024, 512)
    back = np.asarray(png, dtype=np.float64) * out["scale"] + out["offset"]
    assert back.min() >= -1024 and back.max() <= 1023  # Lanczos overshoot clipped to the values' range
    assert back[0, 512] == pytest.approx(0, abs=2)


@pytest.mark.django_db
def test_image_values_command_adds_them_to_images_imported_before(tmp_path):
    from django.core.management import call_command

    run_import(source=write_files(tmp_path / "s", {"ct.dcm": dicom_sample("CT_small.dcm")}))
    image = Image.objects.get()
    kept, display = _stored_values(image), image.display
    default_storage.delete(image.values.name)
    Image.objects.filter(pk=image.pk).update(values="", display={})  # as an image imported before
    out = io.StringIO()
    call_command("image_values", stdout=out)
    assert "added to 1 image(s)" in out.getvalue()
    image.refresh_from_db()
    assert image.display == display
    np.testing.assert_array_equal(_stored_values(image), kept)
    call_command("image_values", stdout=out)  # again: nothing to do
    assert "added to 0 image(s)" in out.getvalue()


@pytest.mark.django_db
def test_image_values_command_decodes_an_image_without_values_once(tmp_path):
    from django.core.management import call_command

    data = dicom_with("CT_small.dcm", WindowCenter="40", WindowWidth="400", VOILUTFunction="SIGMOID")
    run_import(source=write_files(tmp_path / "s", {"ct.dcm": data}))
    image = Image.objects.get()
    assert not image.values
    out = io.StringIO()
    call_command("image_values", stdout=out)
    assert "1 have none to keep" in out.getvalue()
    call_command("image_values", stdout=out)  # marked: not decoded again (the demo runs this at every start)
    assert out.getvalue().count("0 have none to keep") == 1
    image.refresh_from_db()
    assert not image.values and image.display == {"values": "none"}
