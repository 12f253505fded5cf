"""The OpenAPI schema builds cleanly and the interactive docs are served locally."""

import pytest
from django.core.management import call_command


def test_schema_generates_without_warnings(tmp_path, capsys, db):
    out = tmp_path / "schema.yml"
    call_command("spectacular", "--file", str(out), "--fail-on-warn", "--validate")
    text = out.read_text()
    assert "/api/datasets/" in text and "/api/imports/{id}/" in text


@pytest.mark.django_db
def test_docs_page_serves_without_cdn(client, researcher):
    client.force_login(researcher)
    html = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in html and "cdn.jsdelivr" not in html
