"""The coordinators' and researchers' image page shows the image in the viewer (issue 16, point 7): a 16×16
image is enlarged to the viewer's size, and window/level, zoom and invert work there as on the reading page."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from retrieval.models import Dataset
from tests.browser.conftest import login
from tests.reading.factories import image_make

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_password_hashing"),
]


@pytest.mark.parametrize("who", ["coordinator", "researcher"])
def test_a_tiny_image_is_shown_in_the_viewer(page, coordinator, researcher, live_server, who):
    dataset = Dataset.objects.create(name="tiny")
    image = image_make(dataset=dataset, name="cr16.png", seed=3, size=16)
    login(page, who, f"pw-{who}")
    page.goto(f"/images/{image.pk}/")
    viewer = page.locator("#image-viewer")
    expect(viewer).to_have_attribute("data-loaded", "1")
    canvas = viewer.locator("canvas").bounding_box()
    assert min(canvas["width"], canvas["height"]) >= 300  # not 16 px
    page.click("#image-viewer button.invert")
    expect(viewer).to_have_attribute("data-inverted", "1")
    box = canvas
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -300)
    expect(viewer).not_to_have_attribute("data-zoom", "1.00")
