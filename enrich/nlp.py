"""The NLP stage: named entities, keywords, an extractive summary and the language of each text.

The models run off the event loop in the stage's own executor (threads by default, processes as an option), loaded
once per worker. Entities come from one of two backends (``nlp.backend``):

- ``spacy`` (default): the spaCy model pruned to ``ner`` plus the rule-based ``sentencizer``
  (:mod:`enrich.nlp_spacy`). Tagger, parser and lemmatizer are dropped; keywords come from token frequencies, which
  need no tagger. On this machine that doubles words per second over the full pipeline (see docs/benchmarks.md).
- ``transformers``: a Hugging Face token-classification model (:mod:`enrich.nlp_transformers`, the
  ``[transformers]`` extra) tags the entities; a blank spaCy pipeline gives the tokens and sentences.

Keywords, the summary and the language are computed by :class:`TextAnalyzer` alike for both, from the spaCy
tokens and sentences; only the :class:`EntityTagger` differs. Texts from concurrent pages are gathered into batches.
The executor lives in :mod:`enrich.nlp_pool`, which replaces a process pool whose worker died.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from enrich.errors import NLPError
from enrich.nlp_cache import NLPCache, model_identity
from enrich.nlp_pool import WorkerDeathError, WorkerPool
from enrich.nlp_spacy import (
    FALLBACK_MODELS,
    NEEDED_COMPONENTS,
    NEWLINE_SENTENCES,
    load_model,
    load_sentencizer,
    may_need_torch,
    register_components,
    resolve_model,
)
from enrich.record import Entity

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from spacy.language import Language
    from spacy.tokens import Doc

    from enrich.config import NLPConfig
    from enrich.nlp_cache import AnalysisStore
    from enrich.stages import WorkItem

__all__ = [
    "FALLBACK_MODELS",
    "NEEDED_COMPONENTS",
    "NEWLINE_SENTENCES",
    "EntityTagger",
    "Mention",
    "NLPResult",
    "NLPStage",
    "TextAnalyzer",
    "analyzer_identity",
    "detect_language",
    "load_model",
    "register_components",
    "resolve_model",
    "split_segments",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

SEGMENT_CHARS = 10_000
"""Long texts go to the model in segments of about this many characters, cut at line breaks, and are joined again
(``Doc.from_docs``) before entities, keywords and the summary are read. The model's working memory grows with the
tokens of the longest doc in a batch: one 100,000-character page took a worker from 180 to 780 MB; in segments it
stays flat. Entities never span a line break in extracted text, so the cut changes no entity."""


def split_segments(text: str, size: int = SEGMENT_CHARS) -> list[str]:
    """Cut a text into consecutive pieces of at most ``size`` characters (more only when a line has no space),
    preferably after a line break, else after a space; joined, the pieces are the text."""
    if len(text) <= size:
        return [text]
    pieces: list[str] = []
    start = 0
    while start < len(text):
        end = start + size
        if end < len(text):
            cut = text.rfind("\n", start + size // 2, end)
            if cut == -1:
                cut = text.rfind(" ", start + size // 2, end)
            end = cut + 1 if cut != -1 else end
        pieces.append(text[start:end])
        start = end
    return pieces


_SUMMARY_MAX_TOKENS = 60
"""Longer "sentences" are code blocks or tables run together; never summary material."""

Mention = tuple[str, str]
"""One entity mention: its text as it stands in the analyzed text, and its label in the record's scheme."""


class EntityTagger(Protocol):
    """Where entities come from when it is not the spaCy model's ``ner`` (the transformers backend)."""

    def tag(self, texts: Sequence[str]) -> list[list[Mention]]:
        """The mentions of each text, in text order; one list per text."""
        ...


def analyzer_identity(config: NLPConfig) -> str:
    """What identifies the analyses of ``config``'s backend and model in the NLP cache (blocks: it may look the
    model up). Raises :class:`NLPError` when the model is missing, so a run stops before it fetches anything."""
    if config.backend == "transformers":
        from enrich.nlp_transformers import transformers_identity

        return transformers_identity(config)
    return model_identity(resolve_model(config.model_name))


@dataclass(slots=True, frozen=True)
class NLPResult:
    """What the NLP stage adds to a record; plain data so it crosses process boundaries."""

    entities: list[Entity]
    keywords: list[str]
    summary: str | None
    language: str | None


