"""The contacts stage: each page's contacts plus its site's contact pages, fetched once per site and cached."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING

import pytest

from enrich.config import ContactsConfig, EnrichConfig
from enrich.contacts import ContactStage
from enrich.errors import FetchError, RobotsDisallowedError
from enrich.extract.stage import ExtractStage
from enrich.pipeline import build_stages, run_figures
from enrich.sinks import MemorySink
from enrich.stages import StageChain, WorkItem
from tests.conftest import build_page

if TYPE_CHECKING:
    from enrich.record import FetchedPage

SITE = "https://acme.example"


def html(body: str) -> bytes:
    return f"<html><body>{body}</body></html>".encode()


class FakeSite:
    """The fake transport of these tests: pages by URL; a URL not listed answers 404; ``refused`` raise."""

    def __init__(self, pages: dict[str, bytes], *, refused: set[str] | None = None, delay_s: float = 0.0) -> None:
        self.pages = pages
        self.refused = refused or set()
        self.delay_s = delay_s
        self.calls: Counter[str] = Counter()

    async def __call__(self, url: str) -> FetchedPage:
        self.calls[url] += 1
        await asyncio.sleep(self.delay_s)
        if url in self.refused:
            raise RobotsDisallowedError("robots.txt forbids it", url=url)
        if url not in self.pages:
            return build_page(b"not found", "text/plain", url=url, status=404)
        return build_page(self.pages[url], "text/html", url=url)


async def run(stage: ContactStage, pages: list[FetchedPage]) -> list[WorkItem]:
    await stage.open()
    try:
        return await asyncio.gather(*(stage.process(WorkItem.from_page(p, engine="test")) for p in pages))
    finally:
        await stage.close()


def contacts(item: WorkItem) -> list[tuple[str, str]]:
    return [(c.value, c.source) for c in item.record.contacts]


async def test_a_sites_contact_page_is_fetched_once_for_many_pages() -> None:
    site = FakeSite({f"{SITE}/contact": html('<a href="tel:+1-202-555-0143">call</a> sales [at] acme [dot] example')})
    page_html = html('<a href="/contact">Contact</a><a href="mailto:web@acme.example">webmaster</a>')
    pages = [build_page(page_html, url=f"{SITE}/p{i}") for i in range(40)]
    stage = ContactStage(config=ContactsConfig(enabled=True), fetch=site)
    items = await run(stage, pages)
    assert site.calls == {f"{SITE}/contact": 1}
    for i, item in enumerate(items):
        assert contacts(item) == [
            ("web@acme.example", f"{SITE}/p{i}"),
            ("+12025550143", f"{SITE}/contact"),
            ("sales@acme.example", f"{SITE}/contact"),
        ]
    assert stage.figures() == {"contact_pages_fetched": 1, "contact_page_failures": 0}


async def test_common_paths_are_tried_when_the_first_page_links_to_none() -> None:
    site = FakeSite({f"{SITE}/about": html("<p>Call (415) 555-2671</p>")})
    items = await run(ContactStage(fetch=site), [build_page(html("<p>Welcome</p>"), url=f"{SITE}/")])
    assert set(site.calls) == {f"{SITE}/contact", f"{SITE}/about"}  # /contact answers 404
    assert contacts(items[0]) == [("+14155552671", f"{SITE}/about")]


async def test_fetches_per_site_are_capped_and_sites_are_separate() -> None:
    links = "".join(f'<a href="/contact-{n}">Contact {n}</a>' for n in range(10))
    site = FakeSite({})
    stage = ContactStage(config=ContactsConfig(enabled=True, max_site_pages=3), fetch=site)
    other = "https://other.example"
    await run(stage, [build_page(html(links), url=f"{SITE}/a"), build_page(html(links), url=f"{other}/a")])
    assert sorted(site.calls) == sorted([f"{s}/contact-{n}" for s in (SITE, other) for n in range(3)])


async def test_a_page_that_is_the_contact_page_is_not_fetched_again() -> None:
    site = FakeSite({})
    page = build_page(
        html('<a href="/contact">Contact</a> <a href="mailto:hi@acme.example">x</a>'), url=f"{SITE}/contact"
    )
    other = build_page(html('<a href="/contact">Contact</a>'), url=f"{SITE}/blog")
    stage = ContactStage(fetch=site)
    await stage.open()
    try:
        first = await stage.process(WorkItem.from_page(page, engine="test"))
        second = await stage.process(WorkItem.from_page(other, engine="test"))
    finally:
        await stage.close()
    assert site.calls == {}
    assert contacts(first) == [("hi@acme.example", f"{SITE}/contact")]
    assert contacts(second) == [("hi@acme.example", f"{SITE}/contact")]


async def test_refused_and_failed_contact_pages_are_counted_not_fatal() -> None:
    site = FakeSite({}, refused={f"{SITE}/contact"})
    stage = ContactStage(fetch=site)
    page = build_page(
        html('<a href="/contact">Contact</a><a href="/about">About</a> info@acme.example'), url=f"{SITE}/"
    )
    (item,) = await run(stage, [page])
    assert item.record.error is None
    assert contacts(item) == [("info@acme.example", f"{SITE}/")]
    assert stage.figures() == {"contact_pages_fetched": 1, "contact_page_failures": 1}  # /about answered 404


async def test_a_hanging_contact_page_times_out() -> None:
    site = FakeSite({f"{SITE}/contact": html("x@acme.example")}, delay_s=30)
    stage = ContactStage(fetch=site, timeout_s=0.05)
    (item,) = await run(stage, [build_page(html('<a href="/contact">Contact</a>'), url=f"{SITE}/")])
    assert item.record.contacts == []
    assert stage.page_failures == 1


async def test_close_cancels_fetches_in_flight() -> None:
    site = FakeSite({}, delay_s=30)
    stage = ContactStage(fetch=site)
    await stage.open()
    task = asyncio.ensure_future(stage.process(WorkItem.from_page(build_page(html(""), url=f"{SITE}/"), engine="t")))
    await asyncio.sleep(0.05)
    task.cancel()
    await stage.close()  # no pending task left behind (a warning would fail the test)
    assert site.calls  # the fetches had started


async def test_without_a_fetch_each_page_is_looked_at_alone() -> None:
    (item,) = await run(ContactStage(), [build_page(html('<a href="/contact">C</a> a@acme.example'), url=f"{SITE}/")])
    assert contacts(item) == [("a@acme.example", f"{SITE}/")]


async def test_error_pages_and_missing_pages_are_left_alone() -> None:
    site = FakeSite({})
    stage = ContactStage(fetch=site)
    items = await run(stage, [build_page(html("a@acme.example"), url=f"{SITE}/gone", status=404)])
    error = WorkItem.from_error(f"{SITE}/x", FetchError("refused"), engine="t")
    await stage.open()
    await stage.process(error)
    await stage.close()
    assert items[0].record.contacts == []
    assert error.record.contacts == []
    assert site.calls == {}


async def test_records_are_capped() -> None:
    many = "".join(f'<a href="mailto:p{i}@acme.example">x</a>' for i in range(40))
    site = FakeSite({f"{SITE}/contact": html(many.replace("@acme", "@sales.acme"))})
    config = ContactsConfig(enabled=True, max_per_page=30, max_per_record=45)
    (item,) = await run(
        ContactStage(config=config, fetch=site), [build_page(html(many + '<a href="/contact">C</a>'), url=f"{SITE}/")]
    )
    assert len(item.record.contacts) == 45


async def test_old_sites_are_forgotten() -> None:
    site = FakeSite({})
    stage = ContactStage(config=ContactsConfig(enabled=True, max_sites=2), fetch=site)
    pages = [build_page(html(""), url=f"https://s{n}.example/") for n in range(5)]
    await stage.open()
    try:
        for page in pages:
            await stage.process(WorkItem.from_page(page, engine="t"))
        assert len(stage._sites) == 2
        await stage.process(WorkItem.from_page(pages[0], engine="t"))  # forgotten: its pages are fetched again
    finally:
        await stage.close()
    assert site.calls["https://s0.example/contact"] == 2


async def test_the_stage_runs_before_extraction_only_when_enabled() -> None:
    sink = MemorySink()
    off = build_stages(EnrichConfig().replace(nlp={"enabled": False}), sinks=[sink])
    assert not any(isinstance(s, ContactStage) for s in off)
    site = FakeSite({f"{SITE}/contact": html("<p>Phone: +44 20 7946 0958</p>")})
    config = EnrichConfig().replace(nlp={"enabled": False}, contacts={"enabled": True, "default_region": "gb"})
    stages = build_stages(config, sinks=[sink], contact_fetch=site)
    assert isinstance(stages[0], ContactStage)
    assert isinstance(stages[1], ExtractStage)
    async with StageChain(stages) as chain:
        page = build_page(html('<p>Hello</p><a href="/contact">Contact</a><p>Tel 020 7946 0959</p>'), url=f"{SITE}/")
        await chain.process(WorkItem.from_page(page, engine="test"))
    (record,) = sink.records
    assert [c.value for c in record.contacts] == ["+442079460959", "+442079460958"]
    assert run_figures(stages, None)["contact_pages_fetched"] == 1


@pytest.mark.parametrize("region", ["xx", "", "USA"])
def test_unknown_regions_are_refused(region: str) -> None:
    from enrich.errors import ConfigError

    with pytest.raises(ConfigError, match=r"contacts\.default_region"):
        EnrichConfig().replace(contacts={"default_region": region})


def test_a_fetch_may_wait_for_the_crawl_delay_of_the_sites_earlier_pages() -> None:
    config = EnrichConfig().replace(
        contacts={"enabled": True, "max_site_pages": 2}, politeness={"max_crawl_delay_s": 5}, fetch={"timeout_s": 10}
    )
    stage = ContactStage.from_config(config, fetch=None)
    assert stage._timeout_s == 10 + 2 * 5
