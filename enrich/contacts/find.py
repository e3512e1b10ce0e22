"""Contacts on one page: emails, phone numbers (E.164) and social profiles, and the site's contact pages it links to.

Pure and CPU-bound (the stage runs it in a thread). Every step is capped, so a hostile page (megabyte-long strings,
thousands of fake ``mailto:`` links) costs bounded time and memory: the HTML parsed, the links examined, the text
scanned, the phone matcher's tries and the contacts kept all have limits (the ``MAX_*`` constants).

What is not a contact: text inside forms, scripts and styles (placeholder addresses live there), addresses at
placeholder domains (``yourdomain.com``), image names (``logo@2x.png``), and number runs a phone matcher would
take that sit after an order, invoice, ISBN or account cue, or that are bare digits without a phone cue.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote, urljoin, urlsplit

import lxml.html
import phonenumbers
from lxml import etree

from enrich.contacts.social import social_profile
from enrich.extract.decode import Kind, decode_text, sniff_kind
from enrich.record import Contact

if TYPE_CHECKING:
    from enrich.record import FetchedPage

__all__ = ["COMMON_PATHS", "PageContacts", "find_contacts", "normalize_email", "normalize_phone", "scan_page"]

MAX_HTML_CHARS = 2_000_000
"""HTML past this is not parsed (contacts sit in headers, footers and contact pages, not 2 MB down)."""
MAX_ANCHORS = 5_000
"""``<a>`` elements examined per page: a page of a million fake ``mailto:`` links costs the first 5,000."""
MAX_HREF_CHARS = 2_048
"""Longer hrefs are skipped unread."""
MAX_TEXT_CHARS = 500_000
"""Visible text scanned for emails and phone numbers."""
PHONE_MAX_TRIES = 1_000
"""Candidates the phone matcher may try per page (its own bound on work; 1 MB of digits takes 0.2 s)."""
MAX_SITE_PAGE_LINKS = 10
"""Contact/about/team links kept per page, best first."""

COMMON_PATHS = ("/contact", "/about")
"""Where a site's contact pages usually are, tried when a page links to none."""

_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+\-])([A-Za-z0-9][A-Za-z0-9._%+\-]{0,63})@"
    r"((?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24})(?![A-Za-z0-9\-])"
)
_OBFUSCATED_AT = re.compile(r"\s{0,3}[\[({<]\s{0,3}(?i:at|@)\s{0,3}[\])}>]\s{0,3}|\s{1,3}AT\s{1,3}")
_OBFUSCATED_DOT = re.compile(r"\s{0,3}[\[({<]\s{0,3}(?i:dot|\.)\s{0,3}[\])}>]\s{0,3}|\s{1,3}DOT\s{1,3}")
_FILE_SUFFIXES = frozenset(
    ["png", "jpg", "jpeg", "gif", "svg", "webp", "avif", "bmp", "ico", "tif", "tiff", "heic", "css", "js", "mjs",
     "json", "xml", "pdf", "mp4", "webm", "mp3", "woff", "woff2", "ttf"]
)  # fmt: skip
_PLACEHOLDER_DOMAINS = frozenset(
    {
        "domain.com",
        "yourdomain.com",
        "yourcompany.com",
        "yoursite.com",
        "yourwebsite.com",
        "youremail.com",
        "mydomain.com",
        "email.com",
        "website.com",
        "company.com",
        "sentry.io",
    }
)
_PLACEHOLDER_LOCALS = frozenset(
    {"you", "your", "yourname", "your.name", "your-name", "youremail", "your.email", "firstname.lastname",
     "first.last", "name.surname", "john.doe", "jane.doe", "johndoe", "janedoe", "username"}
)  # fmt: skip
_NOT_TEXT = ("script", "style", "noscript", "template", "form", "textarea", "select", "svg", "head", "pre", "code")
_BLOCKS = frozenset(
    ["p", "div", "br", "li", "ul", "ol", "td", "th", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "section",
     "article", "header", "footer", "nav", "address", "dd", "dt", "dl", "blockquote", "pre", "aside", "main",
     "figure", "figcaption", "hr"]
)  # fmt: skip
_PHONE_NOT_AFTER = re.compile(
    r"(?:\b(?:order|invoice|isbn|issn|sku|tracking|account|acct|ticket|serial|iban|vat|ref|reference|case|item|"
    r"part|model|customer|ean|upc|id|cve|rfc|bug|issue|version|patch)\b[^0-9]{0,12}|#\s*|[a-z][\w.]*[-_/:]\(?)$"
)
"""Text just before a number that makes it an identifier: a cue word (order, invoice, ISBN...), a ``#``, or a word
it is glued to (``CVE-2026-116306``, ``build/2025550123``)."""
_PHONE_CUE = re.compile(r"\b(?:tel|phone|call|fax|mobile|cell|telefon|téléphone|teléfono|telefono|hotline)\b|☎|📞")
_SITE_PAGE_WORDS: tuple[tuple[int, re.Pattern[str]], ...] = (
    (0, re.compile(r"contact|kontakt|contacto|contato|contatti|get-in-touch|reach-us")),
    (1, re.compile(r"impressum|imprint|legal-notice|mentions-legales")),
    (2, re.compile(r"about|ueber-uns|uber-uns|über-uns|a-propos|qui-sommes-nous|chi-siamo|company|who-we-are")),
    (3, re.compile(r"team|people|staff|leadership|management|our-story")),
)


