"""The NLP stage's executor, replaced when one of its worker processes dies.

A ``ProcessPoolExecutor`` whose worker dies (OOM kill, SIGKILL, a segfault in native code) is broken for good:
every later call fails with ``BrokenProcessPool``, so every later record of the run would carry an NLP error. A
death says nothing about the texts that were in flight with it (the pool kills every worker when one dies), so
:class:`WorkerPool` starts a fresh executor, warmed like the first, and runs each of those calls once more. A call on
which a worker dies twice is the likely killer and fails with :class:`WorkerDeathError`; the run goes on in a fresh
pool. Threads do not die, so a thread pool is never replaced. Kept apart from ``nlp.py``, which is about text.

Worker processes come from a fork server where the platform has one (Linux, macOS): it imports the heavy modules
(``preload``: spaCy, the extractors) once, and each worker is a fork of it, so a pool of two starts in 2.5 CPU-s
instead of 4.2 and a replacement pool in 0.4 s instead of 2.1 (``docs/benchmarks.md``). A fork server started by
:meth:`WorkerPool.prestart` also runs the pool's initializer once (a model load), so its workers are born with the
model in memory, shared until written; modules the initializer does not need can be kept out of it (``blocked``).
Never a plain fork: the parent runs an event loop (or a Twisted reactor) that must not be copied. Elsewhere, workers
are spawned.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import pickle
import signal
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar

from enrich.errors import NLPError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from concurrent.futures import Executor
    from multiprocessing.context import BaseContext

__all__ = ["WorkerDeathError", "WorkerPool"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_PRELOAD: set[str] = set()
"""Modules every pool so far asked the fork server to import; it reads them when it starts (once per process)."""

SERVER_INITIALIZER_ENV = "WEBENRICH_FORKSERVER_INITIALIZER"
"""Set only in a fork server's environment, by :meth:`WorkerPool.prestart`: the pickled initializer, its arguments
and the modules to keep out, which the server runs once as it imports :mod:`enrich.worker_server` (the first of its
preload), before it forks any worker."""

_SERVER_MODULE = "enrich.worker_server"


class WorkerDeathError(Exception):
    """A call's worker process died twice while running it, or no fresh pool could start after a death.

    Not an :class:`~enrich.errors.EnrichError`: it never leaves the NLP stage, which turns it into an ``NLPError``
    on each record of the batch and counts those records.
    """


@dataclass(eq=False, slots=True)
class _Generation:
    """One executor in the pool's life; calls that failed on it replace it only while it is still the current one."""

    executor: Executor | None
    """None when its start failed: the next call starts another."""
    death: str = "exit code unknown"
    """How its processes ended, set when it is replaced after a death."""


