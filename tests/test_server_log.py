"""The server log holds what an operator needs: one line for an ordinary 403/404, no line per progress poll."""

from __future__ import annotations

import logging

import pytest

from core.logfilters import QuietProgressPolls
from tests.conftest import client_for


@pytest.mark.parametrize("path, status", [("/datasets/", 403), ("/no-such-page/", 404)])
def test_an_ordinary_client_error_is_one_line_without_a_traceback(client, reader, caplog, path, status):
    with caplog.at_level(logging.WARNING, logger="django.request"):
        assert client_for(client, reader).get(path).status_code == status
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    assert record.exc_info is None and path in record.getMessage()


def _server_line(path: str, status: int) -> logging.LogRecord:
    """A record as runserver's request handler writes it (django.core.servers.basehttp)."""
    record = logging.LogRecord(
        "django.server",
        logging.INFO if status < 400 else logging.WARNING,
        __file__,
        1,
        '"%s" %s %s',
        (f"GET {path} HTTP/1.1", str(status), "120"),
        None,
    )
    record.status_code = status
    return record


def test_progress_polls_are_left_out_of_the_request_log():
    quiet = QuietProgressPolls()
    assert not quiet.filter(_server_line("/api/runs/3/?poll=1", 200))
    assert quiet.filter(_server_line("/api/runs/3/", 200))  # the same address asked by anything else
    assert quiet.filter(_server_line("/api/runs/3/?poll=1", 404))  # a failing poll is worth a line
    assert quiet.filter(_server_line("/runs/3/", 200))
