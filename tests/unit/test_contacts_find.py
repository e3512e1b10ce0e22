"""Contacts on one page: what is found, what is not a contact, bounded work on hostile pages, real pages."""

from __future__ import annotations

import time
import tracemalloc
from typing import TYPE_CHECKING

import pytest

from enrich.contacts import find_contacts, scan_page, social_profile
from enrich.contacts.find import MAX_ANCHORS, normalize_email, normalize_phone
from enrich.extract.decode import decode_text
from tests.conftest import build_page

if TYPE_CHECKING:
    from pathlib import Path

URL = "https://acme.example/products/widget"


def values(html: str, kind: str | None = None, *, region: str = "US") -> list[str]:
    found = find_contacts(f"<html><body>{html}</body></html>", URL, region=region)
    assert all(c.source == URL for c in found.contacts)
    return [c.value for c in found.contacts if kind is None or c.type == kind]


# --- emails ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ('<a href="mailto:Sales@Acme.example">write</a>', ["sales@acme.example"]),
        (
            '<a href="mailto:a@acme.example,b@acme.example?subject=Hi&cc=c@x.example">x</a>',
            ["a@acme.example", "b@acme.example"],
        ),
        ('<a href="mailto:%69nfo@acme.example">x</a>', ["info@acme.example"]),
        ("<p>Write to info@acme.example.</p>", ["info@acme.example"]),
        ("<p>name [at] example [dot] org</p>", ["name@example.org"]),
        ("<p>name(at)example(dot)org</p>", ["name@example.org"]),
        ("<p>jobs {at} acme {dot} example</p>", ["jobs@acme.example"]),
        ("<p>press AT acme DOT example</p>", ["press@acme.example"]),
        (
            "<p>&#105;&#110;&#102;&#111;&#64;&#97;&#99;&#109;&#101;&#46;&#101;&#120;&#97;&#109;&#112;&#108;&#101;</p>",
            ["info@acme.example"],
        ),
        ('<a href="&#109;&#97;&#105;&#108;&#116;&#111;&#58;hr&#64;acme.example">HR</a>', ["hr@acme.example"]),
        # Cloudflare's email protection: hex, XOR with the first byte
        (
            '<a href="/cdn-cgi/l/email-protection#2a43444c456a4b49474f044f524b475a464f">[email protected]</a>',
            ["info@acme.example"],
        ),
        (
            '<span class="__cf_email__" data-cfemail="2a43444c456a4b49474f044f524b475a464f">[email protected]</span>',
            ["info@acme.example"],
        ),
        ("<p>first@acme.example</p><p>First@ACME.example</p>", ["first@acme.example"]),
    ],
)
def test_emails_are_found(html: str, expected: list[str]) -> None:
    assert values(html, "email") == expected


@pytest.mark.parametrize(
    "html",
    [
        '<form><label>Email <input type="email" placeholder="you@example.com"></label></form>',
        "<form><p>e.g. jane@acme.example</p></form>",
        '<input value="someone@acme.example">',
        "<p>Contact: you@yourdomain.com</p>",
        "<p>john.doe@acme.example is how an address looks</p>",
        '<img src="logo@2x.png" srcset="logo@2x.png 2x"><p>logo@2x.png icon@3x.webp</p>',
        '<script>var dsn = "abc@o1.ingest.acme.example"</script><style>.a{b:url(x@2x.png)}</style>',
        "<pre>ssh -L 63333:localhost:5432 joe@foo.com</pre><p><code>git@github.com</code></p>",
        "<p>@acme on social media, meet us at noon</p>",
    ],
)
def test_not_emails(html: str) -> None:
    assert values(html, "email") == []


def test_normalize_email() -> None:
    assert normalize_email(" Info@Acme.Example. ") == "info@acme.example"
    assert normalize_email("a..b@acme.example") is None
    assert normalize_email("a@localhost") is None
    assert normalize_email("x" * 65 + "@acme.example") is None


# --- phone numbers --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "region", "expected"),
    [
        ('<a href="tel:+1-202-555-0143">call</a>', "US", ["+12025550143"]),
        ('<a href="tel:(202)%20555-0143;ext=12">call</a>', "US", ["+12025550143"]),
        ('<a href="tel:030 901820">Berlin</a>', "DE", ["+4930901820"]),
        ("<p>Call us: (202) 555-0143</p>", "US", ["+12025550143"]),
        ("<p>Phone 415.555.2671</p>", "US", ["+14155552671"]),
        ("<p>London office +44 20 7946 0958</p>", "US", ["+442079460958"]),
        ("<p>Telefon: 030 901820</p>", "DE", ["+4930901820"]),
        ("<p>Tel. 2025550143</p>", "US", ["+12025550143"]),  # bare digits, said to be a phone by its cue
        ("<p>Tel: 01 42 68 53 00</p>", "FR", ["+33142685300"]),
    ],
)
def test_phones_are_found_in_e164(html: str, region: str, expected: list[str]) -> None:
    assert values(html, "phone", region=region) == expected


