"""URLs in: reading inputs lazily, validating, normalizing, and hiding credentials.

Inputs are streamed line by line, so a file of millions of URLs is never held in memory. Every input line that
holds something becomes exactly one :class:`InputURL`, valid or carrying the reason it is not; blank lines and
comments are skipped and counted by the caller.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TextIO
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from w3lib.url import canonicalize_url

from enrich.errors import ConfigError, EnrichError, InvalidURLError
from enrich.record import repair_text

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = [
    "MAX_LINE_CHARS",
    "MAX_URL_LENGTH",
    "SUPPORTED_SCHEMES",
    "InputFormat",
    "InputProblem",
    "InputURL",
    "iter_input_lines",
    "json_or_plain_lines",
    "normalize_url",
    "read_urls",
    "redact_url",
    "validate_url",
]

SUPPORTED_SCHEMES = ("http", "https")
MAX_URL_LENGTH = 8192
"""Longer lines are not URLs any server accepts; they get an error record (cut to this length) instead."""

MAX_LINE_CHARS = 1 << 20
"""An input line longer than this (1 MiB) is reported, not read whole: a file without newlines must not fill memory."""

TRACKING_PARAMS = frozenset(
    {
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "utm_term",
        "utm_content",
        "utm_id",
        "gclid",
        "fbclid",
        "dclid",
        "msclkid",
        "mc_cid",
        "mc_eid",
        "_ga",
        "yclid",
        "igshid",
    }
)

InputFormat = Literal["auto", "text", "csv", "jsonl"]


def redact_url(url: str) -> str:
    """The URL with any ``user:password@`` removed, for logs and records."""
    if "@" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("@", 1)[-1]
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=host))


def validate_url(url: str) -> str:
    """Check that a URL can be fetched and return it without credentials.

    Raises:
        InvalidURLError: empty, too long, unsupported scheme, no host, bad port or bad IPv6 literal.
    """
    url = url.strip()
    safe = redact_url(url)
    if not url:
        raise InvalidURLError("empty URL", url=url)
    if len(url) > MAX_URL_LENGTH:
        raise InvalidURLError(f"URL longer than {MAX_URL_LENGTH} characters", url=safe[:MAX_URL_LENGTH])
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise InvalidURLError("URL contains whitespace or control characters", url=safe)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidURLError(f"malformed URL: {exc}", url=safe) from exc
    scheme = parts.scheme.lower()
    if not scheme:
        raise InvalidURLError("URL has no scheme (expected http:// or https://)", url=safe)
    if scheme not in SUPPORTED_SCHEMES:
        raise InvalidURLError(f"unsupported scheme {scheme!r} (supported: http, https)", url=safe)
    if not parts.hostname:
        raise InvalidURLError("URL has no host", url=safe)
    if port == 0:
        raise InvalidURLError("URL has port 0", url=safe)
    try:
        parts.hostname.encode("idna")
    except UnicodeError as exc:
        raise InvalidURLError(f"invalid host name: {exc}", url=safe) from exc
    return safe


def normalize_url(url: str, *, strip_tracking: bool = True) -> str:
    """A canonical form for de-duplication that means what the URL meant.

    w3lib's :func:`~w3lib.url.canonicalize_url` does the work: lower-case scheme and host (IDN hosts in their
    IDNA form), ``/`` for an empty path, ``.``/``..`` segments resolved, percent-escapes normalized without
    changing meaning (``%7E`` becomes ``~`` and ``%2f`` becomes ``%2F``, but ``%2F`` stays ``%2F`` and ``%25``
    stays ``%25``; an ``&`` escaped in a query value stays escaped), query arguments sorted (blank ones kept,
    ``?a`` written ``?a=``), fragment dropped. On top of it: credentials removed (:func:`validate_url`), a default
    port and a trailing dot in the host dropped, and tracking parameters (``utm_*``, ``gclid``...) removed when
    ``strip_tracking``.

    Raises:
        InvalidURLError: the URL cannot be fetched (see :func:`validate_url`).
    """
    safe = validate_url(url)
    if strip_tracking:
        safe = _without_tracking(safe)
    try:
        parts = urlsplit(canonicalize_url(safe))
        host, port = (parts.hostname or "").rstrip("."), parts.port
    except (ValueError, UnicodeError) as exc:
        raise InvalidURLError(f"malformed URL: {exc}", url=safe) from exc
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None or (parts.scheme, port) in _DEFAULT_PORTS else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


_DEFAULT_PORTS = frozenset({("http", 80), ("https", 443)})


def _without_tracking(url: str) -> str:
    """``url`` without the query arguments named in :data:`TRACKING_PARAMS` (any case); the other arguments are
    kept byte for byte, so their escapes mean what they meant."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    args = parts.query.split("&")
    kept = [arg for arg in args if unquote_plus(arg.split("=", 1)[0]).lower() not in TRACKING_PARAMS]
    return url if len(kept) == len(args) else urlunsplit(parts._replace(query="&".join(kept)))


