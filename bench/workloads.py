"""The image sets the benchmark makes for itself, cached under its work directory.

Images are written in shards (sub-folders) so that a run can read a subset by naming
fewer shards. Content is random but structured (smooth fields, shapes, gradients and
noise), so that PNG and JPEG compress and decode the way real pictures do.
"""

import os
from dataclasses import dataclass
from typing import List

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = ["Workload", "cifar", "photos", "CIFAR_SHARD", "PHOTO_SHARD"]

CIFAR_SHARD = 1000  # images a shard
PHOTO_SHARD = 100


@dataclass(frozen=True)
class Workload:
    """A set of image files: ``shards`` folders of images, and a small warm-up folder."""

    name: str
    shards: List[str]
    warm: str
    per_shard: int
    ext: str

    def folders(self, images: int) -> List[str]:
        """The shard folders holding the first ``images`` images (whole shards)."""
        count = max(1, -(-images // self.per_shard))
        if count > len(self.shards):
            raise ValueError(f"{self.name}: {images} images asked, {self.size} made")
        return self.shards[:count]

    @property
    def size(self) -> int:
        return len(self.shards) * self.per_shard


def _cifar_image(rng: np.random.Generator) -> Image.Image:
    """32x32: a smooth random colour field, one or two shapes, a little noise."""
    field = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    img = Image.fromarray(field, "RGB").resize((32, 32), Image.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(1, 3)):
        x0, y0 = rng.integers(0, 24, 2)
        x1, y1 = x0 + rng.integers(6, 16), y0 + rng.integers(6, 16)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    pixels = np.asarray(img, np.int16) + rng.normal(0, 6, (32, 32, 3)).astype(np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _photo(rng: np.random.Generator, width: int = 1920, height: int = 1080) -> Image.Image:
    """A photo-sized picture: a two-colour gradient, soft blobs, sensor-like noise."""
    w, h = width // 4, height // 4
    t = np.linspace(0, 1, w)[None, :] * np.cos(rng.uniform(0, np.pi)) \
        + np.linspace(0, 1, h)[:, None] * np.sin(rng.uniform(0, np.pi))
    t = (t - t.min()) / (np.ptp(t) or 1)
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    base = a + t[..., None] * (b - a)
    img = Image.fromarray(base.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(4, 10)):
        x, y = rng.integers(0, w), rng.integers(0, h)
        r = rng.integers(10, h // 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    img = img.filter(ImageFilter.GaussianBlur(3)).resize((width, height), Image.BICUBIC)
    texture = rng.normal(0, 1, (height // 2, width // 2, 1)).astype(np.float32)
    texture = np.asarray(
        Image.fromarray(np.clip(texture * 40 + 128, 0, 255).astype(np.uint8)[..., 0], "L")
        .resize((width, height), Image.BILINEAR), np.float32)[..., None] - 128
    noise = rng.normal(0, 3, (height, width, 1)).astype(np.float32)
    pixels = np.asarray(img, np.float32) + 0.25 * texture + noise
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _make(root: str, name: str, count: int, per_shard: int, ext: str, draw, save) -> Workload:
    base = os.path.join(root, name)
    shards = [os.path.join(base, f"{i:02d}") for i in range(-(-count // per_shard))]
    # Enough warm-up images that the JVM has compiled its hot paths before timing (with 4
    # passes over 64 photos, path (2)'s JVM still spent 3.1-3.5 CPU ms a photo in the timed
    # pass, against 2.0-2.7 once it had read the 500 photos a few times).
    warm_count = 256
    warm = f"{base}-warm{warm_count}"
    rng = np.random.default_rng(5)
    jobs = [(warm, warm_count)] + [(s, per_shard) for s in shards]
    for folder, n in jobs:
        done = os.path.join(folder, ".done")
        if os.path.exists(done):
            continue
        os.makedirs(folder, exist_ok=True)
        for i in range(n):
            save(draw(rng), os.path.join(folder, f"{i:05d}.{ext}"))
        open(done, "w").close()
    return Workload(name, shards, warm, per_shard, ext)


def cifar(root: str, count: int = 10_000) -> Workload:
    """CIFAR-shaped: ``count`` PNG images of 32x32 (the classic recipe's data shape)."""
    return _make(root, "cifar", count, CIFAR_SHARD, "png", _cifar_image,
                 lambda img, path: img.save(path, "PNG"))


def photos(root: str, count: int = 500) -> Workload:
    """Photo-shaped: ``count`` JPEG images of 1920x1080, quality 90."""
    return _make(root, "photos", count, PHOTO_SHARD, "jpg", _photo,
                 lambda img, path: img.save(path, "JPEG", quality=90))
