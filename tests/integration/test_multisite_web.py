"""Smoke test of ``tools/multisite_web.py``: the simulated multi-site web serves, logs, judges and bounds.

The live part starts four small sites in-process and fetches from them with urllib on loopback; the report and the
lower bound are checked on hand-made logs and specs, where the right answer is known exactly.
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import multisite_web as msw

LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str) -> tuple[int, str, dict[str, str], bytes]:
    """(status, final URL, headers, body), errors included."""
    try:
        with LOCAL.open(url, timeout=5) as response:
            return response.status, response.url, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.url, dict(exc.headers), exc.read()


SPECS = [
    msw.SiteSpec("plain", "127.0.0.10", 40, 5, redirect_rate=0.05),
    msw.SiteSpec("slow", "127.0.0.11", 6, 5, crawl_delay_s=0.2),
    msw.SiteSpec("busy", "127.0.0.12", 6, 5, "throttled", max_rps=2, redirect_rate=0),
    msw.SiteSpec("broken", "127.0.0.13", 3, 5, "always503"),
    msw.SiteSpec("gone", "127.0.0.14", 2, 0, "refused"),
]


def test_the_web_serves_logs_and_reports_what_it_saw() -> None:
    with msw.MultiSiteWeb(SPECS) as web:
        urls = web.urls("grouped")
        assert len(urls) == sum(s.pages for s in SPECS)
        assert sorted(web.urls("shuffled", seed=3)) == sorted(urls)
        pages = msw.plan(SPECS)
        ok = next(p for p in pages["plain"] if p.status == 200)
        missing = next(p for p in pages["plain"] if p.status == 404)
        redirect = next(p for p in pages["plain"] if p.status == 302)
        assert redirect.target is not None
        assert redirect.target[0] == "slow"

        status, _, _, body = get(web.base_url("plain") + ok.path)
        assert status == 200
        assert 2000 <= len(body) <= 6000
        assert b"<p>" in body
        assert get(web.base_url("plain") + missing.path)[0] == 404
        status, final, _, _ = get(web.base_url("plain") + redirect.path)
        assert (status, final) == (200, web.base_url("slow") + redirect.target[1])
        status, _, _, robots = get(web.base_url("slow") + "/robots.txt")
        assert status == 200
        assert b"Crawl-delay: 0.2" in robots
        assert b"Disallow: /private/" in robots
        assert get(web.base_url("broken") + "/p/0.html")[0] == 503
        assert get(web.base_url("broken") + "/robots.txt")[0] == 404
        with pytest.raises(urllib.error.URLError):
            get(web.base_url("gone") + "/p/0.html")
        busy = [get(web.base_url("busy") + f"/p/{i}.html") for i in range(3)]  # 2 a second are admitted
        assert [b[0] for b in busy] == [200, 200, 429]
        assert busy[2][2]["Retry-After"] == "1"
        time.sleep(0.05)  # past the 20 ms tolerance, well inside the Retry-After
        get(web.base_url("busy") + "/p/3.html")

        log = web.log()
        assert all(e.start <= e.end for e in log)
        assert [e.robots for e in log if e.path == "/robots.txt"] == [True, True]
        report = web.politeness_report(per_site_cap=8)
        assert report.sites["busy"].served_429 >= 1
        # the fourth request to "busy" came right after a 429, inside its Retry-After
        assert report.sites["busy"].retry_after_ignored >= 1
        assert any(b.startswith("busy:") and "Retry-After" in b for b in report.breaches)
        assert report.sites["slow"].robots_requests == 1
        assert report.sites["slow"].requests == 1
        assert report.sites["gone"].requests == 0
        web.reset()
        assert web.log() == []


def entry(site: str, start: float, end: float, status: int = 200, path: str = "/p/1.html") -> msw.LogEntry:
    return msw.LogEntry(site, path, status, start, end, robots=path == "/robots.txt")


def test_a_polite_sequence_has_no_breach() -> None:
    log = [
        entry("slow", 0.0, 0.01, path="/robots.txt"),
        entry("slow", 0.02, 0.03),  # right after robots.txt: not a gap between pages
        entry("slow", 0.21, 0.22),
        entry("slow", 0.40, 0.41),  # 0.19 s: within the 20 ms tolerance
        *(entry("plain", 0.0, 0.1) for _ in range(8)),  # exactly the cap in flight
        entry("plain", 0.1, 0.2),  # starts as others end: not a ninth in flight
        entry("busy", 0.0, 0.1, status=429),
        entry("busy", 0.05, 0.1),  # started before the 429 was answered
        entry("busy", 1.1, 1.2),  # after Retry-After (1 s)
    ]
    report = msw.politeness_report(log, SPECS, per_site_cap=8)
    assert report.breaches == []
    slow = report.sites["slow"]
    assert (slow.requests, slow.robots_requests, slow.short_gaps) == (3, 1, 0)
    assert slow.min_gap_s == pytest.approx(0.19)
    assert report.sites["plain"].peak_in_flight == 8
    assert report.sites["busy"].served_429 == 1


def test_every_kind_of_breach_is_reported() -> None:
    log = [
        entry("slow", 0.0, 0.01),
        entry("slow", 0.05, 0.06),
        entry("slow", 0.5, 0.51, path="/private/1.html"),
        *(entry("plain", 0.0, 0.1) for _ in range(3)),
        entry("busy", 0.0, 0.1, status=429),
        entry("busy", 0.5, 0.6),
    ]
    report = msw.politeness_report(log, SPECS, per_site_cap=2)
    assert len(report.breaches) == 4, report.breaches
    text = "\n".join(report.breaches)
    assert "slow: 1 gaps under its Crawl-delay of 0.2 s (shortest 0.050 s)" in text
    assert "slow: 1 fetches of /private/" in text
    assert "plain: 3 requests in flight (cap 2)" in text
    assert "busy: 1 requests inside a 429's Retry-After of 1 s" in text
    assert report.to_dict()["sites"]["plain"]["peak_in_flight"] == 3


def test_lower_bound_follows_the_formula() -> None:
    specs = [
        msw.SiteSpec("a", "127.0.0.10", 16, 100, redirect_rate=0, not_found_rate=0),
        msw.SiteSpec("b", "127.0.0.11", 5, 10, crawl_delay_s=0.2),
        msw.SiteSpec("c", "127.0.0.12", 9, 10, "throttled", max_rps=2),
        msw.SiteSpec("d", "127.0.0.13", 20, 50, "always503"),
        msw.SiteSpec("e", "127.0.0.14", 7, 0, "refused"),
        msw.SiteSpec("f", "f.invalid", 3, 0, "unresolvable"),
    ]
    terms = msw.lower_bound_terms(specs, per_site_cap=4, max_concurrency=1)
    assert terms["a"] == pytest.approx(4 * 0.1)  # ceil(16 / 4) waves of 100 ms
    assert terms["b"] == pytest.approx(4 * 0.2 + 0.01)  # (n - 1) Crawl-delays, then one latency
    assert terms["c"] == pytest.approx(4 * 1.0 + 0.01)  # 9 requests, 2 a second: starts in 5 windows
    assert terms["d"] == pytest.approx(0.05)  # one wave of first attempts
    assert terms["e"] == terms["f"] == 0
    assert terms["global"] == pytest.approx(16 * 0.1 + 5 * 0.01 + 9 * 0.01 + 4 * 0.05)
    assert msw.lower_bound_s(specs, 4, 1) == pytest.approx(4.01)
    assert msw.lower_bound_s(specs, 4, 1000) == pytest.approx(4.01)

    # a redirect target landing on the Crawl-delay site is one more request there; one into /private/ is not
    with_redirects = [msw.SiteSpec("a", "127.0.0.10", 100, 10, redirect_rate=0.02), *specs[1:]]
    landing = [p.target for p in msw.plan(with_redirects)["a"] if p.target is not None]
    assert landing == [("b", landing[0][1]), ("b", "/private/1.html")]
    terms = msw.lower_bound_terms(with_redirects, per_site_cap=4, max_concurrency=50)
    assert terms["b"] == pytest.approx(5 * 0.2 + 0.01)


def test_specs_stay_on_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        msw.SiteSpec("x", "10.0.0.1", 1)
    with pytest.raises(ValueError, match=r"\.invalid"):
        msw.SiteSpec("x", "example.com", 1, kind="unresolvable")
    kinds = [s.kind for s in msw.default_specs(12, 40)]
    assert kinds.count("throttled") == kinds.count("always503") == kinds.count("refused") == 1
    assert sum(s.crawl_delay_s > 0 for s in msw.default_specs(12, 40)) == 3
