"""Imported by a fork server as the last of its preload (:mod:`enrich.nlp_pool`); does nothing anywhere else.

In a fork server that :meth:`~enrich.nlp_pool.WorkerPool.prestart` launched, it runs the pool's initializer once (a
model load, about 1 CPU-s), so every worker forked from the server starts with the model in memory instead of
loading its own, and a pool replaced after a worker died is up in a fraction of a second. Then it freezes what is
loaded, so that the workers' garbage collector does not copy those pages. A separate module, and imported last,
because the initializer may import anything: run while :mod:`enrich.nlp_pool` itself is being imported, it could
meet a half-imported module.
"""

from __future__ import annotations

import base64
import gc
import logging
import os
import pickle

from enrich.nlp_pool import SERVER_INITIALIZER_ENV

logger = logging.getLogger(__name__)


def _run_initializer(payload: str) -> None:
    """A failure is only logged: each worker then runs the initializer itself, and the pool sees its failure."""
    try:
        initializer, initargs = pickle.loads(base64.b64decode(payload))  # written by our parent
        initializer(*initargs)
    except Exception:
        logger.warning("fork server could not run the worker initializer; each worker will", exc_info=True)
    gc.freeze()


_payload = os.environ.pop(SERVER_INITIALIZER_ENV, None)
if _payload is not None:
    _run_initializer(_payload)