class TextAnalyzer:
    """Turns texts into :class:`NLPResult` with one loaded model. One per worker; not shared across threads.

    Args:
        nlp: the spaCy pipeline that gives tokens and sentences (and, without ``tagger``, entities).
        config: the NLP settings.
        tagger: where entities come from instead of ``nlp``'s ``ner`` (the transformers backend).
    """

    def __init__(self, *, nlp: Language, config: NLPConfig, tagger: EntityTagger | None = None) -> None:
        self._nlp = nlp
        self._config = config
        self._tagger = tagger
        self._labels = set(config.entity_labels) if config.entity_labels else None

    @classmethod
    def from_config(cls, config: NLPConfig) -> TextAnalyzer:
        if config.backend == "transformers":
            from enrich.nlp_transformers import TransformersTagger  # deferred: torch is loaded only when chosen

            return cls(nlp=load_sentencizer(), config=config, tagger=TransformersTagger.from_config(config))
        return cls(nlp=load_model(config.model_name), config=config)

    def analyze(self, texts: list[str], languages: list[str | None]) -> list[NLPResult]:
        """Analyze a batch. ``languages`` are the declared ones; a missing one is detected."""
        from spacy.tokens import Doc

        cut = [text[: self._config.max_chars] for text in texts]
        segments: list[str] = []
        owners: list[int] = []
        for index, text in enumerate(cut):
            for segment in split_segments(text):
                segments.append(segment)
                owners.append(index)
        parts: list[list[Doc]] = [[] for _ in texts]
        for doc, owner in zip(self._nlp.pipe(segments, batch_size=self._config.batch_size), owners, strict=True):
            parts[owner].append(doc)
        docs = [part[0] if len(part) == 1 else Doc.from_docs(part, ensure_whitespace=False) for part in parts]
        if self._tagger is not None:
            mentions = self._tagger.tag(cut)  # the whole batch at once: the tagger batches it its own way
        else:
            mentions = [[(ent.text, ent.label_) for ent in doc.ents] for doc in docs]
        return [self._result(doc, lang, found) for doc, lang, found in zip(docs, languages, mentions, strict=True)]

    def _result(self, doc: Doc, language: str | None, mentions: Iterable[Mention]) -> NLPResult:
        if language is None and self._config.detect_language:
            language = detect_language(doc.text)
        freq = self._term_frequencies(doc)  # shared by keywords and summary: one pass over the tokens
        return NLPResult(
            entities=self._entities(mentions),
            keywords=[word for word, _ in freq.most_common(self._config.max_keywords)],
            summary=self._summary(doc, freq),
            language=language,
        )

    def _entities(self, mentions: Iterable[Mention]) -> list[Entity]:
        counts: Counter[tuple[str, str]] = Counter()
        for mention, label in mentions:
            if self._labels is not None and label not in self._labels:
                continue
            text = " ".join(mention.split())
            if text:
                counts[(text, label)] += 1
        # most_common keeps first-seen order among equal counts: deterministic for the same text
        return [Entity(text=t, label=lab, count=c) for (t, lab), c in counts.most_common(self._config.max_entities)]

    @staticmethod
    def _term_frequencies(doc: Doc) -> Counter[str]:
        return Counter(
            tok.lower_ for tok in doc if tok.is_alpha and not tok.is_stop and len(tok) > 2 and not tok.like_url
        )

    def _summary(self, doc: Doc, freq: Counter[str]) -> str | None:
        """The top sentences by mean term frequency, in document order."""
        wanted = self._config.summary_sentences
        if wanted == 0:
            return None
        if not freq:
            return None
        top = freq.most_common(1)[0][1]
        scored = []
        for index, sent in enumerate(doc.sents):
            terms = [tok.lower_ for tok in sent if tok.lower_ in freq]
            if len(sent) > _SUMMARY_MAX_TOKENS or len(terms) < 3 or not _is_prose(sent.text):
                continue
            score = sum(freq[t] for t in terms) / (top * len(terms))
            scored.append((score, index, " ".join(sent.text.split())))
        best: dict[str, tuple[float, int]] = {}  # a sentence repeated on the page counts once
        for score, index, text in sorted(scored, key=lambda s: (-s[0], s[1])):
            if text not in best and len(best) < wanted:
                best[text] = (score, index)
        return " ".join(sorted(best, key=lambda text: best[text][1])) or None