_ANY_SITE_PAGE_WORD = re.compile("|".join(words.pattern for _, words in _SITE_PAGE_WORDS))


@dataclass(slots=True)
class PageContacts:
    """What one page yields: its contacts in document order, and the site's contact pages it links to."""

    contacts: list[Contact] = field(default_factory=list)
    site_pages: list[str] = field(default_factory=list)
    """Same-site links to contact, imprint, about and team pages, best first (contact first)."""


class _Collector:
    def __init__(self, source: str, limit: int) -> None:
        self.source = source
        self.limit = limit
        self.found: dict[tuple[str, str], Contact] = {}

    @property
    def full(self) -> bool:
        return len(self.found) >= self.limit

    def add(self, kind: str, value: str | None, network: str | None = None) -> None:
        if value is not None and not self.full and (kind, value) not in self.found:
            self.found[(kind, value)] = Contact(type=kind, value=value, source=self.source, network=network)


def normalize_email(candidate: str) -> str | None:
    """The address in lower case if ``candidate`` is a plausible, non-placeholder email address, else ``None``."""
    candidate = candidate.strip().strip(".,;:").lower()
    match = _EMAIL.fullmatch(candidate)
    if match is None or len(candidate) > 254 or ".." in candidate:
        return None
    local, domain = match.group(1), match.group(2)
    if domain.rsplit(".", 1)[-1] in _FILE_SUFFIXES or domain in _PLACEHOLDER_DOMAINS or local in _PLACEHOLDER_LOCALS:
        return None
    return candidate


def normalize_phone(candidate: str, region: str) -> str | None:
    """``candidate`` in E.164 (``+14155552671``) if it is a valid number (national ones read in ``region``)."""
    candidate = candidate.split(";", 1)[0].strip()  # tel:+1-202-555-0143;ext=7
    if not candidate or len(candidate) > 40:
        return None
    try:
        number = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _cloudflare_email(hex_text: str) -> str | None:
    """An address hidden by Cloudflare's email protection (``data-cfemail``: XOR with the first byte)."""
    if len(hex_text) > 512:
        return None
    try:
        data = bytes.fromhex(hex_text)
    except ValueError:
        return None
    return "".join(chr(b ^ data[0]) for b in data[1:]) if data else None


def _visible_text(tree: lxml.html.HtmlElement) -> str:
    """The page's text outside forms, scripts, styles and code, block elements on lines of their own, capped."""
    for element in tree.xpath("|".join(f"//{tag}" for tag in _NOT_TEXT)):
        if element.getparent() is not None:
            element.drop_tree()
    for element in tree.iter(*_BLOCKS):  # lines around blocks: "<td>202 555 0143</td><td>7</td>" is two numbers
        element.text = "\n" + element.text if element.text else "\n"
        element.tail = "\n" + element.tail if element.tail else "\n"
    text: str = tree.text_content()
    return text[:MAX_TEXT_CHARS]


def _label(anchor: lxml.html.HtmlElement) -> str:
    """An anchor's text, words joined by ``-`` (like a path), for the page words; empty when long (not a menu)."""
    text = anchor.text_content() if len(anchor) < 20 else (anchor.text or "")
    return "-".join(text.split()).lower() if len(text) <= 60 else ""


def _site_page_rank(url: str, label: str) -> int | None:
    path = unquote(urlsplit(url).path).lower()
    for rank, words in _SITE_PAGE_WORDS:
        if words.search(path) or (label and words.search(label)):
            return rank
    return None


def _same_site(host: str | None, site_host: str) -> bool:
    if not host:
        return False
    host = host.lower()
    return host == site_host or host.removeprefix("www.") == site_host.removeprefix("www.")


