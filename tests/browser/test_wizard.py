"""A coordinator builds a choose-5-of-10 study in Chromium with the wizard, assigns three readers, opens it."""

from __future__ import annotations

from collections import Counter

import pytest
from playwright.sync_api import expect

from core.roles import READER, user_set_roles
from readerstudy.builders import allocate
from readerstudy.models import Assignment, Candidate, Study
from retrieval.models import Label
from tests.browser.conftest import ARTIFACTS, login, wait_until
from tests.factories import csv_bytes, png_bytes, write_files
from tests.importing import run_import

pytestmark = pytest.mark.browser

N_IMAGES = 30  # 10 effusion, 20 normal


def wait_for_thumbnails(page) -> None:
    """Load every thumbnail (lazy ones too) and wait until each one decoded: the images are really served."""
    page.evaluate("document.querySelectorAll('img[loading=lazy]').forEach(i => { i.loading = 'eager'; })")
    wait_until(page, "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"wizard-{name}.png"), full_page=True)


@pytest.fixture
def collection(transactional_db, tmp_path):
    """A dataset imported the real way: PNGs plus a generic CSV label table."""
    files = {f"cxr_{n:02d}.png": png_bytes(n) for n in range(N_IMAGES)}
    labels = [["filename", "finding"]] + [
        [name, "effusion" if n < 10 else "normal"] for n, name in enumerate(sorted(files))
    ]
    source = write_files(tmp_path / "import", files)
    (tmp_path / "labels.csv").write_bytes(csv_bytes(labels))
    job = run_import(source=source, labels=tmp_path / "labels.csv", fmt="generic", name="Chest X-ray demo")
    assert job.n_imported == N_IMAGES and job.n_failed == 0, job.report
    return job.dataset


@pytest.fixture
def three_readers(transactional_db, django_user_model):
    users = []
    for name in ("ana", "ben", "chloe"):
        user = django_user_model.objects.create_user(name, password=f"pw-{name}")
        user_set_roles(user=user, roles=[READER])
        users.append(user)
    return users


def fill_wizard(page) -> None:
    """Sections 1-5 of the wizard, checking that fields follow the chosen builder and mode."""
    # 1. Basics
    page.fill("input[name=name]", "Effusion: choose 5 of 10")
    page.fill("textarea[name=instructions]", "Pick the 5 images most similar to the query.")
    # 2. Dataset and answer mode
    page.select_option("select[name=dataset]", label="Chest X-ray demo")
    page.select_option("select[name=mode]", "choose_k")
    page.fill("input[name=k]", "5")
    expect(page.locator("[data-field=rating_min]")).to_be_hidden()  # only for the rate mode
    # 3. Builder: the model-run fields show only for the builders that use them
    page.select_option("select[name=builder]", "knn_farthest")
    expect(page.locator("[data-field=run]")).to_be_visible()
    expect(page.locator("[data-field=class_label]")).to_be_hidden()
    page.select_option("select[name=builder]", "stratified_random")
    expect(page.locator("[data-field=run]")).to_be_hidden()
    expect(page.locator("#builder-help")).to_contain_text("Papers 001/003")
    page.fill("input[name=seed]", "2024")
    page.fill("input[name=n_queries]", "5")
    page.fill("input[name=catalogue_size]", "10")
    page.fill("input[name=class_label]", "finding")
    # 4. Readers and the ground-truth reader
    for name in ("ana", "ben", "chloe"):
        page.check(f"[data-field=readers] label:has-text('{name}') input")
    page.select_option("select[name=ground_truth_reader]", label="ana")
    # 5. A question about each image
    page.fill("input[name='q-0-text']", "Does this image show pleural effusion?")
    page.fill("input[name='q-0-choices']", "yes, no, unsure")
    expect(page.locator("#live-summary")).to_contain_text("5 cases · catalogues of 10 · readers choose 5 · 3 readers")


def check_stored_study() -> None:
    """The database holds the designed study: 5 stratified catalogues of 10, three seeded readers, open."""
    study = Study.objects.get()
    assert (study.status, study.mode, study.k, study.seed, study.builder) == (
        "open",
        "choose_k",
        5,
        2024,
        "stratified_random",
    )
    assert study.ground_truth_reader.username == "ana"
    assert study.builder_config["class_label"] == "finding" and study.builder_config["n"] == 10
    assignments = Assignment.objects.filter(study=study)
    assert sorted(a.reader.username for a in assignments) == ["ana", "ben", "chloe"]
    assert len({a.seed for a in assignments}) == 3
    assert list(study.questions.values_list("choices", flat=True)) == [["yes", "no", "unsure"]]
    finding = dict(Label.objects.filter(name="finding").values_list("image_id", "value_text"))
    queries = set(study.cases.values_list("query_id", flat=True))
    assert len(queries) == 5 and study.cases.count() == 5
    pool = Counter(finding[i] for i in finding if i not in queries)  # every image but the queries
    for case in study.cases.all():
        candidates = list(Candidate.objects.filter(case=case).order_by("position"))
        assert [c.position for c in candidates] == list(range(10))
        ids = {c.image_id for c in candidates}
        assert len(ids) == 10 and not ids & queries  # no query shows up as a candidate
        assert Counter(finding[i] for i in ids) == allocate(pool, 10, "proportional")  # stratified by class
        assert all(c.provenance[0]["stratum"] == finding[c.image_id] for c in candidates)


def test_coordinator_builds_and_opens_a_choose_5_of_10_study(
    page, live_server, transactional_db, coordinator, collection, three_readers
):
    login(page, "coordinator", "pw-coordinator")
    page.goto("/studies/")
    expect(page.locator(".empty")).to_contain_text("No reader study yet")
    page.click("text=New study")
    page.wait_for_url("**/studies/new/")
    fill_wizard(page)
    screenshot(page, "1-filled")

    # 6. Review: built and rolled back, nothing saved yet
    page.click("button[name=review]")
    expect(page.locator("#review-summary")).to_be_visible()
    expect(page.locator("[data-testid=review-cases]")).to_have_text("5")
    expect(page.locator("#review-summary .catalogue img")).to_have_count(10)
    expect(page.locator("#review-summary")).to_contain_text("class_label = finding")
    wait_for_thumbnails(page)
    screenshot(page, "2-review")
    assert not Study.objects.exists()

    page.click("button[name=create]")
    page.wait_for_url("**/studies/*/")
    expect(page.locator(".messages")).to_contain_text("created with 5 cases")
    expect(page.locator("[data-testid=study-status]")).to_have_text("Draft")
    expect(page.locator("#progress tbody tr")).to_have_count(3)
    page.click("button:has-text('Open study')")
    expect(page.locator("[data-testid=study-status]")).to_have_text("Open")
    expect(page.locator(".case")).to_have_count(5)
    wait_for_thumbnails(page)
    screenshot(page, "3-dashboard")
    check_stored_study()
