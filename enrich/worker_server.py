"""Imported by a fork server as the first of its preload (:mod:`enrich.nlp_pool`); does nothing anywhere else.

In a fork server that :meth:`~enrich.nlp_pool.WorkerPool.prestart` launched, it runs the pool's initializer once (a
model load and a warm-up call, about 1 CPU-s), so every worker forked from the server starts with the model in memory
instead of loading its own, and a pool replaced after a worker died is up in a fraction of a second. Then it freezes
what is loaded, so that the workers' garbage collector does not copy those pages. A module of its own, imported
first: the initializer imports what it needs, with the modules it blocks kept out, and then the rest of the preload
finds them imported; run while :mod:`enrich.nlp_pool` itself is being imported, it could meet a half-imported
module.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import logging
import os
import pickle
import sys
from typing import TYPE_CHECKING

from enrich.nlp_pool import SERVER_INITIALIZER_ENV

if TYPE_CHECKING:
    from collections.abc import Iterator

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def blocked_imports(names: tuple[str, ...]) -> Iterator[None]:
    """``import name`` fails (``ImportError``) in the block for each of ``names`` not imported yet, as if the
    package were not installed; it works again afterwards."""
    blocked = [name for name in names if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # the import system's own marker for "not importable"
    try:
        yield
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def _run_initializer(payload: str) -> None:
    """A failure is only logged: each worker then runs the initializer itself, and the pool sees its failure."""
    try:
        initializer, initargs, blocked = pickle.loads(base64.b64decode(payload))  # written by our parent
        with blocked_imports(blocked):
            initializer(*initargs)
    except Exception:
        logger.warning("fork server could not run the worker initializer; each worker will", exc_info=True)
    gc.freeze()


_payload = os.environ.pop(SERVER_INITIALIZER_ENV, None)
if _payload is not None:
    _run_initializer(_payload)
