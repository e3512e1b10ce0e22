"""Images, audio, video, archives: type, size, file name, and image dimensions where cheap."""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from enrich.extract.result import Extraction

__all__ = ["extract_image", "extract_media"]


def extract_media(content_type: str | None) -> Extraction:
    """A binary we do not read: its type is the record; no text and no error."""
    return Extraction(content_type=content_type)


def extract_image(body: bytes, content_type: str | None) -> Extraction:
    """Read only the image header (Pillow opens lazily), never the pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(body)) as image:
                width, height = image.size
                fmt = image.format
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
        return Extraction(content_type=content_type, error=f"unreadable image: {exc}")
    return Extraction(content_type=content_type, metadata={"width": width, "height": height, "format": fmt})
