"""What a recrawl does with a URL fetched before: one definition both engines use.

The engine sends the stored validators (:meth:`~enrich.state.store.StoredRow.conditional_headers`) with the request
to the URL that answered last time, and treats a 304 to such a request as a page (:func:`is_page`). The extraction
stage then calls :func:`reuse_unchanged`: a 304, or a body whose hash equals the stored one, reuses the stored
record with this fetch's times; a changed body goes through extraction, and the NLP cache reuses the analysis if the
extracted text did not change either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from enrich.errors import FetchError
from enrich.record import ErrorInfo
from enrich.state.store import body_hash

if TYPE_CHECKING:
    from enrich.stages import WorkItem
    from enrich.state.store import CrawlState

__all__ = ["NOT_MODIFIED", "fresh_item", "is_page", "reuse_unchanged"]

NOT_MODIFIED = 304


def is_page(status: int, *, conditional: bool) -> bool:
    """Whether an answer is a page for the stages: a 2xx, or a 304 to a conditional request we made."""
    return 200 <= status < 300 or (conditional and status == NOT_MODIFIED)


def note_response(item: WorkItem) -> None:
    """Keep what the crawl state stores for the next revisit: the validators and a hash of the body."""
    page = item.page
    if page is None:
        return
    item.etag = page.headers.get("etag")
    item.last_modified = page.headers.get("last-modified")
    if page.status != NOT_MODIFIED:
        item.body_hash = body_hash(page.body)


def reuse_unchanged(state: CrawlState, item: WorkItem) -> bool:
    """Replace the item's record by the stored one when the page did not change (304 or same body hash), keeping
    this fetch's times and marking it; ``True`` when it did (extraction and NLP then leave the item alone)."""
    page = item.page
    if page is None:
        return False
    note_response(item)
    stored = state.revisit_of(page.url)
    if stored is None:
        return False
    if page.status == NOT_MODIFIED:
        kind = "not_modified"
    elif stored.body_hash is not None and stored.body_hash == item.body_hash:
        kind = "unchanged"
    else:
        item.record.revisit = "changed"
        state.counts["changed"] += 1
        return False
    record = state.stored_record(page.url)
    fresh = item.record
    if record is None:  # cannot happen with an intact state; the URL still gets a record saying why
        error = FetchError(f"HTTP {page.status} to a conditional request, but no stored record", url=page.url)
        fresh.error = ErrorInfo.from_exception(error, "fetch")
        item.page = None
        return True
    record.fetched_at = fresh.fetched_at
    record.fetch_duration_ms = fresh.fetch_duration_ms
    record.attempts = fresh.attempts
    record.engine = fresh.engine
    record.revisit = kind
    item.etag = item.etag or stored.etag
    item.last_modified = item.last_modified or stored.last_modified
    item.record, item.page, item.reused = record, None, True
    state.counts[kind] += 1
    return True


def fresh_item(state: CrawlState, url: str, *, engine: str) -> WorkItem | None:
    """The stored record of a URL fetched less than ``max_age`` ago, marked ``fresh``."""
    from enrich.stages import WorkItem

    record = state.stored_record(url)
    if record is None:
        return None
    record.revisit = "fresh"
    record.engine = engine
    return WorkItem(record=record, reused=True)