class WorkerPool:
    """``workers`` threads or processes, each set up by ``initializer(*initargs)``, which must be idempotent (it
    also warms every worker at start). A process pool broken by a dying worker is replaced, one replacement at a time.

    Attributes:
        restarts: fresh pools started after a worker died.
    """

    def __init__(
        self,
        *,
        kind: Literal["thread", "process"],
        workers: int,
        initializer: Callable[..., object],
        initargs: tuple[object, ...],
        name: str = "nlp",
        preload: Iterable[str] = (),
    ) -> None:
        self._kind = kind
        self._workers = workers
        self._initializer = initializer
        self._initargs = initargs
        self._name = name
        self._preload = tuple(preload)
        self._current: _Generation | None = None
        self._lock = asyncio.Lock()
        self.restarts = 0

    async def open(self) -> None:
        """Start every worker now, so the first calls do not wait for the initializer (a model load).

        Raises:
            Exception: whatever starting a worker raised (``BrokenProcessPool`` when a process initializer failed).
        """
        executor = await self._start()
        self._current = _Generation(executor)

    def prestart(self, *, initialize: bool = True, blocked: Iterable[str] = ()) -> None:
        """Start the fork server now, without any worker: it imports ``preload`` (and runs the initializer once) in
        its own process while the caller goes on (fetching, extracting), so a pool opened later only forks workers
        (that have their model already). Blocks only to launch that process; nothing to do for threads, where
        workers are spawned, or when the process's fork server runs already (an earlier pool's: its workers then
        run the initializer themselves, as they must anyway).

        Args:
            initialize: run the initializer in the server. Not for one whose library cannot be forked once it runs:
                torch's thread pools, started by a first inference, hang its forks.
            blocked: modules that cannot be imported while the server runs the initializer, for an optional import
                of a library that the initializer does not need (thinc imports torch, 1.4 CPU-s, whenever it is
                installed). Importable again afterwards, in the server and its workers.
        """
        if self._kind != "process" or process_context(self._preload).get_start_method() != "forkserver":
            return
        if not initialize:
            multiprocessing.forkserver.ensure_running()
            return
        payload = base64.b64encode(pickle.dumps((self._initializer, self._initargs, tuple(blocked)))).decode("ascii")
        with _environ_set(SERVER_INITIALIZER_ENV, payload):
            multiprocessing.forkserver.ensure_running()

    async def run(self, func: Callable[..., T], *args: object) -> T:
        """``func(*args)`` in a worker; after a worker death, once more in a fresh pool.

        Raises:
            WorkerDeathError: a worker died again on the second try, or no fresh pool could start.
            NLPError: the pool is not open.
            Exception: whatever ``func`` raised, as it raised it (never retried).
        """
        loop = asyncio.get_running_loop()
        deaths = 0
        while True:
            generation = self._current
            if generation is None:
                raise NLPError("NLP worker pool used before open() or after close()")
            if generation.executor is None:  # the last start failed: this call tries again
                await self._replace(generation)
                continue
            try:
                future = loop.run_in_executor(generation.executor, func, *args)
            except BrokenProcessPool:  # broken before this call got in: no death on this call
                await self._replace(generation)
                continue
            try:
                return await future
            except BrokenProcessPool as exc:
                deaths += 1
                await self._replace(generation)
                if deaths == 2:
                    raise WorkerDeathError(
                        f"NLP worker process died ({generation.death}) twice on this batch; its texts are not analyzed"
                    ) from exc

    async def close(self) -> None:
        """Shut the current executor down and wait for its workers; waits for a replacement under way first."""
        async with self._lock:
            generation, self._current = self._current, None
        if generation is not None and generation.executor is not None:
            await asyncio.to_thread(generation.executor.shutdown, wait=True, cancel_futures=True)

    async def _replace(self, dead: _Generation) -> None:
        """Start a fresh executor in place of ``dead``, unless another call has done so already."""
        async with self._lock:
            if self._current is not dead:
                return
            if dead.executor is not None:
                dead.death = await asyncio.to_thread(_bury, dead.executor)
            started = time.perf_counter()
            try:
                executor = await self._start()
            except Exception as exc:
                self._current = _Generation(None, death=dead.death)
                logger.error(
                    "NLP worker process died (%s) and no fresh %s pool could start",
                    dead.death,
                    self._kind,
                    exc_info=True,
                    extra={"stage": self._name},
                )
                raise WorkerDeathError(
                    f"NLP worker process died ({dead.death}) and no fresh worker could start: {type(exc).__name__}: "
                    f"{exc}"
                ) from exc
            except BaseException:  # cancelled: the next call starts a pool, close() has nothing to stop
                self._current = _Generation(None, death=dead.death)
                raise
            self._current = _Generation(executor)
            self.restarts += 1
            logger.warning(
                "NLP worker process died (%s); started a fresh pool of %d in %.1fs (restart %d)",
                dead.death,
                self._workers,
                time.perf_counter() - started,
                self.restarts,
                extra={"stage": self._name, "worker_death": dead.death},
            )

    async def _start(self) -> Executor:
        """A new executor with every worker started; shut down again if a worker fails to start."""
        executor: Executor
        if self._kind == "process":
            executor = ProcessPoolExecutor(
                self._workers,
                mp_context=process_context(self._preload),
                initializer=_with_environ,
                initargs=(dict(os.environ), self._initializer, self._initargs),
            )
        else:
            executor = ThreadPoolExecutor(
                self._workers, thread_name_prefix=self._name, initializer=self._initializer, initargs=self._initargs
            )
        loop = asyncio.get_running_loop()
        try:
            # one call per worker starts every worker now
            await asyncio.gather(
                *(loop.run_in_executor(executor, self._initializer, *self._initargs) for _ in range(self._workers))
            )
        except Exception:
            # wait: the workers of a pool that failed to start are still being stopped, and must not outlive it
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
            raise
        except BaseException:  # cancelled: no waiting now
            executor.shutdown(wait=False, cancel_futures=True)
            raise
        return executor


def process_context(preload: Iterable[str] = ()) -> BaseContext:
    """How worker processes start: forks of a fork server that has imported ``preload`` (and every module earlier
    pools asked for, while the server has not started yet), or spawned where there is no fork server."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    _PRELOAD.update(preload)
    # first: its initializer imports what it needs, and a module it blocks must not be imported before
    context.set_forkserver_preload(["__main__", _SERVER_MODULE, *sorted(_PRELOAD)])
    return context


@contextlib.contextmanager
def _environ_set(name: str, value: str) -> Iterator[None]:
    """``name=value`` in this process's environment (and so in the processes it starts) for the block only."""
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


def _with_environ(environ: dict[str, str], initializer: Callable[..., object], initargs: tuple[object, ...]) -> object:
    """Executor initializer: the parent's environment of now, then ``initializer``. A fork server's workers inherit
    its environment from when it started; a spawned worker would get the parent's at the time of the pool."""
    if os.environ != environ:
        os.environ.clear()
        os.environ.update(environ)
    return initializer(*initargs)


def _bury(executor: Executor) -> str:
    """Shut a broken executor down and say how its processes ended. Blocks: it joins them, so their exit codes
    are final."""
    # The executor's process table is private, and the only way to the exit codes; read before shutdown clears it.
    processes = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=True, cancel_futures=True)
    return _describe_exit_codes([process.exitcode for process in processes])


def _describe_exit_codes(codes: list[int | None]) -> str:
    """How a broken pool's processes ended, for messages: ``"exit code -9, SIGKILL"``.

    The executor terminates (SIGTERM) the workers that outlived the dead one, so those codes are left out unless
    every process ended that way.
    """
    known = [code for code in codes if code is not None]
    dead = [code for code in known if code != -signal.SIGTERM] or known
    if not dead:
        return "exit code unknown"
    return " / ".join(_describe_code(code) for code in sorted(set(dead)))


def _describe_code(code: int) -> str:
    if code < 0:
        try:
            return f"exit code {code}, {signal.Signals(-code).name}"
        except ValueError:
            pass
    return f"exit code {code}"
