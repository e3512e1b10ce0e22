"""A local web of three small companies, each its own site on loopback, with contact pages in different layouts.

- **Acme Tools** links its contact and about pages from every page; its contact page has an ``<address>`` block,
  a ``tel:`` link, an obfuscated address, social links and a form with placeholder addresses.
- **Bäckerei Schmidt** links to none: its about page is found at a common path, an address written in HTML
  entities and a phone number in a table; its robots.txt forbids ``/contact``, which holds a secret address.
- **Nordic Design** calls its team page "Our people", hides its address behind Cloudflare's email protection,
  redirects ``/contact`` to ``/contact/``, and has an order page full of numbers that are not phone numbers.

Every server counts the requests per path, so tests can check that each contact page was fetched once per site.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from collections import Counter
    from collections.abc import Callable

Page = tuple[int, str, dict[str, str]]


def _page(body: str, status: int = 200, **headers: str) -> Page:
    return status, f"<!DOCTYPE html><html><head><title>t</title></head><body>{body}</body></html>", headers


def _entities(text: str) -> str:
    return "".join(f"&#{ord(c)};" for c in text)


def _cf(address: str, key: int = 0x5A) -> str:
    return bytes([key, *(ord(c) ^ key for c in address)]).hex()


ACME_NAV = '<nav><a href="/">Home</a> <a href="/contact-us">Contact us</a> <a href="/about">About</a></nav>'
ACME_FOOTER = '<footer>© Acme Tools · <a href="mailto:info@acme-tools.example">info@acme-tools.example</a></footer>'

ACME: dict[str, Page] = {
    "/": _page(f"{ACME_NAV}<h1>Acme Tools</h1><p>Hammers since 1921.</p>{ACME_FOOTER}"),
    **{
        f"/products/{n}": _page(f"{ACME_NAV}<h1>Hammer {n}</h1><p>Only $1,299.00. SKU 2025550{n:03d}.</p>{ACME_FOOTER}")
        for n in range(1, 21)
    },
    "/contact-us": _page(
        f"{ACME_NAV}<h1>Contact</h1>"
        "<address>Acme Tools Inc.<br>1 Main St, Springfield<br>Phone: (202) 555-0143<br>"
        "Sales: sales [at] acme-tools [dot] example</address>"
        '<p>Support line: <a href="tel:+1-415-555-2671">call us</a></p>'
        '<p><a href="https://twitter.com/acmetools">Twitter</a> '
        '<a href="https://www.linkedin.com/company/acme-tools/">LinkedIn</a> '
        '<a href="https://twitter.com/intent/tweet?text=I+love+Acme">Share</a></p>'
        '<form><label>Your email <input type="email" placeholder="you@example.com"></label>'
        "<p>We reply from noreply@acme-tools.example</p></form>"
        f"{ACME_FOOTER}"
    ),
    "/about": _page(
        f"{ACME_NAV}<h1>About us</h1><ul>"
        '<li>Jane Roe, CEO <a href="https://www.linkedin.com/in/jane-roe/">LinkedIn</a></li>'
        '<li>John Poe, CTO <a href="mailto:john.poe@acme-tools.example">email</a></li></ul>'
        '<img src="/img/team@2x.png" alt="team@2x.png">'
        f"{ACME_FOOTER}"
    ),
}

SCHMIDT: dict[str, Page] = {
    "/robots.txt": (200, "User-agent: *\nDisallow: /contact\n", {"Content-Type": "text/plain"}),
    "/": _page("<h1>Bäckerei Schmidt</h1><p>Brot und Brötchen, täglich frisch seit 1950.</p>"),
    "/about": _page(
        "<h1>Über uns</h1><table><tr><th>Inhaber</th><td>Karl Schmidt</td></tr>"
        "<tr><th>Telefon</th><td>+49 30 901820</td></tr>"
        "<tr><th>E-Mail</th><td>" + _entities("baeckerei@") + "schmidt.example</td></tr>"
        "<tr><th>Gegründet</th><td>15.01.1950</td></tr></table>"
        '<p><a href="https://www.instagram.com/baeckerei.schmidt/">Instagram</a></p>'
    ),
    "/contact": _page("<p>secret@schmidt.example</p>"),
}

NORDIC: dict[str, Page] = {
    "/": _page(
        '<h1>Nordic Design</h1><p><a href="/people">Our people</a> · <a href="/contact">Kontakt</a> · '
        '<a href="/order/123">Your order</a></p>'
    ),
    "/people": _page(
        "<h1>The studio</h1>"
        '<p>Write to <a href="/cdn-cgi/l/email-protection#'
        + _cf("studio@nordic.example")
        + '">[email protected]</a> or <span class="__cf_email__" data-cfemail="'
        + _cf("press@nordic.example")
        + '">[email protected]</span></p>'
        '<p><a href="https://www.instagram.com/nordicdesign">Instagram</a> '
        '<a href="https://github.com/nordic-design/website">Source of this site</a></p>'
    ),
    "/contact": (301, "", {"Location": "/contact/"}),
    "/contact/": _page("<p>Studio phone: +46 8 123 456 78</p>"),
    "/order/123": _page(
        "<h1>Thank you!</h1><p>Order #2025550123, placed 2024-01-15. Invoice 415-555-2671.</p>"
        "<p>Book: ISBN 978-3-16-148410-0, $1,234.56.</p>"
    ),
}

COMPANIES = {"acme": ACME, "schmidt": SCHMIDT, "nordic": NORDIC}


def company_app(pages: dict[str, Page], hits: Counter[str]) -> Callable[[], web.Application]:
    """An app factory serving ``pages`` (404 elsewhere), counting requests per path in ``hits``."""

    def factory() -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            hits[request.path] += 1
            if request.path not in pages:
                return web.Response(status=404, text="not found")
            status, body, headers = pages[request.path]
            content_type = headers.get("Content-Type", "text/html; charset=utf-8")
            return web.Response(status=status, body=body.encode(), headers={**headers, "Content-Type": content_type})

        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", handle)
        return app

    return factory
