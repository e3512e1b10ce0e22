"""``tools/extraction_eval.py``: its score is the article extraction benchmark's, and it runs both backends over a
folder laid out as the benchmark's (made here from two pages, so the real data set is not needed)."""

from __future__ import annotations

import gzip
import json
import random
from typing import TYPE_CHECKING

import pytest

from tests.checkout import load_tool

if TYPE_CHECKING:
    from pathlib import Path
    from types import ModuleType


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    return load_tool("extraction_eval")


def test_identical_and_disjoint_texts(tool: ModuleType) -> None:
    text = "one two three four five six"
    assert tool.match(text, text, 4) == (1.0, 0.0, 0.0)
    assert tool.match(text, "seven eight nine ten eleven", 4) == (0.0, 2 / 5, 3 / 5)
    assert tool.match("", "", 4) == (0.0, 0.0, 0.0)


def test_extra_text_costs_precision_not_recall(tool: ModuleType) -> None:
    truth = "the mill grinds flour on two tides a day"
    tp, fp, fn = tool.match(truth, truth + " subscribe to our newsletter today", 4)
    assert fn == 0
    assert 0 < tp < 1
    assert fp > 0
    figures = tool.scores([(tp, fp, fn)])
    assert figures["recall"] == 1.0
    assert figures["precision"] == pytest.approx(tp / (tp + fp))


def test_pages_weigh_the_same_whatever_their_length(tool: ModuleType) -> None:
    short_miss = tool.match("a b c d e", "v w x y z", 4)
    long_hit = tool.match(" ".join(f"w{i}" for i in range(5000)), " ".join(f"w{i}" for i in range(5000)), 4)
    assert tool.scores([short_miss, long_hit])["recall"] == 0.5


def test_shingles_count_repeats(tool: ModuleType) -> None:
    # a text written twice where the truth has it once: its shingle matches once, the second copy and the
    # three shingles across the seam are false positives
    tp, fp, fn = tool.match("w x y z", "w x y z w x y z", 4)
    assert (tp, fp, fn) == (pytest.approx(1 / 5), pytest.approx(4 / 5), 0)


def test_evaluate_reports_means_medians_and_deviations(tool: ModuleType) -> None:
    truth = {"a": "one two three four five", "b": "six seven eight nine ten"}
    texts = {"a": "one two three four five", "b": "nothing alike at all here"}
    result = tool.evaluate(truth, texts, 4, random.Random(1))
    assert result["page_f1_mean"] == 0.5
    assert result["page_f1_median"] == 0.5
    assert result["f1_std"] > 0


def _page(paragraphs: list[str]) -> bytes:
    nav = "<nav><a href='/'>Front page</a> <a href='/shop'>Subscription shop and gift cards</a></nav>"
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return f"<html><head><title>t</title></head><body>{nav}<article>{body}</article></body></html>".encode()


def test_runs_both_backends_over_a_benchmark_folder(tool: ModuleType, tmp_path: Path) -> None:
    pytest.importorskip("resiliparse", reason="the fast backend needs the 'fast' extra (resiliparse)")
    articles = {
        "p1": [
            "The tidal mill at Eling still grinds flour on two tides a day for visitors and bakers alike.",
            "It was rebuilt in 1785 after a storm broke its wheel and most of the dam that held the sea.",
        ],
        "p2": [
            "Lighthouse keepers wrote their logbooks by hand for a century before the light was automated.",
            "The Historical Society now reads them aloud at the Saturday market every summer for the town.",
        ],
    }
    (tmp_path / "html").mkdir()
    for key, paragraphs in articles.items():
        (tmp_path / "html" / f"{key}.html.gz").write_bytes(gzip.compress(_page(paragraphs)))
    truth = {key: {"articleBody": "\n".join(paragraphs)} for key, paragraphs in articles.items()}
    (tmp_path / "ground-truth.json").write_text(json.dumps(truth), encoding="utf-8")
    out = tmp_path / "report.json"
    assert tool.main(["--data", str(tmp_path), "--rounds", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["pages"] == 2
    assert set(report["backends"]) == {"trafilatura", "resiliparse"}
    for figures in report["backends"].values():
        assert figures["errors"] == 0
        assert figures["pages_per_s"] > 0
        assert figures["shingles_4"]["recall"] == 1.0
        assert figures["shingles_4"]["f1"] > 0.8


def test_refuses_a_folder_that_is_not_the_benchmark(tool: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"ground-truth\.json"):
        tool.main(["--data", str(tmp_path)])
