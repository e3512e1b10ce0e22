"""How worker processes start (``enrich.nlp_pool``): forks of a fork server that imported the heavy modules once,
yet with the parent's environment of the moment, as a spawned worker would have. Real processes."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from enrich.nlp_pool import WorkerPool

pytestmark = pytest.mark.skipif(
    "forkserver" not in multiprocessing.get_all_start_methods(), reason="no fork server on this platform"
)

ENV = "WEBENRICH_TEST_WORKER_START"
HERE = Path(__file__).resolve().parent


def _ready() -> None:
    """Initializer of the test pools: nothing to load."""


_initialized_in: int | None = None


def _note_initializer() -> None:
    """Initializer that remembers the first process it ran in (idempotent, as an initializer must be)."""
    global _initialized_in
    if _initialized_in is None:
        _initialized_in = os.getpid()


def _where_initialized() -> tuple[int, int, int | None]:
    return os.getpid(), os.getppid(), _initialized_in


def _facts() -> tuple[int, int, str | None, bool]:
    """What a worker sees: its pid, its parent's, the test's variable, and whether ``json.tool`` is imported."""
    return os.getpid(), os.getppid(), os.environ.get(ENV), "json.tool" in sys.modules


async def _facts_of_new_pool() -> tuple[int, int, str | None, bool]:
    pool = WorkerPool(kind="process", workers=1, initializer=_ready, initargs=(), preload=("json.tool",))
    await pool.open()
    try:
        return await pool.run(_facts)
    finally:
        await pool.close()


def _run_fresh(tmp_path: Path, source: str) -> list[str]:
    """Run ``source`` as a script in a fresh interpreter (whose fork server has not started) and return the words
    it printed."""
    script = tmp_path / "script.py"
    script.write_text(source, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parents[1])])}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_workers_are_forks_of_a_server_that_imported_the_preload_once(tmp_path: Path) -> None:
    # a fresh interpreter: the fork server of this one may have started already, with another preload
    printed = _run_fresh(
        tmp_path,
        "import asyncio, os, sys\n"
        "from test_worker_start import _facts_of_new_pool\n"
        "if __name__ == '__main__':\n"
        "    pid, parent, _, preloaded = asyncio.run(_facts_of_new_pool())\n"
        "    print(pid != os.getpid(), parent != os.getpid(), preloaded, 'json.tool' in sys.modules)\n",
    )
    # a worker process, not forked by its parent, with json.tool imported, which its parent never imported
    assert printed == ["True", "True", "True", "False"]


def test_a_pool_started_after_the_server_sees_the_environment_of_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "first")
    _, parent, value, _ = asyncio.run(_facts_of_new_pool())
    assert value == "first"
    # the fork server is running now, with the environment it started with
    monkeypatch.setenv(ENV, "second")
    _, parent_again, value_again, _ = asyncio.run(_facts_of_new_pool())
    assert parent_again == parent != os.getpid()  # the same fork server
    assert value_again == "second"
    monkeypatch.delenv(ENV)
    assert asyncio.run(_facts_of_new_pool())[2] is None


def test_prestart_starts_the_fork_server_and_no_worker(tmp_path: Path) -> None:
    printed = _run_fresh(
        tmp_path,
        "import asyncio, multiprocessing, os, psutil\n"
        "from enrich.nlp_pool import WorkerPool\n"
        "from test_worker_start import _facts, _ready\n"
        "async def main():\n"
        "    pool = WorkerPool(kind='process', workers=1, initializer=_ready, initargs=(), preload=('json.tool',))\n"
        "    pool.prestart()\n"
        "    servers = [p.pid for p in psutil.Process().children() if 'forkserver' in ' '.join(p.cmdline())]\n"
        "    workers = multiprocessing.active_children()\n"
        "    await pool.open()\n"
        "    try:\n"
        "        _, parent, _, preloaded = await pool.run(_facts)\n"
        "    finally:\n"
        "        await pool.close()\n"
        "    print(len(servers), len(workers), servers == [parent], preloaded)\n"
        "if __name__ == '__main__':\n"
        "    asyncio.run(main())\n",
    )
    # one fork server and no worker after prestart; the pool's worker is then a fork of that server
    assert printed == ["1", "0", "True", "True"]


def test_a_prestarted_server_runs_the_initializer_once_for_all_its_workers(tmp_path: Path) -> None:
    printed = _run_fresh(
        tmp_path,
        "import asyncio, os\n"
        "from enrich.nlp_pool import WorkerPool, SERVER_INITIALIZER_ENV\n"
        "from test_worker_start import _note_initializer, _where_initialized\n"
        "async def main():\n"
        "    pool = WorkerPool(kind='process', workers=2, initializer=_note_initializer, initargs=())\n"
        "    pool.prestart()\n"
        "    await pool.open()\n"
        "    try:\n"
        "        seen = await asyncio.gather(*(pool.run(_where_initialized) for _ in range(8)))\n"
        "    finally:\n"
        "        await pool.close()\n"
        "    workers = {pid for pid, _, _ in seen}\n"
        "    servers = {parent for _, parent, _ in seen}\n"
        "    where = {initialized for _, _, initialized in seen}\n"
        "    print(len(servers), where == servers, not workers & where, SERVER_INITIALIZER_ENV in os.environ)\n"
        "if __name__ == '__main__':\n"
        "    asyncio.run(main())\n",
    )
    # every worker found the initializer's work done by the one fork server they were forked from, and the parent's
    # environment no longer carries the initializer
    assert printed == ["1", "True", "True", "False"]


def test_without_prestart_each_worker_runs_the_initializer_itself() -> None:
    # this interpreter's fork server started long ago, or with another pool's prestart: no initializer for this pool
    async def where() -> tuple[int, int, int | None]:
        pool = WorkerPool(kind="process", workers=1, initializer=_note_initializer, initargs=())
        await pool.open()
        try:
            return await pool.run(_where_initialized)
        finally:
            await pool.close()

    pid, _, initialized = asyncio.run(where())
    assert initialized == pid
