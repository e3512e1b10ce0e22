"""A dead NLP worker process is replaced: the real NLP stage, real spawned workers, real signals.

The workers load a tiny spaCy pipeline (``nlp_tripwire.py``, installed for the test as a model package) that tags a
few names and kills or stalls its worker on marker words, so every death happens on a known batch. Each test spawns
three or four workers that import spaCy (~1.5 s each).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import time
from typing import TYPE_CHECKING

import pytest
from nlp_tripwire import FAIL_LOAD_ENV

from enrich.config import NLPConfig
from enrich.nlp import NLPStage
from enrich.record import Entity, Record
from enrich.stages import StageChain, WorkItem

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow

BERGEN = [Entity("Bergen", "GPE", 1)]


def stage_for(model: str, *, workers: int, batch_size: int) -> NLPStage:
    # batch_wait_ms=0: the texts of one gather() are all queued before the first batch forms, so batches are the
    # texts in order, batch_size at a time
    config = NLPConfig(
        model=model,
        executor="process",
        workers=workers,
        batch_size=batch_size,
        batch_wait_ms=0,
        detect_language=False,
    )
    return NLPStage(config=config)


def item(index: int, text: str) -> WorkItem:
    return WorkItem(record=Record(url=f"https://tripwire.example/{index}", text=text))


def wait_for_pid(flag: Path, timeout_s: float = 60.0) -> int:
    """The pid a stalled worker wrote to ``flag``; polls, the worker being another process (run it in a thread)."""
    deadline = time.monotonic() + timeout_s
    while not flag.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no worker stalled on {flag.name} in {timeout_s:.0f}s")
        time.sleep(0.02)
    return int(flag.read_text())


def restart_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "enrich.nlp_pool" and r.levelno == logging.WARNING and "started a fresh pool" in r.getMessage()
    ]


async def test_a_killed_worker_is_replaced_and_its_batches_run_again(
    tripwire_model: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two batches stall in two workers; one worker is killed, which takes the pool (and the other batch) down.
    Both batches run again in one fresh pool, and so do the texts that were waiting."""
    caplog.set_level(logging.WARNING)
    flags = [tmp_path / "a.pid", tmp_path / "b.pid"]
    texts = [f"Ferries leave Bergen at dawn. TRIPWIRE-HANG-ONCE:{flag}" for flag in flags]
    texts += [f"Ferry {n} sails from Bergen to the fjords." for n in range(4)]
    stage = stage_for(tripwire_model, workers=2, batch_size=1)
    async with StageChain([stage]) as chain:
        tasks = [asyncio.create_task(chain.process(item(i, text))) for i, text in enumerate(texts)]
        pids = [await asyncio.to_thread(wait_for_pid, flag) for flag in flags]
        assert len(set(pids)) == 2
        assert set(pids) <= {child.pid for child in multiprocessing.active_children()}
        os.kill(pids[0], signal.SIGKILL)
        items = await asyncio.gather(*tasks)
        assert stage.worker_restarts == 1  # two batches saw the pool break; one replacement
    for done in items:
        assert done.record.error is None, done.record.error
        assert done.record.entities == BERGEN
    assert stage.worker_death_errors == 0
    [warning] = restart_warnings(caplog)
    assert "exit code -9, SIGKILL" in warning
    assert multiprocessing.active_children() == []


async def test_a_text_that_kills_every_worker_fails_its_batch_and_the_run_goes_on(
    tripwire_model: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The poison text kills its worker, then the fresh worker that retries it: its batch fails with a message
    saying so, and the pool is replaced again for the texts after it. An ordinary exception is not retried."""
    caplog.set_level(logging.WARNING)
    texts = [
        "TRIPWIRE-KILL in Bergen.",  # batch 1: dies twice
        "Innocent bystander in Bergen.",
        "TRIPWIRE-RAISE in Bergen.",  # batch 2: raises, not a death
        "Bystander in Bergen.",
        "Ferries leave Bergen.",  # batches 3 and 4: fine
        "Rain falls on Bergen.",
        "Fish is sold in Bergen.",
        "Mountains surround Bergen.",
    ]
    stage = stage_for(tripwire_model, workers=1, batch_size=2)
    async with StageChain([stage]) as chain:
        items = await asyncio.gather(*(chain.process(item(i, text)) for i, text in enumerate(texts)))
    records = [done.record for done in items]
    for record in records[:2]:
        assert record.error is not None
        assert record.error.type == "NLPError"
        assert record.error.stage == "nlp"
        assert record.error.message is not None
        assert record.error.message.startswith("NLP worker process died (exit code -9, SIGKILL) twice on this batch")
        assert record.entities == []
    for record in records[2:4]:
        assert record.error is not None
        assert record.error.message == "RuntimeError: tripwire raised on purpose"
    for record in records[4:]:
        assert record.error is None, record.error
        assert record.entities == BERGEN
    assert stage.worker_restarts == 2
    assert stage.worker_death_errors == 2
    assert len(restart_warnings(caplog)) == 2
    assert multiprocessing.active_children() == []


async def test_a_pool_that_cannot_restart_fails_the_batch_and_the_next_batch_tries_again(
    tripwire_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a death, the fresh workers fail to load the model: the batch fails at once (no hang); once the model
    loads again, the next batch starts a pool and is analyzed."""
    stage = stage_for(tripwire_model, workers=1, batch_size=1)
    async with StageChain([stage]) as chain:
        await stage.ready()  # the first workers load their model before the failure is switched on
        monkeypatch.setenv(FAIL_LOAD_ENV, "1")  # inherited by workers spawned from now on
        killed = (await chain.process(item(0, "TRIPWIRE-KILL in Bergen."))).record
        monkeypatch.delenv(FAIL_LOAD_ENV)
        after = (await chain.process(item(1, "Ferries leave Bergen."))).record
    assert killed.error is not None
    assert killed.error.message is not None
    assert killed.error.message.startswith(
        "NLP worker process died (exit code -9, SIGKILL) and no fresh worker could start: BrokenProcessPool"
    )
    assert after.error is None, after.error
    assert after.entities == BERGEN
    assert stage.worker_restarts == 1
    assert stage.worker_death_errors == 1
    assert multiprocessing.active_children() == []
