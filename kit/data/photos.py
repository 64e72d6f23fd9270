"""One image file to uint8 pixels, as competitions ship them: CMYK, 16-bit, float, palette and
transparent images, EXIF-rotated phone photos, big JPEGs decoded at reduced scale, and an image
past PIL's decompression-bomb limit refused in one line that names it."""

import os
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from kit.errors import KitError

DEEP_GREY = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # 16/32-bit and float grey modes
DEPTHS = (255, 1023, 4095, 65535)  # 8, 10, 12 and 16 bits: the ranges deep grey is scaled by


def as_mode(im: Image.Image, mode: str) -> Image.Image:
    """Any PIL image (grey, 16-bit, float, RGBA, palette, CMYK) as 8-bit RGB or grey ("L")."""
    if im.mode in DEEP_GREY:
        im = to_8_bits(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))  # transparent is white
        im = Image.alpha_composite(flat, rgba)
    return im.convert(mode)


def to_8_bits(im: Image.Image) -> Image.Image:
    """16- or 32-bit grey, or floats, as 8 bits, scaled by the range of the depth the values fit
    in (0-1 for floats; 8, 10, 12 or 16 bits; else their maximum): a photo saved at 8 and at 16
    bits decodes alike, and a dark photo stays dark, not stretched to its brightest pixel. (A
    12-bit photo whose values all stay below 1024 reads as 10-bit: 4 times brighter.)"""
    a = np.nan_to_num(np.asarray(im, dtype=np.float64)).clip(0, None)
    top = a.max()
    full = next((r for r in ((1.0,) if im.mode == "F" else ()) + DEPTHS if top <= r), top)
    return Image.fromarray(np.round(a * (255 / full)).astype(np.uint8))


def upright(im: Image.Image) -> Image.Image:
    """The photo as a viewer shows it, turned as its EXIF orientation says (phone photos); as
    stored where that block is damaged."""
    try:
        return ImageOps.exif_transpose(im)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, struct.error):
        return im


def pixel_limit() -> int | None:
    """The most pixels an image may have: $KIT_MAX_IMAGE_PIXELS (0: no limit), else the limit
    past which PIL refuses an image as a possible decompression bomb."""
    value = os.environ.get("KIT_MAX_IMAGE_PIXELS", "").strip()
    if not value:
        return None if Image.MAX_IMAGE_PIXELS is None else 2 * Image.MAX_IMAGE_PIXELS
    if not value.isdigit():
        raise KitError(f"KIT_MAX_IMAGE_PIXELS={value!r}: give a whole number of pixels (0: no "
                       "limit)")  # fmt: skip
    return int(value) or None


def too_big(src: Path, what: str) -> KitError:
    """The one line for an image past the pixel limit: which, and how to go on."""
    return KitError(
        f"{src} {what}, more than PIL decodes (its guard against decompression "
        "bombs); if it is a real photo, run again with KIT_MAX_IMAGE_PIXELS set to "
        "its pixel count or more (0: no limit), else take it out of the folder"
    )


def opened(src: Path) -> Image.Image:
    """Image.open, the size checked against `pixel_limit` (from the header, before a pixel is
    decoded): a KitError naming the file past it."""
    limit = pixel_limit()
    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # checked below instead
    try:
        im = Image.open(src)
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    if limit is not None and im.width * im.height > limit:
        im.close()
        raise too_big(src, f"is {im.width} x {im.height} = {im.width * im.height:,} pixels "
                           f"(limit {limit:,})")  # fmt: skip
    return im


def resized(im: Image.Image, size: int, resize: str = "squash") -> Image.Image:
    """`im` as size x size: squashed (the aspect lost), padded (the whole image, its aspect kept,
    centred on black: borders a network sees as nothing, where reflection would invent a mirrored
    photo) or cropped (the centre square, scaled)."""
    w, h = im.size
    if resize == "crop":
        side = min(w, h)
        box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
        return im.crop(box).resize((size, size), Image.BICUBIC)
    if resize == "pad":
        scale = size / max(w, h)
        fit = (max(1, round(w * scale)), max(1, round(h * scale)))
        canvas = Image.new(im.mode, (size, size))  # black, in any mode
        canvas.paste(im.resize(fit, Image.BICUBIC), ((size - fit[0]) // 2, (size - fit[1]) // 2))
        return canvas
    return im.resize((size, size), Image.BICUBIC)


def decode(src: Path, size: int, channels: int, resize: str = "squash") -> np.ndarray | None:
    """One image decoded at reduced scale, turned upright and made (size, size) or
    (size, size, 3) uint8 as `resize` says; None for a file that cannot be decoded (corrupt or
    truncated); a KitError for one past the pixel limit. Training (through the cache) and
    `kit predict` (streaming) both read images through here, so they see the same pixels."""
    mode = "L" if channels == 1 else "RGB"
    try:
        with opened(src) as im:
            im.draft(mode, (size, size))  # JPEG: decode at 1/2, 1/4 or 1/8 scale, much faster
            return np.asarray(resized(as_mode(upright(im), mode), size, resize))
    except Image.DecompressionBombError as e:  # a frame past PIL's limit, found on decoding
        raise too_big(src, f"has {e}") from None
    except (OSError, SyntaxError, ValueError):
        return None