@dataclass(slots=True, frozen=True)
class InputURL:
    """One input entry: the URL as given (credentials removed), and why it cannot be fetched if it cannot.

    ``fetch_url`` keeps credentials (for the request only); ``url`` is what logs and records show.
    """

    url: str
    line: int
    error: EnrichError | None = None
    """Why it is not fetched: an :class:`InvalidURLError` from the input, or a worker's dead letter."""
    fetch_url: str | None = None
    priority: int = 0
    """Higher goes first in the frontier (within a site and across sites); from a CSV column or JSONL field
    named :data:`PRIORITY_FIELD`."""

    @property
    def valid(self) -> bool:
        return self.error is None


def _guess_format(path: Path | None) -> InputFormat:
    suffix = path.suffix.lower() if path else ""
    return {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(suffix, "text")  # type: ignore[return-value]


def _open(source: Path | str | TextIO) -> tuple[TextIO, Path | None, bool]:
    if not isinstance(source, (str, Path)):
        return source, None, False
    if str(source) == "-":
        return sys.stdin, None, False
    path = Path(source)
    try:
        return path.open(encoding="utf-8", errors="replace", newline=""), path, True
    except OSError as exc:
        raise ConfigError(f"cannot read input {path}: {exc.strerror or exc}") from exc


def iter_input_lines(
    source: Path | str | TextIO, *, fmt: InputFormat = "auto", column: str = "url", field: str = "url"
) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, raw value)`` for every non-blank, non-comment entry, lazily.

    ``fmt`` ``auto`` picks by file suffix (``.csv``, ``.jsonl``; text otherwise; stdin is text).
    CSV reads the column named ``column``; JSONL reads the key ``field`` (a line that is a bare JSON string
    is taken as the URL).
    """
    stream, path, owned = _open(source)
    fmt = _guess_format(path) if fmt == "auto" else fmt
    try:
        if fmt == "csv":
            reader = csv.DictReader(stream)
            if reader.fieldnames is None:
                return
            if column not in reader.fieldnames:
                raise ConfigError(
                    f"CSV input has no column {column!r} (columns: {', '.join(reader.fieldnames)}); "
                    "choose one with --input-column"
                )
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:  # e.g. a field over csv.field_size_limit(): one bad row, not a crash
                    yield reader.line_num, InputProblem(f"line {reader.line_num} is not valid CSV: {exc}")
                    continue
                value = (row.get(column) or "").strip()
                if value:
                    yield reader.line_num, _with_priority(value, row.get(PRIORITY_FIELD), reader.line_num)
        else:
            for number, line in enumerate(_bounded_lines(stream), 1):
                if isinstance(line, InputProblem):
                    yield number, InputProblem(f"line {number} {line}")
                    continue
                value = line.strip()
                if not value or value.startswith("#"):
                    continue
                if fmt == "jsonl":
                    value = _jsonl_value(value, field, number)
                yield number, value
    finally:
        if owned:
            stream.close()


PRIORITY_FIELD = "priority"
"""The CSV column or JSONL field holding an entry's priority (an integer; higher goes first; default 0)."""


