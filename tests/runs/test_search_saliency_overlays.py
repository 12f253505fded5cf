"""The search page of a classifier run lays its stored saliency overlays over the thumbnails and the query
(a toggle, like the reader's), in valid HTML: no link inside the result's link."""

from html.parser import HTMLParser

import numpy as np
import pytest

from retrieval.models import Image, ModelRun
from retrieval.runs import ranking
from retrieval.runs.splits import split_create
from tests.factories import png_bytes, write_files
from tests.importing import run_import


@pytest.fixture
def classifier_run(db, tmp_path, settings):
    """A finished classifier run with embeddings, an index and overlays of some images (written here, no torch)."""
    from retrieval.ml.index import VectorIndex

    job = run_import(source=write_files(tmp_path / "s", {f"{i}.png": png_bytes(i) for i in range(10)}), name="web")
    ids = np.array(sorted(Image.objects.values_list("pk", flat=True)), dtype=np.int64)
    vectors = np.random.default_rng(1).normal(size=(len(ids), 8)).astype(np.float32)
    run = ModelRun.objects.create(
        dataset=job.dataset,
        name="cnn",
        method="densenet_cnn",
        status="succeeded",
        config={"metric": "l2", "saliency": "grad_cam"},
        n_embedded=len(ids),
        split=split_create(dataset=job.dataset),
    )
    folder = ranking.run_artefact_dir(run)
    (folder / "index").mkdir(parents=True)
    np.save(folder / "embeddings.npy", vectors)
    np.save(folder / "image_ids.npy", ids)
    VectorIndex.build(vectors, ids, metric="l2").save(folder / "index")
    ModelRun.objects.filter(pk=run.pk).update(artefact_dir=str(folder))
    (folder / ranking.SALIENCY_DIR).mkdir()
    with_overlay = [int(i) for i in ids[::2]]  # every other image, the query ids[0] included
    for image_id in with_overlay:
        ranking.saliency_path(run, image_id).write_bytes(png_bytes(image_id))
    run.ids, run.with_overlay = ids, with_overlay
    return run


class _Links(HTMLParser):
    """Counts links opened inside other links, and collects every img's attributes."""

    def __init__(self):
        super().__init__()
        self.depth, self.nested, self.images = 0, 0, []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.nested += self.depth > 0
            self.depth += 1
        if tag == "img":
            self.images.append(dict(attrs))

    def handle_endtag(self, tag):
        if tag == "a":
            self.depth -= 1


def test_search_page_lays_stored_overlays_over_results_and_query(client, classifier_run, researcher):
    client.force_login(researcher)
    run, query = classifier_run, int(classifier_run.ids[0])
    html = client.get(f"/runs/{run.pk}/search/?image={query}&k=9").content.decode()
    parsed = _Links()
    parsed.feed(html)
    assert parsed.nested == 0 and parsed.depth == 0
    overlays = {img["data-src"] for img in parsed.images if "saliency-overlay" in img.get("class", "")}
    assert overlays == {f"/runs/{run.pk}/saliency/{i}.png" for i in run.with_overlay}  # 4 results + the query
    assert all("hidden" in img for img in parsed.images if "saliency-overlay" in img.get("class", ""))
    assert 'id="saliency-btn"' in html and "js/saliency-toggle.js" in html and "css/reader.css" in html
    for image_id in run.with_overlay:
        assert client.get(f"/runs/{run.pk}/saliency/{image_id}.png").status_code == 200


def test_search_page_without_overlays_has_none(client, classifier_run, researcher):
    client.force_login(researcher)
    query = int(classifier_run.ids[1])
    for image_id in classifier_run.with_overlay:
        ranking.saliency_path(classifier_run, image_id).unlink()
    html = client.get(f"/runs/{classifier_run.pk}/search/?image={query}&k=5").content.decode()
    assert "saliency-overlay" not in html and html.count("distance") == 5
