"""WARC output: every HTTP exchange of a run archived as a WARC/1.1 ``request`` / ``response`` record pair.

An engine captures each exchange as it went over the wire and hands it over as an :class:`Exchange` (plain data:
the request's headers as sent, the status line and headers as received, the body before content decoding, the
peer's address, times); :class:`WarcWriter` writes it with warcio. Pages, robots.txt fetches and every redirect hop
are exchanges alike; an attempt that got no answer (refused, reset, timed out) has nothing to archive.

Files are ``<dir>/webenrich-YYYYMMDDhhmmss-NNNNN.warc.gz``, each starting with a ``warcinfo`` record, each record
gzipped on its own (a reader can start at any record), the next file started once one passes ``max_bytes``. The two
records of an exchange always share a file; the request record names the response in ``WARC-Concurrent-To``.

What the records hold, and why:

* The body **before content decoding**: a gzip-encoded answer is stored gzipped, with its ``Content-Encoding``
  header, so the record is what the server sent (warcio decodes it on reading).
* The body **after transfer decoding**: both engines' HTTP clients remove ``chunked`` framing and keep no copy of
  it, so a ``Transfer-Encoding`` header is stored as ``X-Crawler-Transfer-Encoding`` (Common Crawl's convention):
  a reader must not de-chunk a body that is not chunked.
* A body cut at the size cap is stored as far as it was kept and marked ``WARC-Truncated: length``.
* Request headers are the ones sent (``Authorization`` included, when the input URL carried credentials); a
  ``Host`` header is added from the URL when the engine's list lacks it (Scrapy adds it on the wire only).

Writing leaves the event loop: warcio builds and compresses an exchange's records in a worker thread (zlib lets
several run at once), then the bytes are appended to the file with one write under a lock, so concurrent callers
(the async engine's tasks, Scrapy's reactor thread) never interleave records. A failed write is cut back off the
file, so after every exchange, and after a stopped run, each file is a valid WARC. A write failure (disk full)
raises :class:`~enrich.errors.SinkError`, which stops the run like a sink's, and every later write raises it too.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from warcio.statusandheaders import StatusAndHeaders, StatusAndHeadersParser
from warcio.warcwriter import WARCWriter

from enrich.errors import SinkError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from enrich.config import EnrichConfig

__all__ = ["FILE_PREFIX", "MB", "Exchange", "WarcWriter"]

logger = logging.getLogger(__name__)

MB = 1024 * 1024
"""``warc.max_mb`` counts these."""

FILE_PREFIX = "webenrich"
"""File names are ``<prefix>-YYYYMMDDhhmmss-NNNNN.warc.gz`` (the time the file was started, UTC; a serial)."""

WARC_VERSION = "WARC/1.1"

_MOVED_HEADERS = {"transfer-encoding": "X-Crawler-Transfer-Encoding"}
"""Response headers describing a framing the stored body no longer has, renamed as Common Crawl does."""


@dataclass(frozen=True, slots=True)
class Exchange:
    """One HTTP request and its answer as they went over the wire.

    Attributes:
        url: the URL requested (this hop's, without credentials): ``WARC-Target-URI``.
        status: the status code received.
        response_headers: the headers received, in order, duplicates kept.
        body: the body as received, before content decoding; cut at the size cap when ``truncated``.
        method: the request method.
        request_headers: the headers sent, in order.
        reason: the reason phrase received; empty means unknown (the standard phrase is written).
        http_version: the protocol of the status line received, e.g. ``HTTP/1.1``.
        request_version: the protocol of the request line sent (both engines speak HTTP/1.1).
        peer_ip: the server's address (``WARC-IP-Address``), when known.
        sent_at: when the request was sent, in seconds since the epoch (the request record's ``WARC-Date``).
        received_at: when the answer's headers arrived (the response record's ``WARC-Date``).
        truncated: the body was cut at the size cap (``WARC-Truncated: length``).
    """

    url: str
    status: int
    response_headers: Sequence[tuple[str, str]]
    body: bytes
    method: str = "GET"
    request_headers: Sequence[tuple[str, str]] = ()
    reason: str = ""
    http_version: str = "HTTP/1.1"
    request_version: str = "HTTP/1.1"
    peer_ip: str | None = None
    sent_at: float | None = None
    received_at: float | None = None
    truncated: bool = False


class WarcWriter:
    """Writes exchanges to rolling WARC files in one folder (see the module docstring).

    ``open`` / ``write`` / ``close`` are coroutines that do their file work in worker threads; ``write`` may be
    called by many tasks at once, and from any thread's event loop.

    Args:
        directory: where the files go; created on :meth:`open`.
        max_bytes: a file is closed and the next one started once it holds this many bytes (an exchange is never
            split, so a file ends a little past it).
        info: the fields of each file's ``warcinfo`` record (``software``, ``robots``, ...).
        prefix: the start of the file names.
        clock: seconds since the epoch, for file names and for exchanges that carry no times.
    """

    def __init__(
        self,
        *,
        directory: Path,
        max_bytes: int = 1000 * MB,
        info: Mapping[str, str] | None = None,
        prefix: str = FILE_PREFIX,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.prefix = prefix
        self._info = dict(info or {})
        self._clock = clock
        self._lock = threading.Lock()
        self._file: int | None = None
        """The current file's descriptor: unbuffered, so a failed write can be cut back off exactly."""
        self._path: Path | None = None
        self._size = 0
        self._serial = 0
        self._closed = False
        self._error: SinkError | None = None
        self.files: list[Path] = []
        """Every file started, in order."""
        self.exchanges = 0
        self.truncated = 0
        self.bytes_written = 0

    @classmethod
    def from_config(cls, config: EnrichConfig) -> WarcWriter | None:
        """The writer of a run's config, or ``None`` when ``warc.dir`` is not set (WARC output off)."""
        warc = config.warc
        if warc.dir is None:
            return None
        info = {
            "software": f"webenrich/{_version('webenrich')} (warcio/{_version('warcio')})",
            "format": "WARC File Format 1.1",
            "conformsTo": "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/",
            "hostname": socket.gethostname(),
            "http-header-user-agent": config.fetch.full_user_agent,
            "robots": "obey" if config.politeness.respect_robots else "ignore",
        }
        return cls(directory=warc.dir, max_bytes=warc.max_mb * MB, info=info)

    async def open(self) -> None:
        """Create the folder and start the first file (so a folder that cannot be written fails before any fetch).

        Raises:
            SinkError: the folder or the file cannot be created.
        """
        await asyncio.to_thread(self._open)

    async def write(self, exchange: Exchange) -> None:
        """Archive one exchange as a request and a response record.

        Raises:
            SinkError: the file cannot be written (now or at an earlier write); the run should stop.
            RuntimeError: the writer is closed.
        """
        await asyncio.to_thread(self._write, exchange)

    async def close(self) -> None:
        """Close the current file; later writes are refused. Closing twice does nothing.

        Raises:
            SinkError: the file cannot be closed, or a write failed earlier (whoever closes the writer learns that
                the archive is incomplete, even if the failed write's caller did not say).
        """
        await asyncio.to_thread(self._close)

    def stats(self) -> dict[str, object]:
        """Figures for the run's summary."""
        return {
            "dir": str(self.directory),
            "files": len(self.files),
            "exchanges": self.exchanges,
            "truncated": self.truncated,
            "bytes": self.bytes_written,
        }

    # --- in worker threads -------------------------------------------------------------------------------------

    def _open(self) -> None:
        with self._lock:
            if self._file is None and not self._closed:
                self._start_file()

    def _write(self, exchange: Exchange) -> None:
        data = self._records(exchange)  # outside the lock: compression runs in several threads at once
        with self._lock:
            if self._error is not None:
                raise SinkError(str(self._error)) from self._error
            if self._closed:
                raise RuntimeError("WarcWriter.write() called after close()")
            if self._file is None:
                self._start_file()
            self._append(data)
            self.exchanges += 1
            self.truncated += exchange.truncated
            if self._size >= self.max_bytes:
                self._finish_file()

    def _close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._file is not None:
                self._finish_file()
            if self._error is not None:
                raise SinkError(str(self._error)) from self._error
        logger.info(
            "WARC: %d exchanges in %d files under %s",
            self.exchanges,
            len(self.files),
            self.directory,
            extra={"warc_dir": str(self.directory)},
        )

    # --- under the lock ----------------------------------------------------------------------------------------

    def _start_file(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._fail(f"cannot create the WARC folder {self.directory}: {exc.strerror or exc}", exc) from exc
        stamp = datetime.fromtimestamp(self._clock(), UTC).strftime("%Y%m%d%H%M%S")
        while True:
            path = self.directory / f"{self.prefix}-{stamp}-{self._serial:05d}.warc.gz"
            self._serial += 1
            try:
                self._file = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue  # another run in this folder started a file in the same second
            except OSError as exc:
                raise self._fail(f"cannot create WARC file {path}: {exc.strerror or exc}", exc) from exc
            break
        self._path, self._size = path, 0
        self.files.append(path)
        buffer = BytesIO()
        writer = WARCWriter(buffer, gzip=True, warc_version=WARC_VERSION)
        writer.write_record(writer.create_warcinfo_record(path.name, self._info))
        self._append(buffer.getvalue())

    def _append(self, data: bytes) -> None:
        """Append ``data`` whole, or cut the file back to where it was and fail."""
        assert self._file is not None
        assert self._path is not None
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._file, view) :]
        except OSError as exc:
            try:
                os.ftruncate(self._file, self._size)  # the file ends with its last whole record again
            except OSError:
                logger.error("cannot cut the failed write off %s", self._path, exc_info=True)
            raise self._fail(f"cannot write WARC file {self._path}: {exc.strerror or exc}", exc) from exc
        self._size += len(data)
        self.bytes_written += len(data)

    def _finish_file(self) -> None:
        assert self._file is not None
        descriptor, self._file, self._path = self._file, None, None
        try:
            os.close(descriptor)
        except OSError as exc:
            raise self._fail(f"cannot close WARC file: {exc.strerror or exc}", exc) from exc

    def _fail(self, message: str, cause: OSError) -> SinkError:
        """Remember the first failure (every later write raises it too) and close the file; the error to raise."""
        error = SinkError(message)
        error.__cause__ = cause
        if self._error is None:
            self._error = error
        if self._file is not None:
            descriptor, self._file, self._path = self._file, None, None
            try:
                os.close(descriptor)
            except OSError:
                logger.error("cannot close the failed WARC file", exc_info=True)
        return error

    # --- records -----------------------------------------------------------------------------------------------

    def _records(self, exchange: Exchange) -> bytes:
        """The request and response records of ``exchange``, each its own gzip member."""
        now = self._clock()
        received = exchange.received_at if exchange.received_at is not None else now
        sent = exchange.sent_at if exchange.sent_at is not None else received
        common = {"WARC-IP-Address": exchange.peer_ip} if exchange.peer_ip else {}
        buffer = BytesIO()
        writer = WARCWriter(buffer, gzip=True, warc_version=WARC_VERSION)

        response_id = StatusAndHeadersParser.make_warc_id()
        response_fields = {
            "WARC-Type": "response",
            "WARC-Record-ID": response_id,
            "WARC-Date": _warc_date(received),
            **common,
        }
        if exchange.truncated:
            response_fields["WARC-Truncated"] = "length"
        reason = exchange.reason or _standard_reason(exchange.status)
        response = writer.create_warc_record(
            exchange.url,
            "response",
            payload=BytesIO(exchange.body),
            length=len(exchange.body),
            http_headers=StatusAndHeaders(
                f"{exchange.status} {reason}".rstrip(),
                [(_MOVED_HEADERS.get(name.lower(), name), value) for name, value in exchange.response_headers],
                protocol=exchange.http_version,
            ),
            warc_headers_dict=response_fields,
        )

        parts = urlsplit(exchange.url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request_headers = list(exchange.request_headers)
        if not any(name.lower() == "host" for name, _ in request_headers):
            request_headers.insert(0, ("Host", parts.netloc.rpartition("@")[2]))
        request = writer.create_warc_record(
            exchange.url,
            "request",
            payload=BytesIO(b""),
            length=0,
            http_headers=StatusAndHeaders(
                f"{exchange.method} {target} {exchange.request_version}", request_headers, is_http_request=True
            ),
            warc_headers_dict={
                "WARC-Type": "request",
                "WARC-Record-ID": StatusAndHeadersParser.make_warc_id(),
                "WARC-Date": _warc_date(sent),
                **common,
                "WARC-Concurrent-To": response_id,
            },
        )
        writer.write_record(request)
        writer.write_record(response)
        return buffer.getvalue()


def _warc_date(seconds: float) -> str:
    """WARC/1.1 dates may carry fractions of a second: microseconds, so an exchange's two records order right."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _standard_reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