def _is_prose(sentence: str) -> bool:
    """A sentence a person wrote: starts with a capital or digit and ends like a sentence (not a list item,
    a heading or a fragment of code)."""
    stripped = sentence.strip()
    return bool(stripped) and (stripped[0].isupper() or stripped[0].isdigit()) and stripped[-1] in ".!?\"'”’)"


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of the text's language, or None for too little text to tell."""
    sample = text[:5000]
    if len(sample.split()) < 3:
        return None
    import py3langid  # deferred: loads a model on first use

    language: str = py3langid.classify(sample)[0]
    return language


# One analyzer per worker thread or process, built on first use by that worker (or by the fork server it came from).
_local = threading.local()

_WARM_UP_TEXT = "Ada Lovelace wrote the first program in London. It ran on the Analytical Engine."
"""Analyzed once when a worker's analyzer is built: the first call loads what ``load_model`` does not (the language
identifier's model, the pipeline's first buffers), about 0.5 CPU-s that would otherwise land in the first batch."""


def _worker_analyzer(config: NLPConfig) -> TextAnalyzer:
    """This worker's analyzer for ``config``; a worker forked from a fork server may hold one built for another
    configuration (an earlier stage's in the same process), which is replaced."""
    built: tuple[NLPConfig, TextAnalyzer] | None = getattr(_local, "analyzer", None)
    if built is not None and built[0] == config:
        return built[1]
    analyzer = TextAnalyzer.from_config(config)
    analyzer.analyze([_WARM_UP_TEXT], [None])
    _local.analyzer = (config, analyzer)
    return analyzer


def _analyze_in_worker(
    config: NLPConfig, texts: list[str], languages: list[str | None]
) -> tuple[list[NLPResult], float, float]:
    """A batch's results, the seconds the worker spent on them and the CPU-seconds its thread used: a worker
    process reports its own time to the parent with its results (what the parent measures also holds the hand-over
    to the process); wall over CPU shows a worker kept off a core by other work."""
    started, cpu_started = time.perf_counter(), time.thread_time()
    results = _worker_analyzer(config).analyze(texts, languages)
    return results, time.perf_counter() - started, time.thread_time() - cpu_started


def _init_worker(config: NLPConfig) -> None:
    """Executor initializer: each worker thread or process loads its model once, at start (idempotent)."""
    _worker_analyzer(config)


WORKER_PRELOAD = ("enrich.pipeline", "spacy")
"""What a worker process needs, imported once by the fork server (:mod:`enrich.nlp_pool`): the model's library,
and the extractors, which run in the NLP workers with ``extract.executor: process``."""


_Pending = tuple[str, "str | None", "asyncio.Future[tuple[NLPResult, float]]"]
"""A text waiting for a batch: its text, language hint, and the future of its result with its batch's seconds."""


