"""What the NLP workers' fork server imports: modules kept out while it loads the model (``blocked_imports``), and
which models may need torch (``may_need_torch``), the one module the spaCy backend keeps out."""

from __future__ import annotations

import importlib
import sys
from importlib import metadata
from typing import TYPE_CHECKING

import pytest

import enrich.nlp_spacy
from enrich.config import NLPConfig
from enrich.errors import NLPError
from enrich.nlp_spacy import may_need_torch
from enrich.worker_server import blocked_imports

if TYPE_CHECKING:
    from pathlib import Path

PROBE = "webenrich_blocked_probe"


def test_a_blocked_module_cannot_be_imported_in_the_block_and_can_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / f"{PROBE}.py").write_text("VALUE = 1\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, PROBE, raising=False)
    with blocked_imports((PROBE,)), pytest.raises(ImportError):
        importlib.import_module(PROBE)
    assert importlib.import_module(PROBE).VALUE == 1
    monkeypatch.delitem(sys.modules, PROBE)


def test_a_module_imported_already_is_left_alone() -> None:
    with blocked_imports(("json",)):
        assert importlib.import_module("json") is sys.modules["json"]
    assert sys.modules["json"] is not None


def test_the_default_model_does_not_need_torch() -> None:
    assert may_need_torch(NLPConfig().model_name) is False


@pytest.mark.parametrize(
    ("requires", "needs"),
    [
        (["spacy <3.9.0,>=3.7.5"], False),
        (["spacy<3.9.0,>=3.7.0", "spacy-curated-transformers<1.0.0,>=0.2.2"], True),
        (["spacy_transformers>=1.3"], True),
        (["torch (>=2.0)"], True),
        (None, False),
    ],
)
def test_a_model_whose_package_requires_a_torch_library_needs_torch(
    monkeypatch: pytest.MonkeyPatch, requires: list[str] | None, needs: bool
) -> None:
    monkeypatch.setattr(enrich.nlp_spacy, "resolve_model", lambda name: name)
    monkeypatch.setattr(enrich.nlp_spacy.metadata, "requires", lambda name: requires)
    assert may_need_torch("xx_some_model") is needs


def test_a_model_folder_may_need_torch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def not_a_package(name: str) -> list[str]:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(enrich.nlp_spacy.metadata, "requires", not_a_package)
    assert may_need_torch(str(tmp_path)) is True  # a folder resolves to itself; only loading it tells


def test_a_missing_model_is_an_error() -> None:
    with pytest.raises(NLPError, match="not installed"):
        may_need_torch("xx_no_such_model_sm")
