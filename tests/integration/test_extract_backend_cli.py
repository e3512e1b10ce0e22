"""``--extract-backend`` end to end: the flag reaches the extraction stage of each engine (the async engine in the
CLI's process, Scrapy mode through the config file handed to ``scrapy crawl``)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from tests.checkout import checkout_env

if TYPE_CHECKING:
    from pathlib import Path

    from crawler.localsite import ServerThread

pytest.importorskip("resiliparse", reason="the fast backend needs the 'fast' extra (resiliparse)")


@pytest.mark.parametrize("engine", ["async", "scrapy"])
def test_flag_reaches_the_engine(demo_site: ServerThread, tmp_path: Path, engine: str) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{demo_site.url}/lighthouse.html\n{demo_site.url}/index.html\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = subprocess.run(
        [
            sys.executable, "-m", "crawler", "--progress", "off", "--stage", "3", "--engine", engine, "--no-nlp",
            "--extract-backend", "resiliparse", "--input", str(urls), "--output", str(out),
        ],
        cwd=tmp_path,
        env=checkout_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    records = {r["url"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert len(records) == 2
    lighthouse = records[f"{demo_site.url}/lighthouse.html"]
    assert lighthouse["engine"] == engine
    assert lighthouse["error"] is None
    assert lighthouse["metadata"]["extractor"] == "resiliparse"
    assert "designed by the engineer Anders Holm" in lighthouse["text"]
    assert lighthouse["author"] == "Ingrid Solberg"
    assert f"{demo_site.url}/market.html" in records[f"{demo_site.url}/index.html"]["links"]
