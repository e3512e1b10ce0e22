"""What both HTML backends read the same way: outgoing links, the declared language, whitespace.

One definition, so a record's ``links`` and ``language`` do not depend on ``extract.backend``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urldefrag, urljoin

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["absolute_links", "clean_text", "primary_language"]

_LINK_SCHEMES = ("http://", "https://")
_SKIPPED_HREFS = ("#", "javascript:", "mailto:", "tel:", "data:")


def absolute_links(hrefs: Iterable[str], base_url: str, base_href: str | None, limit: int) -> list[str]:
    """Absolute http(s) links without fragments, de-duplicated in document order, resolved against
    ``<base href>`` when the page has one; at most ``limit``."""
    base_url = urljoin(base_url, base_href.strip()) if base_href and base_href.strip() else base_url
    seen: dict[str, None] = {}
    if limit <= 0:
        return []
    for raw in hrefs:
        href = raw.strip()
        if not href or href.startswith(_SKIPPED_HREFS):
            continue
        try:
            absolute = urldefrag(urljoin(base_url, href)).url
        except ValueError:
            continue  # malformed href (bad IPv6 literal, bad port): not a link
        if absolute.startswith(_LINK_SCHEMES) and absolute not in seen:
            seen[absolute] = None
            if len(seen) >= limit:
                break
    return list(seen)


def primary_language(declared: str | None) -> str | None:
    """The primary subtag of a ``lang`` attribute or ``Content-Language`` value (``en-GB`` -> ``en``)."""
    primary = (declared or "").strip().lower().replace("_", "-").split("-", 1)[0]
    return primary if 2 <= len(primary) <= 3 and primary.isalpha() else None


def clean_text(value: object) -> str | None:
    """Whitespace collapsed; ``None`` for nothing or blanks."""
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None
