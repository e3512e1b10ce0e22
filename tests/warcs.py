"""Reading WARC files back in tests, with warcio's ``ArchiveIterator`` and warcio's own command-line tools."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING

from warcio.archiveiterator import ArchiveIterator

if TYPE_CHECKING:
    from warcio.statusandheaders import StatusAndHeaders

WARCIO = Path(sys.executable).with_name("warcio")
"""warcio's command line, installed beside the interpreter running the tests."""


@dataclass
class StoredRecord:
    """One record as read back: its WARC fields, its HTTP head, its payload as stored and as warcio decodes it."""

    file: Path
    type: str
    fields: StatusAndHeaders
    http: StatusAndHeaders | None
    payload: bytes
    content: bytes

    @property
    def id(self) -> str:
        return str(self.fields.get_header("WARC-Record-ID"))

    @property
    def target(self) -> str:
        return str(self.fields.get_header("WARC-Target-URI"))

    def field(self, name: str) -> str | None:
        value = self.fields.get_header(name)
        return None if value is None else str(value)

    @property
    def status(self) -> int:
        assert self.http is not None
        return int(self.http.get_statuscode())

    def http_header(self, name: str) -> str | None:
        assert self.http is not None
        value = self.http.get_header(name)
        return None if value is None else str(value)


@dataclass
class StoredExchange:
    request: StoredRecord
    response: StoredRecord


def warc_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("webenrich-*.warc.gz"))


def read_file(path: Path) -> list[StoredRecord]:
    records = []
    with path.open("rb") as stream:
        for record in ArchiveIterator(stream):
            payload = record.raw_stream.read()
            record.raw_stream = BytesIO(payload)  # read it a second time, decoded the way warcio decodes it
            content = record.content_stream().read()
            records.append(
                StoredRecord(
                    file=path,
                    type=record.rec_type,
                    fields=record.rec_headers,
                    http=record.http_headers,
                    payload=payload,
                    content=content,
                )
            )
    return records


def read_exchanges(directory: Path) -> list[StoredExchange]:
    """Every request/response pair of the WARC files in ``directory``, checking the layout on the way: each file
    starts with its one ``warcinfo``, and each request names exactly one response of the same file (and each
    response is named once) in ``WARC-Concurrent-To``."""
    files = warc_files(directory)
    assert files, f"no WARC files in {directory}"
    exchanges = []
    for path in files:
        records = read_file(path)
        assert [r.type for r in records[:1]] == ["warcinfo"], path
        assert Counter(r.type for r in records)["warcinfo"] == 1, path
        assert records[0].field("WARC-Filename") == path.name
        responses = {r.id: r for r in records if r.type == "response"}
        requests = [r for r in records if r.type == "request"]
        assert len(requests) == len(responses), path
        named = [r.field("WARC-Concurrent-To") for r in requests]
        assert sorted(str(n) for n in named) == sorted(responses), path
        for request in requests:
            response = responses[str(request.field("WARC-Concurrent-To"))]
            assert request.target == response.target
            exchanges.append(StoredExchange(request=request, response=response))
    return exchanges


def with_file_size_limit(limit: int, argv: list[str]) -> list[str]:
    """``argv`` run under a file-size limit: the kernel refuses writes past ``limit`` bytes of a file (EFBIG), as a
    full disk refuses them (ENOSPC); Python ignores SIGXFSZ, so the write raises instead of killing the process.
    The limit is set by a launcher that then execs ``argv`` (a ``preexec_fn`` is unsafe with threads running)."""
    launcher = (
        "import os, resource, sys; "
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY)); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    return [sys.executable, "-c", launcher, *argv]


def warcio(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(WARCIO), *args], capture_output=True, text=True, timeout=120, check=False)


def assert_warcio_accepts(directory: Path) -> None:
    """``warcio check`` (every record's digests) and ``warcio index`` (every record parsed) succeed on each file."""
    for path in warc_files(directory):
        checked = warcio("check", "-v", str(path))
        assert checked.returncode == 0, checked.stdout + checked.stderr
        # one verdict per record: requests and responses must pass (warcio leaves an empty block unchecked)
        verdicts = [line.strip() for line in checked.stdout.splitlines() if line.startswith("    ")]
        records = read_file(path)
        assert len(verdicts) == len(records), checked.stdout
        for record, verdict in zip(records, verdicts, strict=True):
            allowed = {"digest pass"} if record.payload else {"digest pass", "digest present but not checked"}
            assert verdict in allowed, checked.stdout
        indexed = warcio("index", "-f", "warc-type,warc-target-uri,http:status", str(path))
        assert indexed.returncode == 0, indexed.stderr
        assert indexed.stdout.count("\n") == len(read_file(path)), indexed.stdout