class PrioritizedValue(str):
    """A URL value carrying the priority its input line gave it."""

    __slots__ = ("priority",)
    priority: int


def _with_priority(value: str, raw: object, number: int) -> str:
    """``value`` with ``raw`` as its priority when ``raw`` is an integer (``"3"``, ``3``); a bad one is an entry
    problem, so the user learns which line to fix."""
    if raw is None or raw == "":
        return value
    try:
        priority = int(raw) if isinstance(raw, (int, str)) and not isinstance(raw, bool) else None
    except (TypeError, ValueError):
        priority = None
    if priority is None:
        return InputProblem(f"line {number} has a {PRIORITY_FIELD} that is not an integer: {str(raw)[:50]!r}")
    out = PrioritizedValue(value)
    out.priority = priority
    return out


def json_or_plain_lines(values: Iterable[str]) -> Iterator[tuple[int, str]]:
    """Numbered entries from values that are each a URL or a JSON object with ``url`` (and ``priority``), as
    scrapy-redis producers push them onto ``<spider>:start_urls``; for :func:`read_urls`."""
    for number, value in enumerate(values, 1):
        text = value.strip()
        if not text.startswith("{"):
            yield number, text
            continue
        try:
            obj = json.loads(text)
        except ValueError:
            yield number, InputProblem(f"entry {number} is not valid JSON: {text[:80]!r}")
            continue
        url = obj.get("url") if isinstance(obj, dict) else None
        if not isinstance(url, str):
            yield number, InputProblem(f'entry {number} has no "url" string: {text[:80]!r}')
            continue
        yield number, _with_priority(url, obj.get(PRIORITY_FIELD), number)


class InputProblem(str):
    """An entry that holds no URL at all (a JSONL line that is not JSON, or lacks the field): the string is the
    problem, which :func:`read_urls` turns into the entry's error instead of checking it as a URL."""

    __slots__ = ()


def _bounded_lines(stream: TextIO) -> Iterator[str]:
    """Lines of a stream, never holding more than :data:`MAX_LINE_CHARS` of one line in memory: a longer line
    is skipped in chunks and reported as an :class:`InputProblem`."""
    while True:
        line = stream.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        if len(line) > MAX_LINE_CHARS and not line.endswith("\n"):
            while True:  # drain the rest of the line
                chunk = stream.readline(1 << 20)
                if not chunk or chunk.endswith("\n"):
                    break
            yield InputProblem(f"is longer than {MAX_LINE_CHARS} characters")
            continue
        yield line


def _jsonl_value(line: str, field: str, number: int) -> str:
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return InputProblem(f"line {number} is not valid JSON")
    if isinstance(data, str):
        return data
    if isinstance(data, dict) and isinstance(data.get(field), str):
        return _with_priority(str(data[field]), data.get(PRIORITY_FIELD), number)
    return InputProblem(f"line {number} has no string field {field!r}")


def read_urls(lines: Iterable[tuple[int, str]]) -> Iterator[InputURL]:
    """Validate entries lazily; every entry yields one :class:`InputURL`, valid or not."""
    for number, raw in lines:
        if isinstance(raw, InputProblem):
            yield InputURL(url=f"(input line {number})", line=number, error=InvalidURLError(str(raw)))
            continue
        text = repair_text(raw)  # a lone surrogate (JSON "\\ud800") becomes U+FFFD: the URL still gets its record
        try:
            safe = validate_url(text)
        except InvalidURLError as exc:
            yield InputURL(url=exc.url or redact_url(text)[:MAX_URL_LENGTH] or "(empty)", line=number, error=exc)
        else:
            yield InputURL(url=safe, line=number, fetch_url=text.strip(), priority=getattr(raw, "priority", 0))


def read_text(text: str) -> Iterator[InputURL]:
    """Convenience for tests and the API: validate URLs given one per line."""
    return read_urls(iter_input_lines(io.StringIO(text)))
