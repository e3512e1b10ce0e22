"""The frontier: per-site queues and limits that decide what is fetched next, shared by both engines.

:class:`Frontier` (``core.py``) schedules; :class:`SitePolicy` (``sites.py``) decides per site; the storage
(``storage.py``) keeps queued entries behind :class:`FrontierStorage`. ``docs/architecture.md`` explains the design.
"""

from __future__ import annotations

from enrich.frontier.core import Frontier, Lease, SiteGate
from enrich.frontier.sites import BACKOFF_STATUSES, Outcome, SitePolicy, SiteState, domain_of, outcome_of
from enrich.frontier.spill import SpillCodec, SpillStore
from enrich.frontier.storage import FrontierEntry, FrontierStorage, MemoryStorage

__all__ = [
    "BACKOFF_STATUSES",
    "Frontier",
    "FrontierEntry",
    "FrontierStorage",
    "Lease",
    "MemoryStorage",
    "Outcome",
    "SiteGate",
    "SitePolicy",
    "SiteState",
    "SpillCodec",
    "SpillStore",
    "domain_of",
    "outcome_of",
]
