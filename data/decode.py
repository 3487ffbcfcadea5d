"""One image file -> one (S, S, 3) uint8 RGB array, the paper's way.

    decode_image(path, size) -> (S, S, 3) uint8      raises BadImage(reason) for unusable files

Steps, in order:

1. Open with Pillow (the format is sniffed from the bytes, so a PNG named ``.jpg`` or a
   JPEG named ``.dat`` is read correctly). Zero-byte files, non-images and images above
   ``max_pixels`` (Pillow's decompression-bomb limit by default) raise ``BadImage``.
2. For JPEGs, ``Image.draft`` lets the decoder shrink by 1/2, 1/4 or 1/8 during the DCT,
   but only while the shorter side stays >= 2S, so the final resize still downsamples
   by at least 2 with its antialiasing filter (``jpeg_draft=False`` turns this off; it
   changes pixels by a level or two on images >= 4S, and saves most of their decoding
   time; typical ImageNet photos, ~500x375, are below 4S = 1024 and unaffected).
3. Full decode (a truncated JPEG raises ``BadImage`` here), then EXIF orientation.
4. Conversion to RGB:
   - 16-bit grayscale (``I;16*``, ``I``) is scaled to 8 bits as round(v / 257), clipped
     to [0, 65535] first (Pillow's own ``convert`` would clip at 255 instead);
     float images (``F``) are clipped to [0, 255];
   - anything with transparency (RGBA, LA, PA, palette with a transparent index) is
     composited onto a white background (``ALPHA_BACKGROUND``);
   - everything else (L, 1, P, CMYK, YCbCr, LAB, HSV) goes through ``convert("RGB")``.
5. Rescale so the shorter side is S (Pillow ``BICUBIC``, which is antialiased: its filter
   support widens with the downscale factor); the longer side becomes round(long * S /
   short). A 1x1 image is converted (upscaled to a flat colour), not skipped.
6. Centre crop S x S at ((W - S) // 2, (H - S) // 2).
"""

from __future__ import annotations

import os
import warnings

import numpy
from PIL import Image, ImageOps, UnidentifiedImageError

from refnet.data.cli import UserError

RESAMPLE = Image.Resampling.BICUBIC
ALPHA_BACKGROUND = (255, 255, 255)
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485


class BadImage(UserError):
    """A file that cannot become a training image; ``str(e)`` is the reason."""


def decode_image(
    path: str, size: int, *, max_pixels: int = DEFAULT_MAX_PIXELS, jpeg_draft: bool = True
) -> numpy.ndarray:
    """Decode ``path`` into an (S, S, 3) uint8 RGB array (S = ``size``); see the module doc."""
    return decode_image_sized(path, size, max_pixels=max_pixels, jpeg_draft=jpeg_draft)[0]


def decode_image_sized(
    path: str, size: int, *, max_pixels: int = DEFAULT_MAX_PIXELS, jpeg_draft: bool = True
) -> tuple[numpy.ndarray, tuple[int, int]]:
    """``(decode_image(...), (width, height))``: the image and its size in the file (an
    image whose shorter side is below ``size`` was upscaled)."""
    if size < 1:
        raise ValueError(f"decode_image: size must be >= 1, got {size}")
    img: Image.Image
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as e:
        raise BadImage(f"decompression bomb: {e}") from None
    except UnidentifiedImageError:
        if _is_empty(path):
            raise BadImage("empty file (0 bytes)") from None
        raise BadImage("not an image (Pillow cannot identify it)") from None
    except OSError as e:
        raise BadImage(f"cannot open: {e}") from None
    with img:
        w, h = img.size
        if w < 1 or h < 1:
            raise BadImage(f"degenerate size {w}x{h}")
        if w * h > max_pixels:
            raise BadImage(f"decompression bomb: {w}x{h} = {w * h} pixels > limit {max_pixels}")
        try:
            if jpeg_draft and img.format == "JPEG" and img.mode in ("RGB", "L", "CMYK"):
                img.draft(img.mode, (2 * size, 2 * size))
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb = to_rgb(img)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise BadImage(f"cannot decode: {e}") from None
    return resize_center_crop(rgb, size), (w, h)


def to_rgb(img: Image.Image) -> Image.Image:
    """A Pillow image of any mode as an RGB Pillow image (rules in the module doc)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = numpy.asarray(img).astype(numpy.float64)  # (H, W)
        a = numpy.rint(numpy.clip(a, 0, 65535) / 257.0).astype(numpy.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if mode == "F":
        a = numpy.clip(numpy.asarray(img), 0, 255)
        return Image.fromarray(numpy.rint(a).astype(numpy.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "L" and "transparency" in img.info:
        return to_rgb(img.convert("LA"))
    return img.convert("RGB")


def resize_center_crop(img: Image.Image, size: int) -> numpy.ndarray:
    """Rescale an RGB Pillow image so its shorter side is ``size``, then centre-crop.

    Returns an (S, S, 3) uint8 array.
    """
    w, h = img.size
    if w <= h:
        new_w, new_h = size, max(size, round(h * size / w))
    else:
        new_w, new_h = max(size, round(w * size / h)), size
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), RESAMPLE)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    img = img.crop((left, top, left + size, top + size))
    out = numpy.asarray(img, dtype=numpy.uint8)  # (S, S, 3)
    if out.shape != (size, size, 3):
        raise BadImage(f"internal: decoded shape {out.shape}, expected {(size, size, 3)}")
    return out


def _is_empty(path: str):
    try:
        return os.path.getsize(path) == 0
    except OSError:
        return False
