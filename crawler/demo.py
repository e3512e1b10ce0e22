"""The embedded demo site: a few HTML pages written for this project, a PDF and an image made on the fly.

``python -m crawler demo`` serves it on loopback and enriches every URL on it, so a fresh install shows the whole
job without touching the network.
"""

from __future__ import annotations

import io
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crawler.localsite import StaticPages

__all__ = ["DEMO_ROOT", "demo_pages", "demo_urls", "make_pdf", "make_png"]

DEMO_ROOT = Path(__file__).with_name("demo_site")

_REPORT_LINES = (
    "Harbour Town Survey Report",
    "Prepared by Ingrid Solberg, University of Bergen, June 2024.",
    "The survey team visited Harbour Town in Norway in May 2024.",
    "The lighthouse, built in 1872, is in good repair and open as a museum.",
    "The Saturday market has forty traders and sells fish from the North Sea.",
    "The Midsummer Festival drew twelve thousand visitors in 2023.",
    "The team recommends that the Harbour Town Historical Society digitise the keepers' logbooks.",
)


def make_pdf(lines: tuple[str, ...] = _REPORT_LINES, *, title: str = "Harbour Town Survey Report") -> bytes:
    """A small valid PDF with real text objects, written by hand (no PDF library needed to make it)."""

    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    content = "BT /F1 12 Tf 72 740 Td 16 TL " + " ".join(f"({escape(line)}) '" for line in lines) + " ET"
    stream = zlib.compress(content.encode("latin-1"))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Title (%s) /Author (Ingrid Solberg) /CreationDate (D:20240601120000Z) /Producer (webenrich demo) >>"
        % escape(title).encode("latin-1"),
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def make_png(width: int = 64, height: int = 48) -> bytes:
    """A small PNG (a blue sea under a grey sky)."""
    from PIL import Image

    image = Image.new("RGB", (width, height), (40, 90, 160))
    image.paste((180, 180, 190), (0, 0, width, height // 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def demo_pages() -> StaticPages:
    """The generated documents; the HTML pages are files under :data:`DEMO_ROOT`."""
    return {
        "/survey-report.pdf": (make_pdf(), "application/pdf"),
        "/harbour-map.png": (make_png(), "image/png"),
    }


def demo_urls(base_url: str) -> list[str]:
    """Every document of the demo site, plus one missing page to show an error record."""
    names = sorted(p.name for p in DEMO_ROOT.glob("*.html"))
    paths = [f"/{name}" for name in names] + list(demo_pages()) + ["/missing-page.html"]
    return [base_url + path for path in paths]