def _from_anchors(tree: lxml.html.HtmlElement, base_url: str, found: _Collector, region: str) -> list[str]:
    base = tree.xpath("string(//base/@href)")
    base_url = urljoin(base_url, base.strip()) if base else base_url
    site_host = (urlsplit(base_url).hostname or "").lower()
    pages: dict[str, int] = {}
    for count, anchor in enumerate(tree.iter("a")):
        if count >= MAX_ANCHORS:
            break  # a full collector still reads on: the site's contact pages may come later
        href = (anchor.get("href") or "").strip()
        if not href or len(href) > MAX_HREF_CHARS:
            continue
        scheme = href.split(":", 1)[0].lower() if ":" in href[:12] else ""
        if scheme == "mailto":
            for address in unquote(href[7:].split("?", 1)[0]).split(","):
                found.add("email", normalize_email(address))
            continue
        if scheme in {"tel", "callto"}:
            found.add("phone", normalize_phone(unquote(href.split(":", 1)[1]), region))
            continue
        if "/cdn-cgi/l/email-protection#" in href:
            found.add("email", normalize_email(_cloudflare_email(href.rsplit("#", 1)[1]) or ""))
            continue
        external = href[:8].lower().startswith(("http://", "https://", "//"))
        label = _label(anchor)
        candidate = len(pages) < 100 and bool(
            _ANY_SITE_PAGE_WORD.search(href.lower()) or _ANY_SITE_PAGE_WORD.search(label)
        )
        if not (external or candidate):
            continue  # the common case: a relative link to some other page; no URL parsing
        try:
            absolute = urljoin(base_url, href)
            host = urlsplit(absolute).hostname
        except ValueError:
            continue
        profile = social_profile(absolute) if external else None
        if profile is not None:
            found.add("social", profile[1], profile[0])
        elif candidate and _same_site(host, site_host):
            rank = _site_page_rank(absolute, label)
            if rank is not None:
                pages.setdefault(absolute.split("#", 1)[0], rank)
    return sorted(pages, key=pages.__getitem__)[:MAX_SITE_PAGE_LINKS]


def _from_text(text: str, found: _Collector, region: str) -> None:
    if "@" in text or "at" in text.lower():
        plain = _OBFUSCATED_DOT.sub(".", _OBFUSCATED_AT.sub("@", text))
        for match in _EMAIL.finditer(plain):
            found.add("email", normalize_email(match.group(0)))
            if found.full:
                return
    matcher = phonenumbers.PhoneNumberMatcher(
        text, region, leniency=phonenumbers.Leniency.VALID, max_tries=PHONE_MAX_TRIES
    )
    for phone in matcher:
        before = text[max(0, phone.start - 40) : phone.start].lower()
        if _PHONE_NOT_AFTER.search(before):
            continue  # an order, invoice, ISBN or account number
        bare = phone.raw_string.strip("()-−. ").isdigit()  # "2025550123", "(-2147483648)": no grouping
        if bare and not _PHONE_CUE.search(before):
            continue  # a run of digits, said to be a phone number by nothing
        found.add("phone", phonenumbers.format_number(phone.number, phonenumbers.PhoneNumberFormat.E164))
        if found.full:
            return


def find_contacts(html: str, url: str, *, region: str = "US", max_contacts: int = 50) -> PageContacts:
    """The contacts of an HTML page and its links to the site's contact pages (see the module docstring).

    Args:
        html: the page, decoded.
        url: the page's URL (the ``source`` of what is found; links are resolved against it).
        region: the region of phone numbers written without a country code.
        max_contacts: contacts kept, in document order (anchors first, then text).
    """
    found = _Collector(url, max_contacts)
    html = _XML_DECLARATION.sub("", html[:MAX_HTML_CHARS], count=1)  # lxml refuses one in a str
    try:
        tree = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError):
        return PageContacts()
    for element in tree.xpath("//*[@data-cfemail]")[:MAX_ANCHORS]:
        found.add("email", normalize_email(_cloudflare_email(element.get("data-cfemail")) or ""))
    site_pages = _from_anchors(tree, url, found, region)
    if not found.full:
        _from_text(_visible_text(tree), found, region)
    return PageContacts(contacts=list(found.found.values()), site_pages=site_pages)


def scan_page(page: FetchedPage, *, region: str = "US", max_contacts: int = 50) -> PageContacts:
    """:func:`find_contacts` on a fetched page (HTML), or on its text (plain text); nothing for anything else."""
    kind, _ = sniff_kind(page.content_type, page.body)
    if kind not in (Kind.HTML, Kind.TEXT):
        return PageContacts()
    text, _ = decode_text(page.body[: MAX_HTML_CHARS * 4], page.headers.get("content-type"))
    if kind is Kind.HTML:
        return find_contacts(text, page.final_url, region=region, max_contacts=max_contacts)
    found = _Collector(page.final_url, max_contacts)
    _from_text(text[:MAX_TEXT_CHARS], found, region)
    return PageContacts(contacts=list(found.found.values()))