class NLPStage:
    """Adds entities, keywords, summary and language to records that have text.

    Texts from concurrent items are gathered into batches of up to ``batch_size``: a batch is sent as soon as a
    worker is free, after waiting at most ``batch_wait_ms`` for more texts, and holds at most that worker's share of
    the queue. While every worker is busy, texts queue up, so batches grow with load and shrink when idle.

    With the process executor, a worker that dies (OOM kill, segfault) is replaced with a fresh pool and the batches
    it took down are run once more (:mod:`enrich.nlp_pool`); a batch on which a worker dies twice fails.

    Attributes:
        words: words analyzed.
        busy_s: seconds spent in batches that succeeded (as the stage waited for them).
        compute_s: seconds the workers spent in those batches (as the workers measured them).
        compute_cpu_s: CPU-seconds the workers used in those batches.
        batches: batches that succeeded.
        worker_death_errors: records that failed because worker processes died (twice on their batch, or no fresh
            pool could start).
    """

    name = "nlp"

    def __init__(self, *, config: NLPConfig, store: AnalysisStore | None = None) -> None:
        self._config = config
        self._store = store
        self.cache: NLPCache | None = None
        """Analyses by content (:mod:`enrich.nlp_cache`), kept in ``store`` across runs when one is given."""
        self._pool = WorkerPool(
            kind=config.executor,
            workers=config.workers,
            initializer=_init_worker,
            initargs=(config,),
            name=self.name,
            preload=WORKER_PRELOAD,
        )
        self._queue: asyncio.Queue[_Pending] | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._warming: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._carry: _Pending | None = None
        self.words = 0
        self.busy_s = 0.0
        self.compute_s = 0.0
        self.compute_cpu_s = 0.0
        self.batches = 0
        self.worker_death_errors = 0

    @property
    def enabled(self) -> bool:
        return self._config.enabled

    @property
    def workers(self) -> int:
        """Batches analyzed at once, for :func:`enrich.timing.utilization`."""
        return self._config.workers

    @property
    def lends_processes(self) -> bool:
        """Whether the stage runs worker processes that another stage may use (:meth:`run_in_workers`)."""
        return self._config.enabled and self._config.executor == "process"

    async def run_in_workers(self, func: Callable[..., T], *args: object) -> T:
        """``func(*args)`` in the stage's workers, queued with its batches, the workers started first if need be.

        Extraction runs here with ``extract.executor: process``: one pool and one queue for both steps keep every
        core busy with the two, and the engine's process only fetches and writes.

        Raises:
            NLPError: the stage is not open.
            WorkerDeathError: a worker process died twice on this call (:mod:`enrich.nlp_pool`).
            Exception: what starting the workers, or ``func``, raised.
        """
        if self._queue is None:
            raise NLPError("NLP stage's workers used before open()")
        await asyncio.shield(self._start_workers())
        return await self._pool.run(func, *args)

    def workers_ready(self) -> bool:
        """Whether the workers are up with their models loaded; starts them (without waiting) if not yet under way.

        Extraction asks before each page and runs in a thread of its own until they are: a model load takes seconds
        of both cores, and extraction waiting for it would leave them to it alone.
        """
        if self._queue is None:
            return False
        warming = self._start_workers()
        return warming.done() and not warming.cancelled() and warming.exception() is None

    @property
    def worker_restarts(self) -> int:
        """Fresh worker pools started after a worker process died."""
        return self._pool.restarts

    async def open(self) -> None:
        if not self._config.enabled:
            return
        # a missing model (or extra) stops the run, clearly, before anything is fetched
        identity = await asyncio.to_thread(analyzer_identity, self._config)
        self.cache = NLPCache(config=self._config, model=identity, store=self._store)
        # The workers start when the first text comes, not here: a run that analyzes nothing (a recrawl of an
        # unchanged site) never forks them. The fork server they come from starts now, its imports overlapping the
        # first fetches and extractions. A model that does not run on torch it also loads once, without torch
        # (thinc imports it whenever it is installed: 1.4 CPU-s for nothing), so the workers are born with the
        # model (imports and model about 2 CPU-s in all). A model on torch each worker loads itself: a fork of a
        # process whose torch has run hangs.
        on_torch = await asyncio.to_thread(self._may_need_torch)
        await asyncio.to_thread(self._pool.prestart, initialize=not on_torch, blocked=("torch",))
        self._queue = asyncio.Queue()
        self._dispatcher = asyncio.create_task(self._dispatch(), name="nlp-dispatch")

    def _may_need_torch(self) -> bool:
        return self._config.backend != "spacy" or may_need_torch(self._config.model_name)

    async def ready(self) -> None:
        """Wait until every worker has loaded its model (:meth:`open` starts them without waiting).

        Raises:
            Exception: what starting the workers raised.
        """
        if self._queue is None:
            return
        await asyncio.shield(self._start_workers())

    def _start_workers(self) -> asyncio.Task[None]:
        if self._warming is None:
            self._warming = asyncio.create_task(self._warm(), name="nlp-warm")
        return self._warming

    async def _warm(self) -> None:
        started = time.perf_counter()
        await self._pool.open()  # every worker loads its model now, so the first batch does not wait for it
        logger.info(
            "NLP stage ready: %d %s worker(s), %s backend, in %.1fs",
            self._config.workers,
            self._config.executor,
            self._config.backend,
            time.perf_counter() - started,
        )

    async def process(self, item: WorkItem) -> WorkItem:
        record = item.record
        if not self._config.enabled or not record.text or item.reused:
            return item
        if self._queue is None or self.cache is None:
            raise NLPError("NLP stage used before open()", url=record.url)
        text, hint = record.text, record.language
        item.nlp_key = self.cache.key(text, hint)
        started = time.perf_counter()
        batch_s: list[float] = []
        result = await self.cache.get_or_analyze(item.nlp_key, lambda: self._analyze(text, hint, batch_s))
        waited = time.perf_counter() - started
        nlp_s = min(batch_s[0], waited) if batch_s else 0.0  # a cached analysis, or an identical text's: no batch
        item.times.add("nlp", nlp_s)
        item.times.add("nlp_wait", waited - nlp_s)
        record.entities = result.entities
        record.keywords = result.keywords
        record.summary = result.summary
        record.language = record.language or result.language
        return item

    async def _analyze(self, text: str, language: str | None, batch_s: list[float]) -> NLPResult:
        """The analysis of ``text``; the seconds of the batch it ran in are appended to ``batch_s``."""
        assert self._queue is not None
        self._start_workers()
        future: asyncio.Future[tuple[NLPResult, float]] = asyncio.get_running_loop().create_future()
        await self._queue.put((text, language, future))
        result, seconds = await future
        batch_s.append(seconds)
        return result

    async def _dispatch(self) -> None:
        assert self._queue is not None
        queue = self._queue
        self._carry = await queue.get()  # the first text has started the workers: wait for them
        try:
            await asyncio.shield(self._start_workers())
        except Exception as exc:  # no worker could load the model: every text gets the error, the run goes on
            logger.error("NLP workers could not start: %s", exc, exc_info=True)
            error = NLPError(f"NLP workers could not start: {type(exc).__name__}: {exc}")
            if self._carry is not None:
                self._fail([self._carry], error)
                self._carry = None
            while True:
                self._fail([await queue.get()], error)
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(self._config.workers)
        wait_s = self._config.batch_wait_ms / 1000
        workers = self._config.workers
        while True:
            await slots.acquire()
            first = self._carry if self._carry is not None else await queue.get()
            self._carry = None
            batch, chars = [first], self._chars(first)
            # At most a worker's share of what is queued, even while the others are busy: they will be free
            # before long, and a free worker that took the whole queue would leave them idle to the end of its
            # batch (the end of a crawl is such a queue, with nothing behind it). Under load the queue is long
            # and every batch full. Smaller batches cost no CPU on pages: 96 PostgreSQL pages took the same
            # CPU-s in batches of 1, 4, 8 and 16 (docs/benchmarks.md).
            limit = min(self._config.batch_size, max(1, -(-(queue.qsize() + 1) // workers)))
            deadline = loop.time() + wait_s
            while len(batch) < limit:
                try:
                    if queue.empty():
                        remaining = deadline - loop.time()
                        if remaining <= 0:
                            break
                        pending = await asyncio.wait_for(queue.get(), remaining)
                    else:
                        pending = queue.get_nowait()
                except TimeoutError:
                    break
                if chars + self._chars(pending) > self._config.batch_chars:
                    self._carry = pending  # starts the next batch: a batch's memory follows its characters
                    break
                batch.append(pending)
                chars += self._chars(pending)
            task = asyncio.create_task(self._run(batch, slots))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _chars(self, pending: _Pending) -> int:
        return min(len(pending[0]), self._config.max_chars)

    async def _run(self, batch: list[_Pending], slots: asyncio.Semaphore) -> None:
        texts = [text for text, _, _ in batch]
        started = time.perf_counter()
        try:
            results, compute_s, compute_cpu_s = await self._pool.run(
                _analyze_in_worker, self._config, texts, [lang for _, lang, _ in batch]
            )
        except WorkerDeathError as exc:  # the pool has logged the deaths, with their exit codes
            logger.warning("NLP batch of %d failed: %s", len(batch), exc)
            self.worker_death_errors += len(batch)
            self._fail(batch, NLPError(str(exc)))
        except Exception as exc:  # a worker failure fails the batch's records, not the run
            logger.warning("NLP batch of %d failed: %s", len(batch), exc, exc_info=True)
            self._fail(batch, exc if isinstance(exc, NLPError) else NLPError(f"{type(exc).__name__}: {exc}"))
        else:
            self.busy_s += time.perf_counter() - started
            self.compute_s += compute_s
            self.compute_cpu_s += compute_cpu_s
            self.batches += 1
            self.words += sum(len(t[: self._config.max_chars].split()) for t in texts)
            for (_, _, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result((result, compute_s))
        finally:
            slots.release()

    @staticmethod
    def _fail(batch: list[_Pending], error: NLPError) -> None:
        for _, _, future in batch:
            if not future.done():
                future.set_exception(error)

    async def close(self) -> None:
        if self._warming is not None:
            await asyncio.gather(self._warming, return_exceptions=True)  # never left half started
            self._warming = None
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
            self._dispatcher = None
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        leftovers = [self._carry] if self._carry is not None else []
        self._carry = None
        while self._queue is not None and not self._queue.empty():
            leftovers.append(self._queue.get_nowait())
        self._fail(leftovers, NLPError("NLP stage closed before this text was analyzed"))
        await self._pool.close()
