"""A tiny spaCy pipeline that kills or stalls its NLP worker process on marker words, loaded as a model package.

Tests copy this file into a temporary directory as the package ``webenrich_tripwire_nlp`` (with a ``.dist-info``
beside it, so ``spacy.util.is_package`` finds it) and put that directory on ``sys.path`` before the NLP stage spawns
its workers: a spawned worker starts with its parent's ``sys.path``, and ``spacy.load`` imports the package and calls
its :func:`load`. It is not imported by the tests themselves.

Its one component is named ``ner`` (the only name the NLP stage keeps); it tags a few names and, on marker words:

- ``TRIPWIRE-KILL``: the worker kills itself with SIGKILL, every time.
- ``TRIPWIRE-RAISE``: it raises ``RuntimeError`` (an ordinary failure, not a death).
- ``TRIPWIRE-HANG-ONCE:<path>``: the first worker to meet it writes its pid to ``<path>`` and sleeps (for the test to
  kill it); once ``<path>`` exists, the text is analyzed like any other.

With ``WEBENRICH_TRIPWIRE_FAIL_LOAD`` set in the environment, loading fails: a pool started then cannot start.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc

PACKAGE = "webenrich_tripwire_nlp"
FAIL_LOAD_ENV = "WEBENRICH_TRIPWIRE_FAIL_LOAD"
NAMES = {"Bergen": "GPE", "Norway": "GPE", "Ibsen": "PERSON"}
HANG_S = 60.0
"""Long enough for any test to kill the worker; short enough that a test that fails to do so does not stall."""

_HANG = re.compile(r"TRIPWIRE-HANG-ONCE:(\S+)")
_COMPONENT = "webenrich_tripwire_ner"


def _trip(text: str) -> None:
    if "TRIPWIRE-KILL" in text:
        os.kill(os.getpid(), signal.SIGKILL)
    if "TRIPWIRE-RAISE" in text:
        raise RuntimeError("tripwire raised on purpose")
    match = _HANG.search(text)
    if match:
        flag = Path(match[1])
        if flag.exists():
            return
        partial = flag.with_name(flag.name + ".partial")
        partial.write_text(str(os.getpid()))
        partial.replace(flag)  # the test never reads a half-written pid
        time.sleep(HANG_S)


def _tripwire_ner(doc: Doc) -> Doc:
    from spacy.tokens import Span

    _trip(doc.text)
    doc.ents = [Span(doc, token.i, token.i + 1, label=NAMES[token.text]) for token in doc if token.text in NAMES]
    return doc


def load(**overrides: object) -> Language:
    """What ``spacy.load(PACKAGE)`` returns (spaCy passes vocab/disable/... overrides; none apply)."""
    if os.environ.get(FAIL_LOAD_ENV):
        raise RuntimeError("tripwire model fails to load on purpose")
    import spacy
    from spacy.language import Language

    if not Language.has_factory(_COMPONENT):
        Language.component(_COMPONENT, func=_tripwire_ner)
    nlp = spacy.blank("en")
    nlp.add_pipe(_COMPONENT, name="ner")
    return nlp
