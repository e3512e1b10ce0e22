"""Charset labels read as browsers read them (WHATWG Encoding), on pages encoded with Python's codecs.

Every page here uses a character its label's strict standard lacks but the encoding browsers apply has (GBK in a
"gb2312" page, an NEC circled digit in a "shift_jis" page, a windows-949 syllable in an "euc-kr" page, curly quotes
in an "iso-8859-1" page): the bytes no longer fit the label read literally, and short pages then went to a
statistical guess that got them wrong.
"""

from __future__ import annotations

import pytest

from enrich.extract import extract_page
from enrich.extract.decode import declared_encodings, decode_text
from tests.conftest import build_page


def page(text: str, label: str, codec: str, *, meta: str = "charset") -> bytes:
    declaration = {
        "charset": f'<meta charset="{label}">',
        "http-equiv": f'<meta http-equiv="Content-Type" content="text/html; charset={label}">',
        "xml": f'<?xml version="1.0" encoding="{label}"?>',
        "none": "",
    }[meta]
    head = f"{declaration}<html><head>" if meta == "xml" else f"<html><head>{declaration}"
    return f"{head}<title>t</title></head><body>{text}</body></html>".encode(codec)


# Each text: the label read as Python alone reads it gets it wrong (asserted below), as browsers read it right.
CASES = [
    # two lines, "镕" (the rong of Zhu Rongji) is GBK-only: this page came out as Big5 mojibake
    pytest.param("<p>镕</p>\n<p>好</p>", "gb2312", "gbk", "gb18030", id="gb2312-with-gbk-char"),
    pytest.param("欢迎光临\n镕金", "GB2312", "gbk", "gb18030", id="gb2312-upper-case-label"),
    pytest.param("①会議室の予約～", "shift_jis", "cp932", "cp932", id="shift_jis-with-nec-char"),
    pytest.param("髙橋さん①", "x-sjis", "cp932", "cp932", id="x-sjis-with-ibm-char"),
    pytest.param("똠방각하", "euc-kr", "cp949", "cp949", id="euc-kr-with-uhc-syllable"),
    pytest.param("똠방각하", "ks_c_5601-1987", "cp949", "cp949", id="ks_c_5601"),
    pytest.param("“Crème” – 5 €", "iso-8859-1", "cp1252", "cp1252", id="iso-8859-1"),
    pytest.param("“Crème” – 5 €", "latin1", "cp1252", "cp1252", id="latin1"),
    pytest.param("“Straße” – 5 €", "us-ascii", "cp1252", "cp1252", id="us-ascii"),
    pytest.param("“Şişli” – İstanbul", "iso-8859-9", "cp1254", "cp1254", id="iso-8859-9"),
    pytest.param("“สวัสดี” ครับ", "tis-620", "cp874", "cp874", id="tis-620"),
]


@pytest.mark.parametrize(("text", "label", "codec", "expected"), CASES)
@pytest.mark.parametrize("meta", ["charset", "http-equiv"])
def test_meta_label_means_what_browsers_read(text: str, label: str, codec: str, expected: str, meta: str) -> None:
    body = page(text, label, codec, meta=meta)
    assert text not in body.decode(_literal(label), errors="replace")  # the label read literally is wrong
    decoded, encoding = decode_text(body, "text/html")
    assert (encoding, text in decoded) == (expected, True)


@pytest.mark.parametrize(("text", "label", "codec", "expected"), CASES)
def test_header_label_means_what_browsers_read(text: str, label: str, codec: str, expected: str) -> None:
    body = page(text, "", codec, meta="none")
    decoded, encoding = decode_text(body, f"text/html; charset={label}")
    assert (encoding, text in decoded) == (expected, True)


def _literal(label: str) -> str:
    """The codec Python alone would pick for ``label`` (what the code did before following WHATWG)."""
    return {"x-sjis": "shift_jis", "ks_c_5601-1987": "euc_kr", "us-ascii": "ascii", "latin1": "latin-1"}.get(
        label, label
    )


def test_the_two_line_gb2312_page_is_extracted_as_chinese() -> None:
    body = page("<p>朱镕基</p>\n<p>你好</p>", "gb2312", "gbk")
    extraction = extract_page(build_page(body, "text/html"))
    assert extraction.metadata["encoding"] == "gb18030"
    assert extraction.text is not None
    assert "朱镕基" in extraction.text


def test_xml_declaration_is_a_declaration() -> None:
    russian = "Привет, мир! Как дела?"
    decoded, encoding = decode_text(page(russian, "windows-1251", "cp1251", meta="xml"), None)
    assert (encoding, russian in decoded) == ("cp1251", True)


def test_gb18030_reads_a_lone_0x80_as_the_euro_sign() -> None:
    body = page("价格：€5，镕", "gb18030", "gb18030").replace("€".encode("gb18030"), b"\x80")
    decoded, encoding = decode_text(body, "text/html")
    assert (encoding, "价格：€5，镕" in decoded) == ("gb18030", True)


def test_utf16_in_the_header_without_bom_is_little_endian() -> None:
    text = "<html><body><p>Grüße aus Köln</p></body></html>"
    decoded, encoding = decode_text(text.encode("utf-16-le"), "text/html; charset=UTF-16")
    assert (decoded, encoding) == (text, "utf-16-le")


def test_a_document_declaring_utf16_in_ascii_is_not_utf16() -> None:
    assert declared_encodings(b'<meta charset="utf-16"><p>x</p>') == ["utf-8"]
    body = page("Crème brûlée – “délicieuse”", "utf-16", "cp1252")
    decoded, encoding = decode_text(body, "text/html")
    assert not encoding.startswith("utf-16")
    assert "<p>" not in decoded or "brûl" in decoded  # read as a single-byte charset, not as UTF-16 pairs
    assert "<html>" in decoded


def test_declarations_in_comments_and_after_body_are_not_declarations() -> None:
    body = b'<html><head><!-- <meta charset="koi8-r"> --></head><body><meta charset="big5">x</body></html>'
    assert declared_encodings(body) == []


def test_header_comes_before_the_document_and_unknown_labels_are_left_out() -> None:
    body = b'<meta charset="shift_jis"><p>x</p>'
    assert declared_encodings(body, "text/html; charset=euc-kr") == ["cp949", "cp932"]
    assert declared_encodings(body, "text/html; charset=no-such-label") == ["cp932"]
    assert declared_encodings(b'<meta charset="utf-7">', "text/html; charset=utf-7") == []


def test_a_label_the_bytes_do_not_fit_falls_through_to_the_next() -> None:
    # the header lies (the bytes are windows-949, not windows-31j), the document tells the truth
    body = page("똠방각하, 안녕하세요", "euc-kr", "cp949")
    decoded, encoding = decode_text(body, "text/html; charset=shift_jis")
    assert (encoding, "똠방각하" in decoded) == ("cp949", True)