@pytest.mark.parametrize(
    "html",
    [
        "<p>Order #2025550123 has shipped</p>",
        "<p>Order number 415-555-2671</p>",
        "<p>Invoice no. 202-555-0143</p>",
        "<p>ISBN 978-3-16-148410-0, ISBN-13: 9780306406157, ISBN 0-306-40615-2</p>",
        "<p>Price: $1,234,567.89 or 12.345,67 €</p>",
        "<p>Published 2024-01-15, updated 15.01.2024 and 01/15/2024</p>",
        "<p>Fixed in CVE-2026-116306</p>",
        "<p>INT_MIN (-2147483648)</p>",
        "<p>Tracking ID 2025550143</p>",
        "<p>2025550143</p>",
        '<a href="tel:12">short</a><a href="tel:not-a-number">x</a>',
    ],
)
def test_not_phones(html: str) -> None:
    assert values(html, "phone") == []


def test_normalize_phone() -> None:
    assert normalize_phone("+1 (202) 555-0143", "DE") == "+12025550143"
    assert normalize_phone("(202) 555-0143", "US") == "+12025550143"
    assert normalize_phone("555-0143", "US") is None
    assert normalize_phone("9" * 100, "US") is None


# --- social profiles -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://twitter.com/acme", ("x", "https://x.com/acme")),
        ("http://www.x.com/acme/?ref=footer#top", ("x", "https://x.com/acme")),
        ("https://www.linkedin.com/company/acme-inc/", ("linkedin", "https://linkedin.com/company/acme-inc")),
        ("https://de.linkedin.com/in/jane-roe-123/details", ("linkedin", "https://linkedin.com/in/jane-roe-123")),
        ("https://m.facebook.com/AcmeInc", ("facebook", "https://facebook.com/AcmeInc")),
        ("https://fb.com/AcmeInc", ("facebook", "https://facebook.com/AcmeInc")),
        ("https://www.youtube.com/@acme", ("youtube", "https://youtube.com/@acme")),
        ("https://www.youtube.com/channel/UC123/videos", ("youtube", "https://youtube.com/channel/UC123")),
        ("https://github.com/acme", ("github", "https://github.com/acme")),
        ("https://mastodon.social/@acme", ("mastodon", "https://mastodon.social/@acme")),
        ("https://twitter.com/intent/tweet?text=hi", None),
        ("https://www.facebook.com/sharer/sharer.php?u=x", None),
        ("https://www.linkedin.com/shareArticle?url=x", None),
        ("https://twitter.com/acme/status/123", None),  # a post
        ("https://github.com/python/cpython/blob/3.11/Lib/json/__init__.py", None),  # a file
        ("https://www.youtube.com/watch?v=abc", None),
        ("https://twitter.com/", None),
        ("https://nottwitter.com/acme", None),
        ("ftp://twitter.com/acme", None),
    ],
)
def test_social_profiles(url: str, expected: tuple[str, str] | None) -> None:
    assert social_profile(url) == expected


def test_social_contacts_carry_their_network_one_per_profile() -> None:
    found = find_contacts('<a href="https://twitter.com/acme">t</a><a href="https://x.com/acme">x</a>', URL)
    assert [(c.type, c.value, c.network) for c in found.contacts] == [("social", "https://x.com/acme", "x")]


# --- the site's contact pages ----------------------------------------------------------------------------------------


def test_site_pages_are_same_site_links_best_first() -> None:
    html = (
        '<a href="/team">Our people</a><a href="/about-us/">About</a><a href="https://other.example/contact">x</a>'
        '<a href="/help">Get in touch</a><a href="https://www.acme.example/impressum">Impressum</a>'
        '<a href="/blog/post">Blog</a><a href="/contact#form">Contact</a><a href="/Kontakt">Kontakt</a>'
    )
    found = find_contacts(f"<html><body>{html}</body></html>", URL)
    assert found.site_pages == [
        "https://acme.example/help",
        "https://acme.example/contact",
        "https://acme.example/Kontakt",
        "https://www.acme.example/impressum",
        "https://acme.example/about-us/",
        "https://acme.example/team",
    ]


