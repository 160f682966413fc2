"""What a mirrored output is, decided from its bytes, never from what the vendor or its CDN declares
(issue 19: an ``image/svg+xml`` or ``text/html`` "result" served from the relay's origin ran its
script with the operator's console session).

Only raster images Pillow recognises keep an ``image/*`` type: PNG, JPEG, WebP, GIF and AVIF (where
this Pillow has AVIF support, ``PIL.features.check("avif")``). Everything else — SVG, HTML, text, a
truncated or unknown file — is ``application/octet-stream``, stored and served as an attachment.

Example::

    identify(png_bytes[:4096], complete=False)   # MirrorKind("image/png", 640, 480)
    identify(b"<svg onload=...>", complete=True)  # MirrorKind("application/octet-stream", None, None)
    served_as("image/svg+xml")                    # ("application/octet-stream", True)
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image

OCTETS = "application/octet-stream"
RASTER_FORMATS = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",  # Pillow's name for a JPEG with extra frames (many cameras): a JPEG to browsers
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "AVIF": "image/avif",
}
"""Pillow format name → the MIME type a mirrored copy keeps."""
IMAGE_TYPES = frozenset(RASTER_FORMATS.values())
"""The only types ``GET /v1/outputs`` serves inline; anything else goes out as an attachment."""
WHOLE_FILE_FORMATS = ("WEBP", "AVIF")
"""Formats Pillow opens only from the complete file (its decoders take every byte at once)."""


@dataclass(frozen=True)
class MirrorKind:
    """The decided type of a copy and, when the header told, its size in pixels."""

    mime_type: str
    width: int | None = None
    height: int | None = None


def _raster_formats() -> list[str]:
    Image.init()  # registers every plugin this Pillow has (AVIF only with libavif)
    return [name for name in RASTER_FORMATS if name in Image.ID]


def identify(head: bytes, *, complete: bool) -> MirrorKind | None:
    """The type of a file whose first bytes are ``head`` (``complete``: ``head`` is the whole file).

    Pillow opens ``head`` restricted to :data:`RASTER_FORMATS` (reading headers only, never
    decoding pixels): a success gives the type and size. ``None`` means undecided: more bytes may
    tell. When no more will come (``complete``, or the caller's head buffer is full) the answer is
    final: a WebP or AVIF longer than the head is recognised by Pillow's own signature check for its
    format (Pillow decodes those two only whole), anything else is :data:`OCTETS`. A real image over
    Pillow's decompression-bomb limit keeps its type without a size. Never raises for any input.
    """
    formats = _raster_formats()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: no pixel is decoded here
            with Image.open(io.BytesIO(head), formats=formats) as image:
                mime = RASTER_FORMATS.get(image.format or "")
                if mime is not None:
                    width, height = image.size
                    return MirrorKind(mime, width, height)
    except Image.DecompressionBombError:  # a real header with a giant size
        return MirrorKind(_by_signature(head, formats) or OCTETS)
    except Exception:  # hostile bytes: any plugin error means "not (yet) an image"
        pass
    if not complete:
        return None
    return MirrorKind(_by_signature(head, WHOLE_FILE_FORMATS) or OCTETS)


def _by_signature(head: bytes, formats: tuple[str, ...] | list[str]) -> str | None:
    """The type whose Pillow signature check (the plugin's ``accept``) ``head`` passes, among
    ``formats`` this Pillow supports; ``None`` when none does."""
    Image.init()
    for name in formats:
        entry = Image.OPEN.get(name)
        if entry is None or entry[1] is None:
            continue
        try:
            accepted = entry[1](head[:64])
        except Exception:  # a signature check on hostile bytes must not fail the copy
            accepted = False
        if accepted is True:  # a string means "recognised, but this Pillow lacks the codec"
            return RASTER_FORMATS[name]
    return None


def served_as(mime_type: str | None) -> tuple[str, bool]:
    """How ``GET /v1/outputs`` serves a copy recorded with ``mime_type``: ``(content type,
    attachment)``. A type outside :data:`IMAGE_TYPES` (``image/svg+xml``, ``text/html``, ``None``;
    copies made before issue 19 kept the vendor's) is served as ``(OCTETS, True)``."""
    if mime_type in IMAGE_TYPES:
        return mime_type, False
    return OCTETS, True
