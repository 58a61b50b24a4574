"""Image bytes for tests: every format and mode mxsql must read, and every kind of bad input."""

import io
import struct
import zlib

import numpy as np
from PIL import Image


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **params)
    return out.getvalue()


def gradient_rgb(width: int = 48, height: int = 32) -> Image.Image:
    """A smooth RGB picture: lossy formats keep it close to the original."""
    x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], -1).astype(np.uint8), "RGB")


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def corrupted_png(data: bytes) -> bytes:
    """A PNG whose header is fine but whose compressed pixels are garbage."""
    start = data.index(b"IDAT") + 4
    body = bytearray(data)
    for i in range(start, min(start + 40, len(body) - 12)):
        body[i] ^= 0x5A
    return bytes(body)


def png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def with_exif_orientation(img: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(img, "JPEG", quality=95, exif=exif.tobytes())