def test_base_href_is_honoured() -> None:
    html = '<html><head><base href="https://acme.example/en/"></head><body><a href="contact">C</a></body></html>'
    assert find_contacts(html, URL).site_pages == ["https://acme.example/en/contact"]


# --- hostile input: bounded time and memory ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("".join(f'<a href="mailto:fake{i}@spam.example">x</a>' for i in range(200_000)), id="mailtos"),
        pytest.param("<p>" + "a" * 3_000_000 + "@acme.example</p>", id="megabyte-local-part"),
        pytest.param("<p>" + "a@" * 1_000_000 + "</p>", id="at-signs"),
        pytest.param("<p>" + "x [at] " * 300_000 + "</p>", id="obfuscations"),
        pytest.param("<p>" + "1" * 2_000_000 + "</p>", id="digits"),
        pytest.param("<p>" + "(202) 555-01 " * 200_000 + "</p>", id="phone-like"),
        pytest.param(f'<a href="mailto:{"b" * 5_000_000}@x.example">x</a>', id="megabyte-href"),
        pytest.param("<div>" * 100_000 + "info@acme.example", id="deep-nesting"),
    ],
)
def test_hostile_pages_cost_bounded_time_and_memory(body: str) -> None:
    html = f"<html><body>{body}</body></html>"
    tracemalloc.start()
    started = time.perf_counter()
    found = find_contacts(html, URL)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(found.contacts) <= 50
    assert elapsed < 5.0, f"{elapsed:.2f}s"
    assert peak < 300 * 1024 * 1024, f"{peak / 2**20:.0f} MiB"


def test_thousands_of_mailto_links_are_capped() -> None:
    html = "".join(f'<a href="mailto:fake{i}@spam.example">x</a>' for i in range(MAX_ANCHORS * 3))
    found = find_contacts(f"<html><body>{html}</body></html>", URL, max_contacts=10_000)
    assert len(found.contacts) == MAX_ANCHORS


# --- pages as fetched ----------------------------------------------------------------------------------------------


def test_scan_page_decodes_and_skips_what_is_not_text() -> None:
    body = '<html><head><meta charset="gb2312"></head><body><p>联系我们: 朱镕基 info@acme.example</p></body></html>'
    found = scan_page(build_page(body.encode("gbk"), "text/html", url=URL))
    assert [c.value for c in found.contacts] == ["info@acme.example"]
    text = scan_page(build_page(b"Call (202) 555-0143 or sales@acme.example", "text/plain", url=URL))
    assert [c.value for c in text.contacts] == ["sales@acme.example", "+12025550143"]
    assert scan_page(build_page(b"%PDF-1.4 info@acme.example", "application/pdf", url=URL)).contacts == []


# --- real pages (../shared/corpus) ---------------------------------------------------------------------------------


def _corpus_page(corpus_dir: Path, name: str) -> str:
    text, _ = decode_text((corpus_dir / "sites" / "postgresql" / name).read_bytes(), "text/html")
    return text


def test_real_page_authors_are_found(corpus_dir: Path) -> None:
    found = find_contacts(_corpus_page(corpus_dir, "hstore.html"), "https://docs.example/hstore.html")
    emails = ["oleg@sai.msu.su", "teodor@sigaev.ru", "andrew@tao11.riddles.org.uk"]  # the three authors, mailto links
    assert [c.value for c in found.contacts if c.type == "email"] == emails


def test_real_page_example_addresses_in_code_are_not_contacts(corpus_dir: Path) -> None:
    # "ssh ... joe@foo.com" in a command sample
    found = find_contacts(_corpus_page(corpus_dir, "ssh-tunnels.html"), "https://docs.example/ssh-tunnels.html")
    assert found.contacts == []


def test_real_pages_full_of_numbers_yield_no_phone(corpus_dir: Path) -> None:
    # release notes (CVE ids, INT_MIN, versions, dates) and the Python reference (code, tables, versions)
    pages = [
        corpus_dir / "sites" / "postgresql" / "release-15-20.html",
        *(corpus_dir / "pages" / "python").glob("*.html"),
    ]
    assert len(pages) > 30
    for path in pages:
        text, _ = decode_text(path.read_bytes(), "text/html")
        found = find_contacts(text, f"https://docs.example/{path.name}")
        assert [c.value for c in found.contacts if c.type == "phone"] == [], path.name
        # the Python pages link to source files on GitHub: repositories, not profiles
        assert [c.value for c in found.contacts if c.type == "social"] == [], path.name
