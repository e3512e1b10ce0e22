"""The prepare stage: normalization, filters, de-duplication and the report of what was dropped."""

from __future__ import annotations

import pytest

from enrich.errors import ConfigError
from enrich.prepare import DropReason, PrepareConfig, URLPreparer


def prepare(urls: list[str], **config: object) -> tuple[list[str], URLPreparer]:
    preparer = URLPreparer(config=PrepareConfig.from_mapping(dict(config)))
    kept = list(preparer.prepare(enumerate(urls, 1)))
    return kept, preparer


def test_normalizes_and_drops_duplicates() -> None:
    kept, preparer = prepare(
        [
            "HTTP://Example.ORG:80/a?utm_source=x&id=1#top",
            "http://example.org/a?id=1",
            "https://example.org",
            "https://example.org:443/",
        ]
    )
    assert kept == ["http://example.org/a?id=1", "https://example.org/"]
    assert preparer.report.dropped == {DropReason.DUPLICATE: 2}
    assert preparer.report.read == 4
    assert preparer.report.kept == 2


def test_keeps_tracking_parameters_when_asked() -> None:
    kept, _ = prepare(["https://example.org/?utm_source=x"], strip_tracking=False)
    assert kept == ["https://example.org/?utm_source=x"]


def test_scheme_and_invalid_urls_are_dropped_with_their_reason() -> None:
    kept, preparer = prepare(
        ["ftp://example.org/file", "mailto:a@example.org", "http://", "not a url", "https://ok.org/"]
    )
    assert kept == ["https://ok.org/"]
    assert preparer.report.dropped[DropReason.SCHEME] == 2
    assert preparer.report.dropped[DropReason.INVALID] == 2


def test_https_only() -> None:
    kept, preparer = prepare(["http://example.org/", "https://example.org/"], schemes=["https"])
    assert kept == ["https://example.org/"]
    assert preparer.report.dropped == {DropReason.SCHEME: 1}


def test_domain_allow_and_deny_lists_match_subdomains() -> None:
    urls = ["https://example.org/", "https://blog.example.org/", "https://ads.example.org/", "https://other.net/"]
    kept, preparer = prepare(urls, allow_domains=["Example.org"], deny_domains=["*.ads.example.org", "ads.example.org"])
    assert kept == ["https://example.org/", "https://blog.example.org/"]
    assert preparer.report.dropped == {DropReason.DOMAIN_NOT_ALLOWED: 1, DropReason.DOMAIN_DENIED: 1}


def test_idn_domains_match_whichever_way_they_are_written() -> None:
    urls = ["https://bücher.example/a", "https://xn--bcher-kva.example/b", "https://shop.BÜCHER.example/c"]
    kept, _ = prepare(urls, allow_domains=["Bücher.example"])
    assert kept == [
        "https://xn--bcher-kva.example/a",
        "https://xn--bcher-kva.example/b",
        "https://shop.xn--bcher-kva.example/c",
    ]
    kept, _ = prepare(urls, deny_domains=["xn--bcher-kva.example"])
    assert kept == []


def test_dedup_keeps_urls_that_differ_in_meaning() -> None:
    urls = [
        "https://e.org/a%2Fb",
        "https://e.org/a/b",
        "https://e.org/%25b",
        "https://e.org/?q=a%26b",
        "https://e.org/?q=a&b",
    ]
    kept, preparer = prepare([*urls, "https://e.org/a%2fb", "https://e.org/?b=&q=a"])
    assert kept == [
        "https://e.org/a%2Fb",
        "https://e.org/a/b",
        "https://e.org/%25b",
        "https://e.org/?q=a%26b",
        "https://e.org/?b=&q=a",
    ]
    assert preparer.report.dropped == {DropReason.DUPLICATE: 2}


def test_skipped_extensions_unless_allowed() -> None:
    urls = [
        "https://e.org/site.css",
        "https://e.org/app.JS",
        "https://e.org/a.zip",
        "https://e.org/r.pdf",
        "https://e.org/f",
    ]
    kept, preparer = prepare(urls)
    assert kept == ["https://e.org/r.pdf", "https://e.org/f"]
    assert preparer.report.dropped == {DropReason.EXTENSION: 3}
    kept, _ = prepare(urls, allow_extensions=["zip"])
    assert "https://e.org/a.zip" in kept


def test_extension_is_read_from_the_path_not_the_host_or_query() -> None:
    kept, _ = prepare(["https://cdn.js/", "https://e.org/page?file=x.css"])
    assert kept == ["https://cdn.js/", "https://e.org/page?file=x.css"]


def test_report_counts_and_examples() -> None:
    _, preparer = prepare(["https://e.org/a.css"] * 5 + ["https://e.org/"] * 2)
    report = preparer.report.to_dict()
    assert report == {
        "read": 7,
        "kept": 1,
        "dropped": 6,
        "dropped_by_reason": {"extension": 5, "duplicate": 1},
        "examples": {"extension": ["https://e.org/a.css"] * 3, "duplicate": ["https://e.org/"]},
    }
    assert "extension: 5" in preparer.report.summary()


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"schemes": ["ftp"]}, "schemes: Value error, unsupported scheme(s) ftp; allowed: http, https"),
        ({"allow_domain": ["x"]}, "allow_domain: unknown key"),
        ({"deny_domains": [""]}, "deny_domains: Value error, a domain must not be empty"),
        ({"strip_tracking": "perhaps"}, "strip_tracking: Input should be a valid boolean"),
    ],
)
def test_invalid_config_names_the_key(data: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        PrepareConfig.from_mapping(data)
    assert needle in str(info.value)
