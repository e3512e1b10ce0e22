"""Shared fixtures for every test: the real-document corpus, the real spaCy model, and page builders.

Kept generic on purpose: engine- or server-specific fixtures belong in ``tests/integration/conftest.py``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    # The project is tested from its checkout; it need not be installed in the virtualenv.
    sys.path.insert(0, str(REPO_ROOT))

# No test reaches the Hugging Face hub: a hub id fails at once instead of retrying a network that is not there. Set
# before anything imports huggingface_hub, which reads it on import; worker processes inherit it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from enrich.config import NLPConfig  # noqa: E402
from enrich.nlp import TextAnalyzer, load_model  # noqa: E402
from enrich.record import FetchedPage, load_schema  # noqa: E402
from tests.reactor import call_outside_reactor, is_reactor_test, reactor_loop_set, resume_reactor_loop  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterator

    from jsonschema import Draft202012Validator
    from spacy.language import Language

CORPUS_DIR = REPO_ROOT.parent / "shared" / "corpus"
"""Real documents nobody on the project wrote (see its README.md); present on the shared machine only."""

FETCHED_AT = "2024-06-01T12:00:00.000Z"


class PageFactory(Protocol):
    def __call__(
        self,
        body: bytes,
        content_type: str | None = ...,
        url: str = ...,
        *,
        headers: dict[str, str] | None = ...,
        status: int = ...,
        truncated: bool = ...,
    ) -> FetchedPage: ...


def build_page(
    body: bytes,
    content_type: str | None = "text/html",
    url: str = "http://127.0.0.1:8000/page.html",
    *,
    headers: dict[str, str] | None = None,
    status: int = 200,
    truncated: bool = False,
) -> FetchedPage:
    """A fetched page as an engine would hand it over. ``content_type`` None sends no Content-Type header."""
    all_headers = {k.lower(): v for k, v in (headers or {}).items()}
    if content_type is not None:
        all_headers.setdefault("content-type", content_type)
    return FetchedPage(
        url=url,
        final_url=url,
        status=status,
        headers=all_headers,
        body=body,
        fetched_at=FETCHED_AT,
        fetch_duration_ms=12.5,
        truncated=truncated,
    )


@pytest.fixture
def make_page() -> PageFactory:
    """Build a :class:`FetchedPage` from bytes: ``make_page(body, content_type="text/html", url=...)``."""
    return build_page


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The shared corpus of real pages and PDFs; tests that need it are skipped where it is absent."""
    if not (CORPUS_DIR / "README.md").is_file():
        pytest.skip(f"real-document corpus not found at {CORPUS_DIR} (it lives beside the checkout, in ../shared)")
    return CORPUS_DIR


@pytest.fixture(scope="session")
def nlp_model() -> Language:
    """The real spaCy pipeline as the NLP stage loads it (pruned to ner + sentencizer), loaded once."""
    return load_model(NLPConfig().model)


@pytest.fixture(scope="session")
def analyzer(nlp_model: Language) -> TextAnalyzer:
    """A :class:`TextAnalyzer` over the real model with the default NLP config."""
    return TextAnalyzer(nlp=nlp_model, config=NLPConfig())


def _transformers_or_skip() -> None:
    for name in ("torch", "transformers", "tokenizers"):
        pytest.importorskip(name, reason=f"the transformers NLP backend needs {name}: pip install -e '.[transformers]'")


@pytest.fixture(scope="session")
def tiny_ner_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT NER model trained here on template sentences (:mod:`tests.tiny_ner`), saved to a folder."""
    _transformers_or_skip()
    from tests.tiny_ner import build_trained

    return build_trained(tmp_path_factory.mktemp("tiny-ner-trained"))


@pytest.fixture(scope="session")
def constant_ner_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT NER model that tags every token B-PER: every word of a text is an entity."""
    _transformers_or_skip()
    from tests.tiny_ner import build_constant

    return build_constant(tmp_path_factory.mktemp("tiny-ner-constant"))


@pytest.fixture(scope="session")
def record_validator() -> Draft202012Validator:
    """A JSON Schema validator for serialized records (``enrich/record.schema.json``)."""
    from jsonschema import Draft202012Validator

    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


# --- pytest-twisted beside pytest-asyncio (see tests/reactor.py) ----------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> object | None:
    """Only ``reactor`` tests run in the reactor's greenlet; every other test is called as pytest calls it."""
    return call_outside_reactor(pyfuncitem)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    if not is_reactor_test(item):
        return (yield)
    with reactor_loop_set():
        return (yield)


@pytest.hookimpl(tryfirst=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    resume_reactor_loop()
