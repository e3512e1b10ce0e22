"""The NLP cache: an analysis is keyed by a hash of its text, the language hint, the model and the settings that
change its result, so the same text is analyzed once, under any number of URLs, in this run and (with a crawl
state, :mod:`enrich.state`) in every later run of the job.

Texts repeat more than one would think: mirrors, print views, the same notice under many URLs, and above all a
recrawl where a page's markup changed but its text did not. A hit costs a hash and a lookup; a miss costs what it
did before. Identical texts in flight at the same time are analyzed once too (the second waits for the first).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import zlib
from collections import OrderedDict
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from enrich.record import Entity

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from enrich.config import NLPConfig
    from enrich.nlp import NLPResult

__all__ = ["ANALYZER_VERSION", "AnalysisStore", "NLPCache", "model_identity"]

ANALYZER_VERSION = 1
"""Bump when :class:`~enrich.nlp.TextAnalyzer` changes what it returns for the same text: old analyses then miss."""

RESULT_SETTINGS = {"max_chars", "summary_sentences", "max_keywords", "max_entities", "entity_labels", "detect_language"}
"""The NLP settings that change an analysis (and so are part of its key); batching and workers do not. The backend,
model and (transformers) aggregation are in the model's identity (:func:`enrich.nlp.analyzer_identity`): a
transformers identity starts with ``transformers:``, so switching backends never reuses the other's analyses."""

MEMORY_ENTRIES = 4_096
"""Analyses kept in memory (about 2 KB each); the store, when there is one, keeps them all."""


class AnalysisStore(Protocol):
    """Where analyses outlive the run (the crawl state); values are compressed JSON."""

    def load_analysis(self, key: bytes) -> bytes | None: ...

    def save_analysis(self, key: bytes, blob: bytes) -> None: ...


def model_identity(name: str) -> str:
    """The model's name and version (a package's, or a model folder's ``meta.json``), so that a new model misses."""
    folder = Path(name)
    if folder.is_dir():
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
            return f"{meta.get('lang')}_{meta.get('name')}@{meta.get('version')}"
        except (OSError, ValueError):
            return str(folder.resolve())
    try:
        return f"{name}@{metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return name


def _encode(result: NLPResult) -> bytes:
    data = {
        "entities": [[e.text, e.label, e.count] for e in result.entities],
        "keywords": result.keywords,
        "summary": result.summary,
        "language": result.language,
    }
    return zlib.compress(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace"), 1)


def _decode(blob: bytes) -> NLPResult:
    from enrich.nlp import NLPResult

    data = json.loads(zlib.decompress(blob))
    return NLPResult(
        entities=[Entity(text, label, count) for text, label, count in data["entities"]],
        keywords=list(data["keywords"]),
        summary=data["summary"],
        language=data["language"],
    )


class NLPCache:
    """Analyses by content. One per NLP stage.

    Args:
        config: the NLP settings; every one that changes a result is part of the key.
        model: the model's identity (:func:`model_identity`), resolved once.
        store: keeps analyses across runs; ``None`` keeps them for this run only (in memory, bounded).
        max_entries: analyses kept in memory.
    """

    def __init__(
        self, *, config: NLPConfig, model: str, store: AnalysisStore | None = None, max_entries: int = MEMORY_ENTRIES
    ) -> None:
        settings = config.model_dump(include=RESULT_SETTINGS)
        self._salt = json.dumps([ANALYZER_VERSION, model, settings], sort_keys=True).encode("utf-8")
        self._store = store
        self._max_entries = max_entries
        self._memory: OrderedDict[bytes, NLPResult] = OrderedDict()
        self._in_flight: dict[bytes, asyncio.Future[NLPResult]] = {}
        self.hits = 0
        self.misses = 0

    def key(self, text: str, language: str | None) -> bytes:
        """The cache key of analyzing ``text`` with this language hint (24 bytes of BLAKE2b)."""
        digest = hashlib.blake2b(self._salt, digest_size=24)
        digest.update(b"\0" + (language or "").encode("ascii", "replace") + b"\0")
        digest.update(text.encode("utf-8", "surrogatepass"))
        return digest.digest()

    @property
    def hit_ratio(self) -> float | None:
        total = self.hits + self.misses
        return self.hits / total if total else None

    async def get_or_analyze(self, key: bytes, analyze: Callable[[], Awaitable[NLPResult]]) -> NLPResult:
        """The analysis under ``key``: from memory, from the store, from an identical text in flight, or by
        calling ``analyze`` (and keeping its result). A failed analysis is not kept."""
        result = self._recall(key)
        if result is not None:
            self.hits += 1
            return result
        waiting = self._in_flight.get(key)
        if waiting is not None:
            self.hits += 1
            return await asyncio.shield(waiting)
        self.misses += 1
        future: asyncio.Future[NLPResult] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            result = await analyze()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it, nobody else needs to
            raise
        else:
            future.set_result(result)
            self._remember(key, result)
            if self._store is not None:
                self._store.save_analysis(key, _encode(result))
            return result
        finally:
            del self._in_flight[key]

    def _recall(self, key: bytes) -> NLPResult | None:
        result = self._memory.get(key)
        if result is not None:
            self._memory.move_to_end(key)
            return result
        if self._store is None:
            return None
        blob = self._store.load_analysis(key)
        if blob is None:
            return None
        result = _decode(blob)
        self._remember(key, result)
        return result

    def _remember(self, key: bytes, result: NLPResult) -> None:
        self._memory[key] = result
        if len(self._memory) > self._max_entries:
            self._memory.popitem(last=False)
