"""Crawl state: what makes a run resumable after a crash and a rerun incremental (:mod:`enrich.state.store`), and
what a recrawl does with a page it fetched before (:mod:`enrich.state.revisit`)."""

from enrich.state.admission import InputAdmission
from enrich.state.revisit import NOT_MODIFIED, fresh_item, is_page, reuse_unchanged
from enrich.state.store import Admission, CrawlState, StoredRow, body_hash

__all__ = [
    "NOT_MODIFIED",
    "Admission",
    "CrawlState",
    "InputAdmission",
    "StoredRow",
    "body_hash",
    "fresh_item",
    "is_page",
    "reuse_unchanged",
]
