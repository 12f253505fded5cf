"""Windowing in the image's own units in Chromium (issue 16, point 1): a CT sample imported as users import
it is shown at the rendition's window, then re-windowed to the lung preset in Hounsfield units on the
reading page (query and compare view, linked) and on the image page; PNG images keep the 8-bit viewer."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from readerstudy.models import AnswerMode, Assignment, Candidate, Case, Study, StudyStatus
from retrieval.models import Dataset, Image
from tests.browser.conftest import READING_VIEWPORTS, login, open_reader_page, shot
from tests.factories import dicom_with, write_files
from tests.importing import run_import

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_password_hashing"),
]


def _ct_images(tmp_path, n=4) -> list[Image]:
    files = {
        f"ct{i}.dcm": dicom_with(
            "CT_small.dcm",
            SOPInstanceUID=f"1.2.826.0.1.3680043.8.498.{i + 1}",
            SeriesInstanceUID=f"1.2.826.0.1.3680043.8.499.{i + 1}",
            RescaleIntercept=-1024 - 8 * i,  # HU as in the sample, each image shifted a little
        )
        for i in range(n)
    }
    job = run_import(source=write_files(tmp_path / "ct", files))
    assert job.n_imported == n, job.report
    images = list(Image.objects.filter(dataset=job.dataset).order_by("pk"))
    assert all(im.values and im.display["units"] == "HU" for im in images)
    return images


def _lung(page, viewer: str) -> None:
    select = page.locator(f"{viewer} select.preset")
    label = next(o for o in select.locator("option").all_text_contents() if o.startswith("Lung"))
    select.select_option(label=label)


@pytest.mark.parametrize("viewport", READING_VIEWPORTS)
def test_reading_page_windows_a_ct_in_hounsfield_units(page, reader, live_server, tmp_path, viewport):
    page.set_viewport_size(viewport)
    images = _ct_images(tmp_path)
    study = Study.objects.create(
        name="CT", dataset=images[0].dataset, mode=AnswerMode.CHOOSE_K, k=1, status=StudyStatus.OPEN, seed=3
    )
    case = Case.objects.create(study=study, position=0, query=images[0])
    for j, image in enumerate(images[1:]):
        Candidate.objects.create(case=case, image=image, position=j, provenance=[])
    Assignment.objects.create(study=study, reader=reader, seed=11)
    login(page, "reader", "pw-reader")
    open_reader_page(page, f"/read/{study.pk}/case/1/")
    query = page.locator("#query-viewer")
    expect(query).to_have_attribute("data-values-loaded", "1")
    expect(query).to_have_attribute("data-units", "HU")
    r = images[0].display["rendition"]
    expect(query).to_have_attribute("data-window", f"{round(r['center'])}/{round(r['width'])}")  # = the rendition
    expect(page.locator("#query-viewer select.preset")).to_be_in_viewport()
    _lung(page, "#query-viewer")
    expect(query).to_have_attribute("data-window", "-600/1500")
    expect(query.locator(".readout")).to_contain_text("W 1500 · L -600 HU")
    expect(query.locator(".readout")).to_be_in_viewport()
    # Linked: the candidates get the same HU window on their own rendition's grey levels.
    root = page.locator("#reader")
    expect(root).not_to_have_attribute("data-tiles-window", "128/256")
    # The compare view opens at the same window, in HU, on the candidate's own values.
    page.keyboard.press("e")
    candidate = page.locator("#enlarged-candidate")
    expect(candidate).to_have_attribute("data-values-loaded", "1")
    expect(candidate).to_have_attribute("data-window", "-600/1500")
    expect(page.locator("#enlarged-query")).to_have_attribute("data-window", "-600/1500")
    expect(candidate.locator(".readout")).to_contain_text("W 1500 · L -600 HU")
    expect(candidate.locator(".readout")).to_be_in_viewport()
    shot(page, f"ct_lung_compare_{viewport['width']}x{viewport['height']}")


def test_image_page_windows_a_ct_in_hounsfield_units(page, coordinator, live_server, tmp_path):
    image = _ct_images(tmp_path, n=1)[0]
    login(page, "coordinator", "pw-coordinator")
    page.goto(f"/images/{image.pk}/")
    viewer = page.locator("#image-viewer")
    expect(viewer).to_have_attribute("data-values-loaded", "1")
    options = viewer.locator("select.preset option").all_text_contents()
    assert [o.split(" (")[0] for o in options if not o.startswith(("File", "As imported", "Full", "Custom"))] == [
        "Lung",
        "Mediastinum",
        "Bone",
        "Brain",
    ]
    _lung(page, "#image-viewer")
    expect(viewer.locator(".readout")).to_contain_text("HU")
    expect(viewer).to_have_attribute("data-window", "-600/1500")
    shot(page, "ct_image_page_lung")


def test_png_images_keep_the_grey_level_viewer(page, coordinator, live_server, tmp_path):
    from tests.factories import png_bytes

    job = run_import(source=write_files(tmp_path / "p", {"a.png": png_bytes(2)}))
    image = Image.objects.get(dataset=job.dataset)
    login(page, "coordinator", "pw-coordinator")
    page.goto(f"/images/{image.pk}/")
    viewer = page.locator("#image-viewer")
    expect(viewer).to_have_attribute("data-loaded", "1")
    expect(viewer).to_have_attribute("data-window", "128/256")
    assert viewer.get_attribute("data-values-loaded") is None
    assert Dataset.objects.count() == 1
