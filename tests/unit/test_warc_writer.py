"""The WARC writer of the core: records as written, read back with warcio; rollover; a write that fails."""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import re
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from warcs import assert_warcio_accepts, read_exchanges, read_file, warc_files, with_file_size_limit

from enrich.config import EnrichConfig
from enrich.errors import ConfigError, SinkError
from enrich.warc import Exchange, WarcWriter

REPO_ROOT = Path(__file__).resolve().parents[2]

T0 = 1_717_243_200.0  # 2024-06-01T12:00:00Z
PAGE = b"<!doctype html><html><head><title>Harbour</title></head><body><p>The lighthouse.</p></body></html>"
PAGE_GZ = gzip.compress(PAGE, mtime=0)


def exchange(url: str = "http://example.test:8080/path/page?q=1", **changes: object) -> Exchange:
    values: dict[str, object] = {
        "url": url,
        "status": 200,
        "reason": "OK",
        "response_headers": [
            ("Content-Type", "text/html"),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
            ("Content-Encoding", "gzip"),
            ("Transfer-Encoding", "chunked"),
        ],
        "body": PAGE_GZ,
        "request_headers": [("User-Agent", "webenrich-test"), ("Accept-Encoding", "gzip")],
        "peer_ip": "192.0.2.7",
        "sent_at": T0,
        "received_at": T0 + 0.25,
        **changes,
    }
    return Exchange(**values)  # type: ignore[arg-type]


async def write_all(writer: WarcWriter, exchanges: list[Exchange]) -> None:
    await writer.open()
    try:
        await asyncio.gather(*(writer.write(e) for e in exchanges))
    finally:
        await writer.close()


