"""Pages in legacy charsets, served on loopback with their labels in the header or the document, crawled by the
async engine: the records hold the text browsers show."""

from __future__ import annotations

from aiohttp import web

from crawler.localsite import ServerThread
from tests.integration.test_async_engine import crawl

# path: (text, charset label in the header or None, label in a <meta> or None, codec the bytes are in)
PAGES = {
    "/gb2312-header": ("朱镕基总理\n镕金", "gb2312", None, "gbk"),
    "/gb2312-meta": ("欢迎光临\n镕金", None, "gb2312", "gbk"),
    "/sjis-meta": ("①会議室の予約～髙橋", None, "shift_jis", "cp932"),
    "/euckr-header": ("똠방각하 안녕하세요", "euc-kr", None, "cp949"),
    "/latin1-header": ("“Crème brûlée” – 5 €", "iso-8859-1", None, "cp1252"),
}


def charset_app() -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        text, header, meta, codec = PAGES[request.path]
        declaration = f'<meta charset="{meta}">' if meta else ""
        html = f"<html><head>{declaration}<title>t</title></head><body><p>{text}</p></body></html>"
        content_type = f"text/html; charset={header}" if header else "text/html"
        return web.Response(body=html.encode(codec), headers={"Content-Type": content_type})

    app = web.Application()
    for path in PAGES:
        app.router.add_get(path, handle)
    return app


async def test_legacy_charsets_through_the_async_engine() -> None:
    with ServerThread(charset_app) as server:
        records, _, _ = await crawl([server.url + path for path in PAGES])
    for path, (text, *_rest, codec) in PAGES.items():
        record = records[server.url + path]
        assert record.error is None, record.error
        assert record.text is not None
        for line in text.splitlines():
            assert line in record.text, (path, record.text)
        expected = {"gbk": "gb18030"}.get(codec, codec)
        assert record.metadata["encoding"] == expected
