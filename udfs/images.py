"""Image bytes to model input: decode with Pillow, orient, convert, resize.

Per-row Python work stops here; everything after is array work on whole batches.
"""

import io
import math
import warnings
from typing import NamedTuple, Optional, Tuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mxsql.udfs.config import PREFIX

__all__ = ["UnreadableImage", "ImageInfo", "image_info", "decode", "resized", "load_pixels"]


class UnreadableImage(ValueError):
    """This row's bytes cannot become model input; the message is the row's reason."""


class ImageInfo(NamedTuple):
    format: Optional[str]
    width: Optional[int]
    height: Optional[int]
    mode: Optional[str]
    error: Optional[str]


def _open(data: Optional[bytes], max_pixels: int) -> Image.Image:
    if data is None:
        raise UnreadableImage("content is NULL")
    if len(data) == 0:
        raise UnreadableImage("content is empty (0 bytes)")
    # Pillow raises past twice MAX_IMAGE_PIXELS and only warns below: our own limit
    # (spark.mxsql.maxImagePixels) is checked on the header instead. Lifted here, in the
    # worker that decodes, not when the driver imports this module.
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as e:
        raise UnreadableImage(
            f"not an image: Pillow cannot identify the format of these {len(data)} bytes"
        ) from e
    except (OSError, ValueError, SyntaxError) as e:
        raise UnreadableImage(f"cannot read image header: {e}") from e
    width, height = img.size
    if width * height > max_pixels:
        raise UnreadableImage(
            f"image of {width}x{height} = {width * height} pixels is over "
            f"{PREFIX}maxImagePixels={max_pixels} (decompression bomb guard)"
        )
    return img


def _load(img: Image.Image) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
            ImageOps.exif_transpose(img, in_place=True)  # no copy when nothing to turn
            return img
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, MemoryError) as e:
        fmt = img.format or "image"
        raise UnreadableImage(f"cannot decode {fmt}: {e}") from e


def image_info(data: Optional[bytes], max_pixels: int) -> ImageInfo:
    """Format, stored size and mode of an image, or the reason it cannot be decoded."""
    try:
        img = _open(data, max_pixels)
    except UnreadableImage as e:
        return ImageInfo(None, None, None, None, str(e))
    info = ImageInfo(img.format, img.size[0], img.size[1], img.mode, None)
    try:
        _load(img)
    except UnreadableImage as e:
        return info._replace(error=str(e))
    return info


def _to_8bit(img: Image.Image, channels: int) -> Image.Image:
    """Grayscale, palette, alpha, CMYK and 16-bit inputs become RGB (or L) with 8 bits."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # convert("L") would saturate 16-bit values; scale them to 8 bits instead.
        wide = np.asarray(img, dtype=np.int64)
        img = Image.fromarray((np.clip(wide, 0, 65535) >> 8).astype(np.uint8), "L")
    elif img.mode == "F":
        img = Image.fromarray(np.clip(np.asarray(img), 0, 255).astype(np.uint8), "L")
    elif img.mode == "P":
        img = img.convert("RGBA")
    target = "RGB" if channels == 3 else "L"
    return img if img.mode == target else img.convert(target)


def _draft_size(size: Tuple[int, int], height: int, width: int, resize: str) -> Tuple[int, int]:
    """The smallest (w, h) a JPEG may be decoded at and still cover the target.

    Either axis may end up as width once EXIF orientation is applied, so both axes
    are asked to cover the larger side.
    """
    if resize == "stretch":
        side = max(height, width)
        return side, side
    scale = max(height, width) / min(size)
    return math.ceil(size[0] * scale), math.ceil(size[1] * scale)


def _resize(img: Image.Image, height: int, width: int, resize: str) -> Image.Image:
    if resize == "stretch":
        return img.resize((width, height), Image.BILINEAR)
    w, h = img.size
    scale = max(width / w, height / h)
    scaled_w, scaled_h = max(width, round(w * scale)), max(height, round(h * scale))
    img = img.resize((scaled_w, scaled_h), Image.BILINEAR)
    left, top = (scaled_w - width) // 2, (scaled_h - height) // 2
    return img.crop((left, top, left + width, top + height))


def decode(data: Optional[bytes], *, input_size: Tuple[int, int], channels: int, resize: str,
           max_pixels: int) -> Image.Image:
    """The first half of :func:`load_pixels`: ``data`` decoded, oriented and converted to
    8-bit RGB (or L), not yet resized. A JPEG much larger than ``input_size`` is decoded
    at a reduced scale (1/2, 1/4 or 1/8, the smallest that still covers the target).

    Raises UnreadableImage with the row's reason (see load_pixels).
    """
    height, width = input_size
    img = _open(data, max_pixels)
    if img.format == "JPEG":
        img.draft(img.mode if img.mode in ("RGB", "L") else None,
                  _draft_size(img.size, height, width, resize))
    img = _load(img)
    try:
        return _to_8bit(img, channels)
    except (OSError, ValueError, MemoryError) as e:
        raise UnreadableImage(f"cannot convert {img.format or 'image'} ({img.mode}): {e}") from e


def resized(img: Image.Image, *, input_size: Tuple[int, int], channels: int,
            resize: str) -> np.ndarray:
    """The second half of :func:`load_pixels`: a decoded image at the model's input size,
    as a uint8 array of shape (height, width, channels)."""
    height, width = input_size
    try:
        pixels = np.asarray(_resize(img, height, width, resize), np.uint8)
    except (OSError, ValueError, MemoryError) as e:
        raise UnreadableImage(f"cannot resize {img.mode} image: {e}") from e
    return pixels.reshape(height, width, channels)


def load_pixels(
    data: Optional[bytes],
    *,
    input_size: Tuple[int, int],
    channels: int,
    resize: str,
    max_pixels: int,
) -> np.ndarray:
    """Decode ``data`` into a uint8 array of shape (height, width, channels).

    Raises UnreadableImage with the row's reason for NULL, empty, unknown, truncated,
    oversized or otherwise undecodable input.
    """
    img = decode(data, input_size=input_size, channels=channels, resize=resize,
                 max_pixels=max_pixels)
    return resized(img, input_size=input_size, channels=channels, resize=resize)