async def test_an_exchange_is_a_linked_request_response_pair(tmp_path: Path) -> None:
    writer = WarcWriter(directory=tmp_path / "warc", info={"software": "tests", "robots": "obey"}, clock=lambda: T0)
    await write_all(writer, [exchange()])

    [path] = warc_files(tmp_path / "warc")
    assert path.name == "webenrich-20240601120000-00000.warc.gz"
    assert writer.files == [path]
    warcinfo = read_file(path)[0]
    assert warcinfo.type == "warcinfo"
    assert b"software: tests\r\n" in warcinfo.payload
    assert b"robots: obey\r\n" in warcinfo.payload
    assert warcinfo.fields.protocol == "WARC/1.1"

    [pair] = read_exchanges(tmp_path / "warc")
    request, response = pair.request, pair.response
    assert request.target == response.target == "http://example.test:8080/path/page?q=1"
    assert request.field("WARC-Date") == "2024-06-01T12:00:00.000000Z"
    assert response.field("WARC-Date") == "2024-06-01T12:00:00.250000Z"
    assert request.field("WARC-IP-Address") == response.field("WARC-IP-Address") == "192.0.2.7"
    assert response.field("WARC-Truncated") is None
    # the request as sent, Host restored from the URL
    assert request.http is not None
    assert (request.http.protocol, request.http.statusline) == ("GET", "/path/page?q=1 HTTP/1.1")
    assert request.http.headers == [
        ("Host", "example.test:8080"),
        ("User-Agent", "webenrich-test"),
        ("Accept-Encoding", "gzip"),
    ]
    # the answer as received: status line, headers in order with duplicates, body still gzipped
    assert response.http is not None
    assert (response.http.protocol, response.http.statusline) == ("HTTP/1.1", "200 OK")
    assert response.http.headers == [
        ("Content-Type", "text/html"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("Content-Encoding", "gzip"),
        ("X-Crawler-Transfer-Encoding", "chunked"),  # the stored body is not chunked: readers must not de-chunk
    ]
    assert response.payload == PAGE_GZ
    assert response.content == PAGE
    assert_warcio_accepts(tmp_path / "warc")


async def test_a_cut_body_is_marked_truncated(tmp_path: Path) -> None:
    body = PAGE[:40]
    await write_all(
        WarcWriter(directory=tmp_path),
        [exchange(body=body, truncated=True, response_headers=[("Content-Length", str(len(PAGE)))])],
    )
    [pair] = read_exchanges(tmp_path)
    assert pair.response.field("WARC-Truncated") == "length"
    assert pair.request.field("WARC-Truncated") is None
    assert pair.response.payload == body
    assert pair.response.http_header("Content-Length") == str(len(PAGE))  # as received
    assert_warcio_accepts(tmp_path)


async def test_unknown_reason_and_times_are_filled_in(tmp_path: Path) -> None:
    await write_all(
        WarcWriter(directory=tmp_path, clock=lambda: T0 + 60),
        [exchange(status=404, reason="", sent_at=None, received_at=None, peer_ip=None, body=b"gone")],
    )
    [pair] = read_exchanges(tmp_path)
    assert pair.response.http is not None
    assert pair.response.http.statusline == "404 Not Found"
    assert pair.request.field("WARC-Date") == pair.response.field("WARC-Date") == "2024-06-01T12:01:00.000000Z"
    assert pair.response.field("WARC-IP-Address") is None


async def test_files_roll_over_past_the_size_and_keep_every_exchange_once(tmp_path: Path) -> None:
    noise = random.Random(7)
    exchanges = [
        exchange(f"http://example.test/page/{n}", body=noise.randbytes(900), response_headers=[]) for n in range(40)
    ]
    writer = WarcWriter(directory=tmp_path, max_bytes=4000, clock=lambda: T0)
    await write_all(writer, exchanges)  # concurrently: the writes run in several threads

    files = warc_files(tmp_path)
    assert len(files) >= 5
    assert files == writer.files
    assert [re.sub(r".*-(\d{5})\.warc\.gz", r"\1", p.name) for p in files] == [f"{n:05d}" for n in range(len(files))]
    for path in files[:-1]:
        assert path.stat().st_size >= 4000
    pairs = read_exchanges(tmp_path)  # per file: a warcinfo first, every request with its response
    assert Counter(p.response.target for p in pairs) == Counter(e.url for e in exchanges)
    bodies = {e.url: e.body for e in exchanges}
    assert all(p.response.payload == bodies[p.response.target] for p in pairs)
    assert writer.stats()["exchanges"] == 40
    assert_warcio_accepts(tmp_path)


FULL_DISK_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from enrich.errors import SinkError
    from enrich.warc import Exchange, WarcWriter

    async def main():
        writer = WarcWriter(directory=Path(sys.argv[1]))
        await writer.open()
        result = {"written": 0}
        body = bytes(range(256)) * 64
        try:
            for n in range(1000):
                await writer.write(Exchange(url=f"http://example.test/{n}", status=200, response_headers=[], body=body))
                result["written"] += 1
        except SinkError as exc:
            result["error"] = str(exc)
        try:
            await writer.write(Exchange(url="http://example.test/again", status=200, response_headers=[], body=b""))
        except SinkError as exc:
            result["again"] = str(exc)
        try:
            await writer.close()
        except SinkError as exc:
            result["close"] = str(exc)
        print(json.dumps(result))

    asyncio.run(main())
    """
)


def test_a_full_disk_fails_every_write_and_leaves_a_valid_file(tmp_path: Path) -> None:
    result = subprocess.run(
        with_file_size_limit(64 * 1024, [sys.executable, "-c", FULL_DISK_SCRIPT, str(tmp_path)]),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    [path] = warc_files(tmp_path)
    assert 0 < outcome["written"] < 1000
    assert outcome["error"].startswith(f"cannot write WARC file {path}: File too large")
    assert outcome["again"] == outcome["error"]  # the writer stays failed
    assert outcome["close"] == outcome["error"]  # and whoever closes it learns the archive is incomplete
    assert len(read_exchanges(tmp_path)) == outcome["written"]  # the failed write was cut off the file
    assert_warcio_accepts(tmp_path)


async def test_a_folder_that_cannot_be_made_fails_on_open(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    writer = WarcWriter(directory=blocker / "warc")
    with pytest.raises(SinkError, match=r"cannot create the WARC folder .*/file/warc"):
        await writer.open()


async def test_writing_after_close_is_a_bug(tmp_path: Path) -> None:
    writer = WarcWriter(directory=tmp_path)
    await writer.open()
    await writer.close()
    await writer.close()  # twice is fine
    with pytest.raises(RuntimeError, match="after close"):
        await writer.write(exchange())


def test_config_turns_warc_on_and_describes_the_run() -> None:
    assert WarcWriter.from_config(EnrichConfig()) is None
    config = EnrichConfig().replace(warc={"dir": "/tmp/warcs", "max_mb": 5}, politeness={"respect_robots": False})
    writer = WarcWriter.from_config(config)
    assert writer is not None
    assert writer.directory == Path("/tmp/warcs")
    assert writer.max_bytes == 5 * 1024 * 1024
    assert writer._info["robots"] == "ignore"
    assert writer._info["http-header-user-agent"] == config.fetch.full_user_agent


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"max_mb": 0}, "warc.max_mb: Input should be greater than or equal to 1"),
        ({"dir": " "}, "warc.dir: Value error, must be a folder, or null to turn WARC output off"),
    ],
)
def test_config_is_validated(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        EnrichConfig().replace(warc=values)
