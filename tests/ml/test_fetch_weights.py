"""manage.py fetch_weights against a local hub-like HTTP server (no internet): the weights land in the Hugging Face
cache and timm then builds the model from them offline; a server that may not (or cannot) download says which file
to copy where."""

from __future__ import annotations

import hashlib
import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
import torch
from django.core.management import call_command
from django.core.management.base import CommandError
from huggingface_hub import constants as hf_constants
from huggingface_hub.utils import _http as hf_http

from retrieval.ml.backbones import create_backbone, save_weights
from retrieval.ml.fetch import WeightsFetchError, fetch_weights
from tests.orthanc import free_port

pytestmark = pytest.mark.ml

REPO = "timm/test_vit.r160_in1k"  # timm's pretrained config of test_vit
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Hub(ThreadingHTTPServer):
    """HEAD/GET /{org}/{repo}/resolve/{revision}/{filename}: what hf_hub_download asks a hub for."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.requests = files, []
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: Hub

    def _answer(self, body: bool) -> None:
        self.server.requests.append((self.command, self.path))
        repo, sep, rest = self.path.partition("/resolve/")
        _revision, _, filename = rest.partition("/")
        data = self.server.files.get(f"{repo.lstrip('/')}/{filename}") if sep else None
        if data is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_HEAD(self):  # noqa: N802 (http.server's names)
        self._answer(body=False)

    def do_GET(self):  # noqa: N802
        self._answer(body=True)

    def log_message(self, *args):
        pass


@pytest.fixture
def hub(tmp_path, empty_caches, monkeypatch, settings):
    """A hub serving a randomly initialised test_vit's safetensors; HF_ENDPOINT points to it; downloads allowed."""
    source = create_backbone("test_vit", weights="random", num_classes=1000)
    weights = save_weights(source, tmp_path / "model.safetensors").read_bytes()
    server = Hub({f"{REPO}/model.safetensors": weights})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    settings.WEIGHTS_DOWNLOAD = True
    server.model = source
    server.settings_off = lambda: setattr(settings, "WEIGHTS_DOWNLOAD", False)
    yield server
    server.shutdown()
    server.server_close()


def test_fetch_weights_fills_the_cache_and_timm_builds_the_model_offline(hub, empty_caches):
    out, err = io.StringIO(), io.StringIO()
    offline = hf_constants.HF_HUB_OFFLINE
    call_command("fetch_weights", "test_vit", stdout=out, stderr=err)
    assert hf_constants.HF_HUB_OFFLINE == offline  # lifted for the fetch only
    path = empty_caches / "models--timm--test_vit.r160_in1k" / "snapshots" / COMMIT / "model.safetensors"
    assert f"test_vit: {path}" in out.getvalue()
    assert ("GET", f"/{REPO}/resolve/main/model.safetensors") in hub.requests
    # The runs' offline path finds it: pretrained weights from the cache, equal to what the hub served.
    hub.requests.clear()
    model = create_backbone("test_vit", weights="pretrained", num_classes=1000)
    state, served = model.state_dict(), hub.model.state_dict()
    assert all(torch.equal(state[k], served[k]) for k in served)
    assert hub.requests == []  # no request: runs never download
    # A second fetch finds the cached file and asks nothing.
    call_command("fetch_weights", "test_vit", stdout=io.StringIO())
    assert hub.requests == []


def test_a_server_that_may_not_download_says_which_file_to_copy_where(hub, empty_caches, settings):
    settings.WEIGHTS_DOWNLOAD = False
    with pytest.raises(CommandError) as info:
        call_command("fetch_weights", "test_vit")
    message = str(info.value)
    assert "WEIGHTS_DOWNLOAD is off" in message
    assert f"/{REPO}/resolve/main/model.safetensors" in message
    assert str(empty_caches / "models--timm--test_vit.r160_in1k") in message
    assert hub.requests == []  # nothing was asked of the hub


def test_an_unreachable_hub_says_which_file_to_copy_where(empty_caches, monkeypatch):
    monkeypatch.setattr(hf_http, "time", SimpleNamespace(sleep=lambda seconds: None))  # its retries, without waits
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(WeightsFetchError) as info:
        fetch_weights("test_vit", allowed=True)
    message = str(info.value)
    assert "cannot be reached" in message and "model.safetensors" in message
    assert str(empty_caches / "models--timm--test_vit.r160_in1k") in message


def test_a_file_the_hub_lacks_and_an_unknown_model(hub, empty_caches):
    with pytest.raises(WeightsFetchError, match="has none of config.json"):
        fetch_weights("hf-hub:timm/test_vit.r160_in1k", allowed=True)
    with pytest.raises(WeightsFetchError, match="timm has no model called 'no_such_net'"):
        fetch_weights("no_such_net", allowed=True)


@pytest.mark.django_db
def test_the_run_forms_button_fetches_on_a_worker_with_a_progress_bar(hub, empty_caches, client, coordinator, reader):
    from core.tasks import JobFailed
    from retrieval.models import WeightsFetch
    from retrieval.tasks import weights_fetch

    client.force_login(reader)
    assert client.post("/weights/fetch/", {"model": "test_vit"}).status_code == 403
    client.force_login(coordinator)
    response = client.post("/weights/fetch/", {"model": "test_vit"})
    job = WeightsFetch.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/weights/{job.pk}/"
    weights_fetch(fetch_id=job.pk)  # as the worker runs it
    job.refresh_from_db()
    size = len(hub.files[f"{REPO}/model.safetensors"])
    assert job.status == "succeeded" and (job.progress_done, job.progress_total) == (size, size)
    assert job.paths == [
        str(empty_caches / "models--timm--test_vit.r160_in1k" / "snapshots" / COMMIT / "model.safetensors")
    ]
    assert client.get(f"/weights/{job.pk}/progress/").json()["percent"] == 100
    assert job.paths[0] in client.get(f"/weights/{job.pk}/").content.decode()

    # Offline: the job fails with the file to copy and where, shown on its page.
    hub.settings_off()
    other = WeightsFetch.objects.create(model_name="test_efficientnet")
    with pytest.raises(JobFailed):
        weights_fetch(fetch_id=other.pk)
    other.refresh_from_db()
    assert other.status == "failed" and "WEIGHTS_DOWNLOAD is off" in other.error
    assert "models--timm--test_efficientnet.r160_in1k" in client.get(f"/weights/{other.pk}/").content.decode()
