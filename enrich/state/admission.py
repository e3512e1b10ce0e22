"""Admission of input lines, the one rule both engines follow with or without a crawl state.

With a crawl state, :meth:`CrawlState.admit` decides (new, resumed, revisit, fresh, done, duplicate). Without one,
a URL read before in this run is a duplicate and is skipped: one record per URL, in either engine (Scrapy mode
wrote a repeated line twice). Duplicates are counted for the run's ``duplicates_skipped``.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING

from enrich.state.store import Admission

if TYPE_CHECKING:
    from enrich.state.store import CrawlState, StoredRow

__all__ = ["MAX_SEEN_URLS", "InputAdmission"]

logger = logging.getLogger(__name__)

MAX_SEEN_URLS = 200_000
"""Distinct URLs remembered without a crawl state: 8-byte digests, about 15 MB at most. Past this many the input is
expected to come de-duplicated (stage 2 does it) and later repeats are fetched again, with one warning."""


class InputAdmission:
    """Decides what an engine does with each input URL (see the module docstring).

    Args:
        state: the job's crawl state, or ``None`` for a run without one.
        max_seen: distinct URLs remembered without a state.
    """

    def __init__(self, state: CrawlState | None = None, *, max_seen: int = MAX_SEEN_URLS) -> None:
        self.state = state
        self.max_seen = max_seen
        self.duplicates = 0
        """Input entries skipped because the same URL came earlier in the run."""
        self._seen: set[bytes] = set()

    def admit(self, url: str, *, priority: int = 0) -> tuple[Admission, StoredRow | None]:
        """What to do with ``url``; only :attr:`Admission.fetch` kinds are fetched, ``FRESH`` is written from the
        state, the rest are skipped."""
        if self.state is not None:
            kind, stored = self.state.admit(url, priority=priority)
        else:
            kind, stored = (Admission.DUPLICATE if self._repeated(url) else Admission.NEW), None
        if kind is Admission.DUPLICATE:
            self.duplicates += 1
        return kind, stored

    def _repeated(self, url: str) -> bool:
        digest = hashlib.blake2b(url.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        if digest in self._seen:
            return True
        if len(self._seen) < self.max_seen:
            self._seen.add(digest)
            if len(self._seen) == self.max_seen:
                logger.warning("%d distinct URLs seen: later repeated entries are not detected", self.max_seen)
        return False
