"""HTTP content codings (gzip, deflate, br, zstd) decoded with a cap on the output.

Both engines decode with this when they keep the body as it came over the wire (Scrapy mode always, the async
engine when it writes WARC files): the output stops at the size cap, so a decompression bomb costs the cap in
memory, not what it would inflate to.
"""

from __future__ import annotations

import zlib

__all__ = ["decompress_capped"]

_CHUNK = 64 * 1024
"""Output produced per decompression step: the cap is checked between steps, so at most this much past it is held."""


def decompress_capped(body: bytes, encoding: bytes, cap: int) -> tuple[bytes, bool]:
    """``body`` decoded from one content coding, at most ``cap`` bytes of it; the flag says it was cut.

    A stream that ends early (a body cut on the wire) gives what it held. Unknown codings are returned as they are.

    Raises:
        zlib.error: a gzip or deflate body that is not one, before any output.
    """
    if encoding in {b"gzip", b"x-gzip"}:
        return _inflate_capped(body, 16 + zlib.MAX_WBITS, cap)
    if encoding == b"deflate":
        try:
            return _inflate_capped(body, zlib.MAX_WBITS, cap)
        except zlib.error:
            return _inflate_capped(body, -zlib.MAX_WBITS, cap)  # raw deflate, as some servers send
    if encoding == b"br":
        return _unbrotli_capped(body, cap)
    if encoding == b"zstd":
        return _unzstd_capped(body, cap)
    return body, False


def _inflate_capped(body: bytes, wbits: int, cap: int) -> tuple[bytes, bool]:
    out = bytearray()
    decompressor = zlib.decompressobj(wbits)
    pending = body
    while pending:
        try:
            out += decompressor.decompress(pending, min(_CHUNK, cap + 1 - len(out)))
        except zlib.error:
            if out:
                break  # keep what was readable, as Scrapy's gunzip does
            raise
        if len(out) > cap:
            return bytes(out[:cap]), True
        if decompressor.eof:
            pending = decompressor.unused_data
            if pending and wbits > zlib.MAX_WBITS:  # another gzip member
                decompressor = zlib.decompressobj(wbits)
                continue
            break
        pending = decompressor.unconsumed_tail
    return bytes(out), False


def _unbrotli_capped(body: bytes, cap: int) -> tuple[bytes, bool]:
    try:
        import brotli  # type: ignore[import-untyped]  # no stubs
    except ImportError:
        import brotlicffi as brotli  # type: ignore[import-not-found]  # Scrapy and aiohttp accept either
    decompressor = brotli.Decompressor()
    out = bytearray(decompressor.process(body, output_buffer_limit=_CHUNK))
    while len(out) <= cap and not decompressor.is_finished():
        chunk = decompressor.process(b"", output_buffer_limit=_CHUNK)
        if not chunk:
            break
        out += chunk
    return (bytes(out[:cap]), True) if len(out) > cap else (bytes(out), False)


def _unzstd_capped(body: bytes, cap: int) -> tuple[bytes, bool]:
    try:
        from compression import zstd  # type: ignore[import-not-found,unused-ignore]  # Python >= 3.14
    except ImportError:
        from backports import zstd  # type: ignore[no-redef,unused-ignore]
    decompressor = zstd.ZstdDecompressor()
    out = bytearray()
    pending = body
    while len(out) <= cap:
        try:
            chunk = decompressor.decompress(pending, max_length=_CHUNK)
        except EOFError:
            break
        pending = b""
        out += chunk
        if decompressor.eof or (not chunk and decompressor.needs_input):
            break
    return (bytes(out[:cap]), True) if len(out) > cap else (bytes(out), False)
