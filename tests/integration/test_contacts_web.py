"""Contact discovery through the async engine, on a local web of three companies (``tests/integration/companies.py``).

Each company is its own site on loopback: the records of its pages hold their own contacts and those of the
site's contact, about and team pages, each contact page fetched once per site, robots.txt obeyed.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

import pytest

from crawler.localsite import ServerThread
from enrich.record import dumps_record
from tests.integration.companies import COMPANIES, company_app
from tests.integration.test_async_engine import crawl
from tests.integration.test_cli import ENGINES, engine_flag, read_jsonl, run_cli

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from jsonschema import Draft202012Validator

    from enrich.record import Record

ACME_SITE = {
    ("phone", "+14155552671", "/contact-us"),
    ("social", "https://x.com/acmetools", "/contact-us"),
    ("social", "https://linkedin.com/company/acme-tools", "/contact-us"),
    ("phone", "+12025550143", "/contact-us"),
    ("email", "sales@acme-tools.example", "/contact-us"),
    ("social", "https://linkedin.com/in/jane-roe", "/about"),
    ("email", "john.poe@acme-tools.example", "/about"),
}
SCHMIDT_SITE = {
    ("social", "https://instagram.com/baeckerei.schmidt", "/about"),
    ("phone", "+4930901820", "/about"),
    ("email", "baeckerei@schmidt.example", "/about"),
}
NORDIC_SITE = {
    ("email", "press@nordic.example", "/people"),
    ("email", "studio@nordic.example", "/people"),
    ("social", "https://instagram.com/nordicdesign", "/people"),
    ("phone", "+46812345678", "/contact/"),
}


@contextmanager
def companies_web(hits: dict[str, Counter[str]]) -> Iterator[tuple[str, str, str]]:
    """The three companies' sites, each on its own server: their base URLs (acme, schmidt, nordic)."""
    with ExitStack() as stack:
        base = {
            name: stack.enter_context(ServerThread(company_app(pages, hits[name]))).url
            for name, pages in COMPANIES.items()
        }
        yield base["acme"], base["schmidt"], base["nordic"]


def found(record: Record, base: str) -> set[tuple[str, str, str]]:
    assert all(c.source.startswith(base) for c in record.contacts), record.contacts
    return {(c.type, c.value, c.source.removeprefix(base)) for c in record.contacts}


async def test_contacts_of_three_companies(record_validator: Draft202012Validator) -> None:
    hits = {name: Counter[str]() for name in COMPANIES}
    with companies_web(hits) as (acme, schmidt, nordic):
        urls = [
            f"{acme}/",
            *(f"{acme}/products/{n}" for n in range(1, 21)),
            f"{schmidt}/",
            f"{nordic}/",
            f"{nordic}/order/123",
        ]
        records, stats, _ = await crawl(urls, sections={"contacts": {"enabled": True}})

    assert stats.processed == len(urls)
    for record in records.values():
        assert record.error is None, record.error
        assert not list(record_validator.iter_errors(json.loads(dumps_record(record))))

    # Acme: the footer address is the page's own; the rest come from the two linked pages
    assert found(records[f"{acme}/"], acme) == {("email", "info@acme-tools.example", "/")} | ACME_SITE
    for n in range(1, 21):  # "SKU 2025550001" and "$1,299.00" are no phone numbers
        page = f"/products/{n}"
        assert found(records[acme + page], acme) == {("email", "info@acme-tools.example", page)} | ACME_SITE
    assert hits["acme"]["/contact-us"] == 1
    assert hits["acme"]["/about"] == 1

    # Schmidt links to no contact page: common paths, /contact forbidden by robots.txt and never requested
    assert found(records[f"{schmidt}/"], schmidt) == SCHMIDT_SITE
    assert hits["schmidt"]["/contact"] == 0
    assert hits["schmidt"]["/about"] == 1
    assert "secret@schmidt.example" not in json.dumps([r.to_dict() for r in records.values()])

    # Nordic: "Our people", Cloudflare-protected addresses, /contact redirected; its order page has no phone
    assert found(records[f"{nordic}/"], nordic) == NORDIC_SITE
    assert found(records[f"{nordic}/order/123"], nordic) == NORDIC_SITE
    assert (hits["nordic"]["/people"], hits["nordic"]["/contact"], hits["nordic"]["/contact/"]) == (1, 1, 1)

    # acme 2, schmidt 1 (/about), nordic 2 (/people, /contact and its redirect); schmidt's /contact refused
    assert (stats.extra["contact_pages_fetched"], stats.extra["contact_page_failures"]) == (5, 1)


