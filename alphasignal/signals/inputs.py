"""Validated pipeline inputs: chart image bytes and news text, checked once at the edge.

Every problem is a ``UsageError`` (exit 2) naming the input and the fix. Policy for news files that are not
UTF-8: refuse (exit 2) rather than guess an encoding, so a decision never rests on mojibake.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..errors import UsageError
from ..fileio import input_file

_SENT_FORMATS = {"PNG", "JPEG"}  # sent as-is; anything else is re-encoded to PNG


@dataclass(frozen=True)
class ChartInput:
    """A decodable chart image, at most ``max_side`` pixels on its longer side."""

    data: bytes  # PNG or JPEG bytes sent to the chart model / reader
    sha256: str  # of the ORIGINAL bytes, so a decision can be traced to its input file
    size: tuple[int, int]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class NewsInput:
    """News text within the configured budget."""

    text: str
    sha256: str  # of the original text (before truncation)
    empty: bool
    notes: tuple[str, ...] = field(default_factory=tuple)


def sha256(data: bytes | str) -> str:
    """Hex sha256 of bytes, or of a string's UTF-8 encoding."""
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def read_image_file(path: str | Path, max_side: int) -> ChartInput:
    """Read and validate a chart image file (missing, empty, corrupt or non-image -> ``UsageError``)."""
    p = input_file(path, "image", "check the --image path")
    data = p.read_bytes()
    if not data:
        raise UsageError(f"image {str(p)!r} is empty (0 bytes): pass a PNG or JPEG chart")
    return load_image(data, max_side, name=str(p))


def load_image(data: bytes, max_side: int, name: str = "image") -> ChartInput:
    """Decode ``data``; downscale huge images to ``max_side`` and re-encode non-PNG/JPEG formats as PNG."""
    if not data:
        raise UsageError(f"{name} is empty (0 bytes): pass a PNG or JPEG chart")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format
            img.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        if isinstance(exc, UnidentifiedImageError):
            raise UsageError(f"{name} is not a readable image (corrupt or not an image format): pass a PNG or JPEG "
                             "chart") from None
        raise UsageError(f"{name} is too large to decode safely ({exc}): downscale it below 8000x8000") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UsageError(f"{name} is a corrupt or truncated image ({exc}): re-export the chart") from None
    notes: list[str] = []
    w, h = img.size
    if max(w, h) > max_side:
        img = img.convert("RGB")
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        notes.append(f"image resized from {w}x{h} to {img.size[0]}x{img.size[1]} (pipeline.max_image_side)")
        out = _png(img)
    elif fmt not in _SENT_FORMATS:
        notes.append(f"image converted from {fmt} to PNG")
        out = _png(img.convert("RGB"))
    else:
        out = data
    return ChartInput(out, sha256(data), img.size, tuple(notes))


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def read_news_file(path: str | Path) -> str:
    """Read a UTF-8 news file (missing or not UTF-8 -> ``UsageError`` with the fix)."""
    p = input_file(path, "news file", "check the --news-file path")
    raw = p.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"news file {str(p)!r} is not UTF-8 (byte {exc.start}): convert it, e.g. "
                         f"`iconv -f latin1 -t utf-8 {p.name} > news.txt`") from None


def prepare_news(text: str | None, max_chars: int) -> NewsInput:
    """Normalise news text: empty/whitespace is flagged, long text is cut to ``max_chars`` (at a word boundary)."""
    original = text or ""
    clean = original.replace("\x00", "").strip()
    if not clean:
        return NewsInput("", sha256(original), True, ("news is empty: sentiment NEUTRAL with intensity 0",))
    notes: tuple[str, ...] = ()
    if len(clean) > max_chars:
        cut = clean[:max_chars]
        cut = cut[: cut.rfind(" ")] if " " in cut[max_chars // 2:] else cut
        notes = (f"news truncated from {len(clean)} to {len(cut)} characters (pipeline.max_news_chars)",)
        clean = cut
    return NewsInput(clean, sha256(original), False, notes)
