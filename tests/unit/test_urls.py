"""URLs in: validation, normalization, credentials hidden, inputs read lazily, one entry per line."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import pytest

from enrich.errors import ConfigError, InvalidURLError
from enrich.urls import (
    MAX_URL_LENGTH,
    InputURL,
    iter_input_lines,
    normalize_url,
    read_text,
    read_urls,
    redact_url,
    validate_url,
)

if TYPE_CHECKING:
    from pathlib import Path


# --- validate_url -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.org/", "https://example.org/"),
        ("  http://example.org/a?b=c#d \n", "http://example.org/a?b=c#d"),
        ("HTTPS://Example.org", "HTTPS://Example.org"),
        ("https://user:secret@example.org/private", "https://example.org/private"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("http://bücher.example/", "http://bücher.example/"),
    ],
)
def test_valid_urls(url: str, expected: str) -> None:
    assert validate_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty URL"),
        ("   ", "empty URL"),
        ("ftp://example.org/file", "unsupported scheme 'ftp'"),
        ("javascript:alert(1)", "unsupported scheme 'javascript'"),
        ("example.org/page", "URL has no scheme"),
        ("http://", "URL has no host"),
        ("http:///path", "URL has no host"),
        ("http://example.org:99999/", "malformed URL"),
        ("http://example.org:0/", "URL has port 0"),
        ("http://exa mple.org/", "whitespace or control characters"),
        ("http://example.org/\x07", "whitespace or control characters"),
        ("http://[::1/", "malformed URL"),
        ("http://" + "a" * 64 + ".org/", "invalid host name"),
        ("http://example.org/" + "a" * MAX_URL_LENGTH, f"longer than {MAX_URL_LENGTH}"),
    ],
)
def test_invalid_urls(url: str, message: str) -> None:
    with pytest.raises(InvalidURLError, match=message):
        validate_url(url)


def test_invalid_url_error_never_shows_credentials() -> None:
    with pytest.raises(InvalidURLError) as excinfo:
        validate_url("https://admin:hunter2@example.org:99999/")
    assert excinfo.value.url == "https://example.org:99999/"
    assert "hunter2" not in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


# --- normalize_url ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # scheme and host case, default ports, trailing dot, empty path, fragment
        ("HTTP://Example.COM/Path", "http://example.com/Path"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443", "https://example.com/"),
        ("https://example.com:80/a", "https://example.com:80/a"),  # 80 is not https's default
        ("http://example.com:443/a", "http://example.com:443/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("http://example.com./a", "http://example.com/a"),
        ("http://example.com/a#section", "http://example.com/a"),
        ("http://example.com/a/./b/../c", "http://example.com/a/c"),
        # percent-escapes: unreserved ones decoded, case normalized, meaningful ones kept
        ("http://example.com/%7Euser/a%20b", "http://example.com/~user/a%20b"),
        ("http://example.com/%41%42c", "http://example.com/ABc"),
        ("http://example.com/a%2Fb", "http://example.com/a%2Fb"),  # an escaped slash is not a path separator
        ("http://example.com/a%2fb", "http://example.com/a%2Fb"),
        ("http://example.com/%25b", "http://example.com/%25b"),  # "%b" would be a broken escape
        ("http://example.com/?q=%25b", "http://example.com/?q=%25b"),
        ("http://example.com/?q=a%26b&r=1", "http://example.com/?q=a%26b&r=1"),  # "&" inside a value
        ("http://example.com/?q=a%3Db", "http://example.com/?q=a%3Db"),
        ("http://example.com/?q=%2B", "http://example.com/?q=%2B"),  # "+" is a space, "%2B" a plus
        ("http://example.com/caf%E9", "http://example.com/caf%E9"),  # not UTF-8: kept as sent
        ("http://example.com/café?q=é", "http://example.com/caf%C3%A9?q=%C3%A9"),
        # IDN hosts: one form whichever way they were written
        ("http://Bücher.example/", "http://xn--bcher-kva.example/"),
        ("http://xn--bcher-kva.example/", "http://xn--bcher-kva.example/"),
        ("https://例え.テスト:443/パス", "https://xn--r8jz45g.xn--zckzah/%E3%83%91%E3%82%B9"),
        # query: sorted, blank values kept, empty arguments dropped, tracking parameters removed
        ("http://example.com/?b=2&a=1", "http://example.com/?a=1&b=2"),
        ("http://example.com/?a=2&a=1", "http://example.com/?a=1&a=2"),
        ("http://example.com/?utm_source=x&b=2&a=1&fbclid=y", "http://example.com/?a=1&b=2"),
        ("http://example.com/?UTM_Medium=x", "http://example.com/"),
        ("http://example.com/?empty=&q=1", "http://example.com/?empty=&q=1"),
        ("http://example.com/?flag&q=1", "http://example.com/?flag=&q=1"),
        ("http://example.com/?=1&q=1", "http://example.com/?=1&q=1"),
        ("http://example.com/?&&q=1", "http://example.com/?q=1"),
        ("http://example.com/?", "http://example.com/"),
        # credentials and IPv6 literals
        ("http://u:p@[::1]:8080/x", "http://[::1]:8080/x"),
        ("http://[::FFFF:1]:80/", "http://[::ffff:1]/"),
    ],
)
def test_normalize_url(url: str, expected: str) -> None:
    assert normalize_url(url) == expected
    assert normalize_url(expected) == expected  # idempotent


def test_normalize_can_keep_tracking() -> None:
    url = "HTTP://Example.COM:80/a%7Eb/?utm_source=news&id=3#top"
    assert normalize_url(url) == "http://example.com/a~b/?id=3"
    assert normalize_url(url, strip_tracking=False) == "http://example.com/a~b/?id=3&utm_source=news"


def test_normalize_keeps_a_tracking_name_in_a_fragment_or_value() -> None:
    assert normalize_url("http://example.com/?q=utm_source#x?utm_source=1") == "http://example.com/?q=utm_source"
    assert normalize_url("http://example.com/?next=%26utm_source%3D1") == "http://example.com/?next=%26utm_source%3D1"


def test_normalize_rejects_invalid() -> None:
    with pytest.raises(InvalidURLError):
        normalize_url("mailto:someone@example.org")


# --- redact_url ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pw@host.example/p?q=1", "https://host.example/p?q=1"),
        ("https://user@host.example/", "https://host.example/"),
        ("https://host.example/a@b", "https://host.example/a@b"),
        ("https://host.example/?mail=a@b.org", "https://host.example/?mail=a@b.org"),
        ("https://host.example/", "https://host.example/"),
        ("https://u:p@[::1/", "[::1/"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


# --- reading inputs -----------------------------------------------------------------------------------------------


def test_text_input_skips_comments_and_blank_lines() -> None:
    text = "# urls to enrich\nhttps://a.example/\n\n   \n  # indented comment\nhttps://b.example/  \nnot a url\n"
    assert list(iter_input_lines(io.StringIO(text))) == [
        (2, "https://a.example/"),
        (6, "https://b.example/"),
        (7, "not a url"),
    ]


def test_csv_input_reads_the_named_column(tmp_path: Path) -> None:
    path = tmp_path / "input.csv"
    path.write_text('name,link\nA,https://a.example/\nB,\nC,"https://c.example/?x=1,2"\n', encoding="utf-8")
    assert list(iter_input_lines(path, column="link")) == [(2, "https://a.example/"), (4, "https://c.example/?x=1,2")]


def test_csv_missing_column_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "input.csv"
    path.write_text("name,link\nA,https://a.example/\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"CSV input has no column 'url' \(columns: name, link\)"):
        list(iter_input_lines(path))


def test_empty_csv_yields_nothing(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("", encoding="utf-8")
    assert list(iter_input_lines(path)) == []


def test_jsonl_input_reads_the_field(tmp_path: Path) -> None:
    path = tmp_path / "input.jsonl"
    path.write_text(
        '{"href": "https://a.example/", "id": 1}\n\n"https://b.example/"\n{"href": 3}\n{broken\n', encoding="utf-8"
    )
    entries = list(iter_input_lines(path, field="href"))
    assert [number for number, _ in entries] == [1, 3, 4, 5]
    assert entries[:2] == [(1, "https://a.example/"), (3, "https://b.example/")]
    urls = list(read_urls(entries))
    assert [u.valid for u in urls] == [True, True, False, False]


def test_jsonl_bad_line_error_says_why() -> None:
    entries = list(iter_input_lines(io.StringIO('{broken\n{"id": 1}\n'), fmt="jsonl"))
    first, second = read_urls(entries)
    assert first.error is not None
    assert "JSON" in str(first.error)
    assert second.error is not None
    assert "field 'url'" in str(second.error)


def test_format_follows_the_suffix(tmp_path: Path) -> None:
    for name, content in [("a.txt", "https://x.example/\n"), ("a.ndjson", '{"url": "https://x.example/"}\n')]:
        path = tmp_path / name
        path.write_text(content, encoding="utf-8")
        assert list(iter_input_lines(path)) == [(1, "https://x.example/")]


def test_missing_input_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read input"):
        list(iter_input_lines(tmp_path / "none.txt"))


def test_input_is_read_lazily() -> None:
    stream = io.StringIO("https://a.example/\n" * 1000)
    lines = iter_input_lines(stream)
    assert next(lines) == (1, "https://a.example/")
    assert stream.tell() < 1000 * 19  # not read to the end for the first entry


def test_huge_line_becomes_an_error_entry_cut_to_the_limit() -> None:
    huge = "https://example.org/" + "x" * (MAX_URL_LENGTH * 3)
    entries = list(read_text(f"https://a.example/\n{huge}\nhttps://b.example/\n"))
    assert [e.line for e in entries] == [1, 2, 3]
    bad = entries[1]
    assert not bad.valid
    assert bad.fetch_url is None
    assert len(bad.url) == MAX_URL_LENGTH
    assert isinstance(bad.error, InvalidURLError)
    assert f"longer than {MAX_URL_LENGTH}" in str(bad.error)


def test_read_urls_one_entry_per_line_and_no_credentials_in_url() -> None:
    text = (
        "https://user:secret@private.example/report\n"
        "ftp://user:secret@files.example/\n"
        "https://user:secret@bad-port.example:99999/\n"
        "http://ok.example/\n"
    )
    entries = list(read_text(text))
    assert [e.line for e in entries] == [1, 2, 3, 4]
    assert [e.valid for e in entries] == [True, False, False, True]
    for entry in entries:
        assert "secret" not in entry.url
        assert entry.error is None or "secret" not in str(entry.error)
    assert entries[0] == InputURL(
        url="https://private.example/report", line=1, fetch_url="https://user:secret@private.example/report"
    )
    assert entries[1].url == "ftp://files.example/"
    assert entries[3].fetch_url == "http://ok.example/"


def test_empty_value_gets_a_placeholder_url() -> None:
    (entry,) = read_urls([(7, "")])
    assert (entry.url, entry.line, entry.valid) == ("(empty)", 7, False)


def test_line_over_the_memory_bound_is_reported_not_read_whole() -> None:
    from enrich.urls import MAX_LINE_CHARS

    data = "http://a.test/\n" + "x" * (MAX_LINE_CHARS * 3) + "\nhttp://b.test/\n" + "y" * (MAX_LINE_CHARS + 5)
    entries = list(read_urls(iter_input_lines(io.StringIO(data))))
    assert [e.line for e in entries] == [1, 2, 3, 4]
    assert [e.valid for e in entries] == [True, False, True, False]
    assert entries[2].url == "http://b.test/"
    assert all(f"longer than {MAX_LINE_CHARS} characters" in str(e.error) for e in entries if not e.valid)
    assert all(len(e.url) < 100 for e in entries)  # the huge value itself is never carried along


def test_csv_row_over_the_field_limit_is_one_bad_entry(tmp_path: Path) -> None:
    import csv

    path = tmp_path / "urls.csv"
    path.write_text("url\nhttp://a.test/\n" + "z" * (csv.field_size_limit() + 10) + "\nhttp://b.test/\n")
    entries = list(read_urls(iter_input_lines(path)))
    assert [e.valid for e in entries] == [True, False, True]
    assert "not valid CSV" in str(entries[1].error)


def test_a_lone_surrogate_in_jsonl_input_is_repaired_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"url": "http://e.org/a"}\n{"url": "http://e.org/x\\ud800"}\n{"url": "http://e.org/b"}\n')
    entries = list(read_urls(iter_input_lines(path)))
    assert [e.url for e in entries] == ["http://e.org/a", "http://e.org/x\ufffd", "http://e.org/b"]
    assert all(e.valid for e in entries)


def test_json_or_plain_lines_read_scrapy_redis_entries() -> None:
    from enrich.urls import json_or_plain_lines, read_urls

    values = [
        "https://a.example/1",
        '{"url": "https://a.example/2", "meta": {"x": 1}, "priority": 5}',
        '{"meta": {}}',
        "{not json",
        '{"url": "https://a.example/3", "priority": "high"}',
    ]
    entries = list(read_urls(json_or_plain_lines(values)))
    assert [(e.url, e.priority, e.error is None) for e in entries[:2]] == [
        ("https://a.example/1", 0, True),
        ("https://a.example/2", 5, True),
    ]
    assert 'entry 3 has no "url" string' in str(entries[2].error)
    assert "entry 4 is not valid JSON" in str(entries[3].error)
    assert "not an integer" in str(entries[4].error)  # each bad entry is its own error record, the rest go on
