"""Logging of Scrapy mode: no credentials in any log line.

The spider moves ``user:password@`` of an input URL into an ``Authorization`` header, so Scrapy's own log lines
(``Retrying <GET ...>``, ``Gave up retrying ...``, redirects) do not see them; but a server may redirect to a URL with
credentials, and a third-party message may quote one. :func:`install_url_redaction` wraps the log record factory of
the process so that every record's message and traceback text go through the same redaction as
:func:`enrich.urls.redact_url`, whoever logs it (Scrapy, Twisted, our code).
"""

from __future__ import annotations

import logging
import re
from typing import Any

__all__ = ["install_url_redaction", "redact_text"]

_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@?#<>\"']+@")
"""``scheme://userinfo@``: the ``userinfo`` part is dropped, as :func:`enrich.urls.redact_url` drops it."""

_installed: set[int] = set()


def redact_text(text: str) -> str:
    """``text`` with the ``user:password@`` part of every URL in it removed."""
    return _CREDENTIALS.sub(r"\1", text) if "@" in text else text


def install_url_redaction() -> None:
    """Make every log record of the process redact URL credentials in its message and traceback; idempotent."""
    current = logging.getLogRecordFactory()
    if id(current) in _installed:
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: leave it to the handler, which reports it
            return record
        if "@" in message:
            record.msg, record.args = redact_text(message), None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            if "@" in text:
                record.exc_text = redact_text(text)
        return record

    _installed.add(id(factory))
    logging.setLogRecordFactory(factory)
