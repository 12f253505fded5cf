"""Logging filters that keep the server log to what an operator needs (wired in settings.LOGGING)."""

from __future__ import annotations

import logging


class ClientErrorsWithoutTraceback(logging.Filter):
    """django.request: a 4xx (a 403 or 404 is an ordinary answer) is one line; Django attaches the
    PermissionDenied/Http404 traceback to it. Server errors keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if status is not None and status < 500:
            record.exc_info = None
            record.exc_text = None
        return True


class QuietProgressPolls(logging.Filter):
    """django.server (runserver's request lines): the progress bars' polls (`?poll=1`, static/js/progress.js)
    that succeed are left out, so a page open on a running job does not add a line per poll."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if status is not None and status < 400 and "poll=1" in record.getMessage():
            return record.levelno > logging.INFO or logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True