async def test_contacts_off_by_default() -> None:
    hits: Counter[str] = Counter()
    with ServerThread(company_app(COMPANIES["acme"], hits)) as server:
        records, _, _ = await crawl([f"{server.url}/"])
    assert records[f"{server.url}/"].contacts == []
    assert set(hits) == {"/robots.txt", "/"}


@pytest.mark.parametrize("use_async", ENGINES)
def test_contacts_flag_in_both_engines(tmp_path: Path, use_async: bool) -> None:
    hits = {name: Counter[str]() for name in COMPANIES}
    with companies_web(hits) as (acme, schmidt, nordic):
        urls = tmp_path / "urls.txt"
        urls.write_text("".join(f"{u}\n" for u in [f"{acme}/", f"{acme}/products/1", f"{acme}/products/2",
                                                   f"{schmidt}/", f"{nordic}/order/123"]))  # fmt: skip
        out, stats_file = tmp_path / "out.jsonl", tmp_path / "stats.json"
        result = run_cli(
            "--stage", "3", engine_flag(use_async), "--no-nlp", "--contacts", "--input", str(urls),
            "--output", str(out), "--stats-file", str(stats_file), cwd=tmp_path,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    records = {r["url"]: r for r in read_jsonl(out)}

    def of(url: str, site: str) -> set[tuple[str, str, str]]:
        return {(c["type"], c["value"], c["source"].removeprefix(site)) for c in records[url]["contacts"]}

    assert of(f"{acme}/products/2", acme) == {("email", "info@acme-tools.example", "/products/2")} | ACME_SITE
    assert of(f"{schmidt}/", schmidt) == SCHMIDT_SITE
    # the order page alone links to no contact page: the common paths find /contact (redirected), not /people
    assert of(f"{nordic}/order/123", nordic) == {("phone", "+46812345678", "/contact/")}
    assert (hits["acme"]["/contact-us"], hits["acme"]["/about"], hits["schmidt"]["/contact"]) == (1, 1, 0)
    assert (hits["nordic"]["/people"], hits["nordic"]["/contact/"], hits["nordic"]["/about"]) == (0, 1, 1)
    stats = json.loads(stats_file.read_text())
    assert stats["contact_pages_fetched"] == 5  # acme 2, schmidt /about, nordic /contact and /about (404)


async def test_contact_pages_are_archived_with_the_run(tmp_path: Path) -> None:
    from tests.warcs import read_exchanges

    hits = {name: Counter[str]() for name in COMPANIES}
    with companies_web(hits) as (acme, _, nordic):
        sections = {"contacts": {"enabled": True}, "warc": {"dir": str(tmp_path / "warc")}}
        await crawl([f"{acme}/products/1", f"{nordic}/"], sections=sections)
    targets = {exchange.request.target for exchange in read_exchanges(tmp_path / "warc")}
    # each hop of a contact page is an exchange of the run, like a page's: /contact's redirect and its target too
    assert {f"{acme}/contact-us", f"{acme}/about", f"{nordic}/contact", f"{nordic}/contact/"} <= targets


async def test_a_hostile_page_costs_bounded_work_through_the_engine() -> None:
    fakes = "".join(f'<a href="mailto:fake{i}@spam.example">x</a>' for i in range(100_000))
    body = f"<html><body>{fakes}<p>{'a' * 1_000_000}@x.example {'(202) 555-01 ' * 50_000}</p></body></html>"
    page = (200, body, {})
    hits: Counter[str] = Counter()
    with ServerThread(company_app({"/": page}, hits)) as server:
        started = time.perf_counter()
        records, _, _ = await crawl(
            [f"{server.url}/"], sections={"contacts": {"enabled": True}, "fetch": {"max_response_bytes": 10_000_000}}
        )
        elapsed = time.perf_counter() - started
    record = records[f"{server.url}/"]
    assert record.error is None, record.error
    assert len(record.contacts) == 50  # contacts.max_per_page
    assert elapsed < 30, f"{elapsed:.1f}s"
