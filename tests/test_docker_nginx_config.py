"""docker/compose.yaml, docker/nginx.conf.template and the settings agree on the reader's image links.

Docker is not run here (the template itself runs in a real nginx in tests/reading/test_images_nginx.py);
what the containers would disagree on is checked instead: nginx is given every variable its template uses,
the same IMAGE_LINK_SECRET as the web service, the web service's link folder (DATA_DIR is /data in the
image) on the data volume it mounts, and serves the links at the address the pages use.
"""

from __future__ import annotations

import re

import yaml
from django.conf import settings

from benchmarks import nginx
from tests.conftest import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
TEMPLATE = (ROOT / "docker" / "nginx.conf.template").read_text()


def test_nginx_is_given_every_variable_of_its_template():
    used = set(re.findall(r"\$\{(CBIR_[A-Z_]+)\}", TEMPLATE))
    assert used == set(nginx.VARIABLES)  # the tests' and benchmarks' nginx renders the same set
    assert used <= set(COMPOSE["services"]["nginx"]["environment"])


def test_nginx_and_the_web_service_share_the_link_secret_folder_and_address():
    web, front = COMPOSE["services"]["web"], COMPOSE["services"]["nginx"]
    assert web["environment"]["IMAGE_LINK_SECRET"].startswith("${IMAGE_LINK_SECRET?")  # required, one source
    assert front["environment"]["CBIR_IMAGE_LINK_SECRET"] == "${IMAGE_LINK_SECRET-}"
    assert "DATA_DIR=/data" in (ROOT / "docker" / "Dockerfile").read_text()  # IMAGE_LINK_ROOT: DATA_DIR/reader-links
    assert front["environment"]["CBIR_IMAGE_LINK_ROOT"] == "/data/reader-links"
    assert "data:/data:ro" in front["volumes"]  # the links point into /data/media: the whole volume
    assert f"location {settings.IMAGE_LINK_URL} {{" in TEMPLATE
    assert "$cookie_" + settings.SESSION_COOKIE_NAME + " " in TEMPLATE  # the cookie the pages sign for
