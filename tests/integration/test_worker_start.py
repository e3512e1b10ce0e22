"""How worker processes start (``enrich.nlp_pool``): forks of a fork server that imported the heavy modules once,
yet with the parent's environment of the moment, as a spawned worker would have. Real processes."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

from enrich.nlp_pool import WorkerPool

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.skipif(
    "forkserver" not in multiprocessing.get_all_start_methods(), reason="no fork server on this platform"
)

T = TypeVar("T")

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


PROBE = "webenrich_worker_probe"
_probe_at_start: bool | None = None


def _import_probe() -> None:
    """Initializer: whether the probe module could be imported when it first ran (idempotent)."""
    global _probe_at_start
    if _probe_at_start is None:
        try:
            __import__(PROBE)
        except ImportError:
            _probe_at_start = False
        else:
            _probe_at_start = True


def _probe_facts() -> tuple[bool | None, bool]:
    """What a worker says: whether its initializer could import the probe, and whether it can now."""
    try:
        __import__(PROBE)
    except ImportError:
        return _probe_at_start, False
    return _probe_at_start, True


def _torch_imported() -> bool:
    return "torch" in sys.modules


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


async def _run_prestarted(
    initializer: Callable[[], None],
    func: Callable[[], T],
    *,
    workers: int = 1,
    calls: int = 1,
    initialize: bool = True,
    blocked: tuple[str, ...] = (),
) -> list[T]:
    """``func()`` ``calls`` times in a pool whose fork server was prestarted (in a fresh interpreter: see
    :func:`_run_fresh`)."""
    pool = WorkerPool(kind="process", workers=workers, initializer=initializer, initargs=())
    pool.prestart(initialize=initialize, blocked=blocked)
    await pool.open()
    try:
        return list(await asyncio.gather(*(pool.run(func) for _ in range(calls))))
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
        "from enrich.nlp_pool import SERVER_INITIALIZER_ENV\n"
        "from test_worker_start import _note_initializer, _run_prestarted, _where_initialized\n"
        "if __name__ == '__main__':\n"
        "    seen = asyncio.run(_run_prestarted(_note_initializer, _where_initialized, workers=2, calls=8))\n"
        "    workers = {pid for pid, _, _ in seen}\n"
        "    servers = {parent for _, parent, _ in seen}\n"
        "    where = {initialized for _, _, initialized in seen}\n"
        "    print(len(servers), where == servers, not workers & where, SERVER_INITIALIZER_ENV in os.environ)\n",
    )
    # every worker found the initializer's work done by the one fork server they were forked from, and the parent's
    # environment no longer carries the initializer
    assert printed == ["1", "True", "True", "False"]


def test_a_server_prestarted_without_initializing_leaves_it_to_each_worker(tmp_path: Path) -> None:
    printed = _run_fresh(
        tmp_path,
        "import asyncio, os\n"
        "from test_worker_start import _note_initializer, _run_prestarted, _where_initialized\n"
        "if __name__ == '__main__':\n"
        "    [(pid, server, initialized)] = asyncio.run(\n"
        "        _run_prestarted(_note_initializer, _where_initialized, initialize=False)\n"
        "    )\n"
        "    print(initialized == pid, server != os.getpid())\n",
    )
    # a fork of the server all the same, which ran the initializer itself (a library on torch must not be forked
    # once it has run)
    assert printed == ["True", "True"]


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


def test_a_module_blocked_in_the_server_is_kept_from_the_initializer_only(tmp_path: Path) -> None:
    (tmp_path / f"{PROBE}.py").write_text("", encoding="utf-8")
    printed = _run_fresh(
        tmp_path,
        "import asyncio, sys\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "from test_worker_start import PROBE, _import_probe, _probe_facts, _run_prestarted\n"
        "if __name__ == '__main__':\n"
        "    [facts] = asyncio.run(_run_prestarted(_import_probe, _probe_facts, blocked=(PROBE,)))\n"
        "    print(*facts)\n",
    )
    # the server ran the initializer without the module; its workers can import it (another pool's may need it)
    assert printed == ["False", "True"]


def test_spacy_workers_never_import_torch_and_analyze_as_with_it(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="torch is not installed: nothing to keep out of the workers")
    printed = _run_fresh(
        tmp_path,
        "import asyncio, json\n"
        "from enrich.config import NLPConfig\n"
        "from enrich.nlp import NLPStage, TextAnalyzer\n"
        "from test_worker_start import _torch_imported\n"
        "TEXT = 'Ada Lovelace met Charles Babbage in London in 1833. They wrote about the Analytical Engine.'\n"
        "async def main():\n"
        "    stage = NLPStage(config=NLPConfig(executor='process', workers=1))\n"
        "    await stage.open()\n"
        "    try:\n"
        "        await stage.ready()\n"
        "        in_worker = await stage.run_in_workers(_torch_imported)\n"
        "        result = await stage._analyze(TEXT, None, [])\n"
        "    finally:\n"
        "        await stage.close()\n"
        "    here = TextAnalyzer.from_config(NLPConfig()).analyze([TEXT], [None])[0]\n"
        "    print(in_worker, _torch_imported(), result == here, bool(here.entities))\n"
        "if __name__ == '__main__':\n"
        "    asyncio.run(main())\n",
    )
    # no torch in the worker; this process imported it with spaCy (thinc does), and the results are the same
    assert printed == ["False", "True", "True", "True"]
