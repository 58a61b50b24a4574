"""Decoding: every format and mode becomes model input; bad bytes become a reason."""

import dataclasses

import numpy as np
import pytest
from PIL import Image

from mxsql.udfs.checkpoint import model_input
from mxsql.udfs.config import parse_settings
from mxsql.udfs.images import UnreadableImage, decode, image_info, load_pixels, resized
from tests import imagekit

BIG = 1 << 30


def pixels(data, size=(32, 48), channels=3, resize="stretch", max_pixels=BIG):
    return load_pixels(data, input_size=size, channels=channels, resize=resize,
                       max_pixels=max_pixels)


@pytest.fixture(scope="module")
def picture():
    return imagekit.gradient_rgb()


@pytest.fixture(scope="module")
def reference(picture):
    return pixels(imagekit.encode(picture, "PNG")).astype(int)


@pytest.mark.parametrize("fmt, params, tolerance", [
    ("PNG", {}, 0),
    ("BMP", {}, 0),
    ("TIFF", {}, 0),
    ("WEBP", {"lossless": True}, 0),
    ("JPEG", {"quality": 95}, 12),
    ("GIF", {}, 40),
])
def test_formats_decode_to_the_same_picture(picture, reference, fmt, params, tolerance):
    decoded = pixels(imagekit.encode(picture, fmt, **params)).astype(int)
    assert decoded.shape == (32, 48, 3)
    assert np.abs(decoded - reference).mean() <= tolerance


def test_gif_uses_its_first_frame(picture, reference):
    black = Image.new("RGB", picture.size)
    frames = imagekit.encode(picture, "GIF", save_all=True, append_images=[black])
    assert np.abs(pixels(frames).astype(int) - reference).mean() < 40
    assert pixels(frames).mean() > 60


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "LA", "1"])
def test_modes_become_rgb(picture, mode):
    img = picture.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "TIFF" if mode == "1" else "PNG"
    out = pixels(imagekit.encode(img, fmt))
    assert out.shape == (32, 48, 3) and out.dtype == np.uint8
    assert out.max() > 100


def test_sixteen_bit_is_scaled_not_saturated():
    wide = np.full((32, 48), 128 * 257, dtype=np.uint16)
    data = imagekit.encode(Image.fromarray(wide), "PNG")
    assert Image.open(__import__("io").BytesIO(data)).mode.startswith("I")
    out = pixels(data)
    assert out.min() == out.max() == 128


def test_grayscale_model_gets_one_channel(picture):
    out = pixels(imagekit.encode(picture, "PNG"), channels=1)
    assert out.shape == (32, 48, 1)


def test_exif_orientation_is_applied(picture, reference):
    # Stored rotated by 90 degrees with orientation 6 ("rotate 90 CW to view"): viewing it
    # upright gives the original picture back.
    stored = picture.transpose(Image.ROTATE_90)
    out = pixels(imagekit.with_exif_orientation(stored, 6)).astype(int)
    assert np.abs(out - reference).mean() < 12


def test_center_crop_keeps_the_middle():
    img = Image.new("RGB", (300, 100), "red")
    img.paste(Image.new("RGB", (140, 100), "blue"), (80, 0))
    out = pixels(imagekit.encode(img, "PNG"), size=(50, 50), resize="center-crop")
    assert (out == (0, 0, 255)).all(), "only the blue middle is kept"


def test_large_jpeg_is_decoded_at_reduced_scale(monkeypatch, picture):
    big = imagekit.encode(picture.resize((1920, 1080)), "JPEG", quality=90)
    seen = []
    original = Image.Image.resize

    def spy(self, size, *args, **kwargs):
        seen.append(self.size)
        return original(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", spy)
    pixels(big, size=(224, 224))
    assert seen and seen[0][0] < 1920, seen


@pytest.mark.parametrize("data, reason", [
    (None, "content is NULL"),
    (b"", "content is empty"),
    (b"hello, world: not an image", "not an image"),
])
def test_bad_bytes_give_a_reason(data, reason):
    with pytest.raises(UnreadableImage, match=reason):
        pixels(data)
    assert reason in image_info(data, BIG).error


def test_truncated_png_gives_a_reason(picture):
    data = imagekit.truncated(imagekit.encode(picture, "PNG"))
    with pytest.raises(UnreadableImage, match="cannot decode PNG"):
        pixels(data)
    info = image_info(data, BIG)
    assert info.format == "PNG" and info.width == 48 and "cannot decode PNG" in info.error


def test_a_decode_error_keeps_pillows_error_as_its_cause(picture):
    data = imagekit.truncated(imagekit.encode(picture, "PNG"))
    with pytest.raises(UnreadableImage) as error:
        pixels(data)
    assert isinstance(error.value.__cause__, OSError)


def test_corrupted_pixels_give_a_reason(picture):
    data = imagekit.corrupted_png(imagekit.encode(picture, "PNG"))
    with pytest.raises(UnreadableImage, match="cannot decode PNG"):
        pixels(data)


def test_decompression_bomb_is_refused_from_its_header():
    data = imagekit.png_header_claiming(100_000, 100_000)
    with pytest.raises(UnreadableImage, match=r"100000x100000 = 10000000000 pixels is over spark.mxsql.maxImagePixels=89478485"):
        pixels(data, max_pixels=89478485)


def test_info_of_a_good_image(picture):
    assert image_info(imagekit.encode(picture, "PNG"), BIG) == ("PNG", 48, 32, "RGB", None)



def test_load_pixels_is_decode_then_resize(picture):
    data = imagekit.encode(picture.resize((1280, 720)), "JPEG", quality=90)
    shape = dict(input_size=(224, 224), channels=3, resize="stretch")
    img = decode(data, max_pixels=BIG, **shape)
    assert img.size == (640, 360), "1/2 scale: at 1/4, 180 rows would not cover 224"
    assert np.array_equal(resized(img, **shape), pixels(data, size=(224, 224)))


def test_a_jpeg_without_reduced_scale_decodes_exactly_as_pillow_does(picture):
    data = imagekit.encode(picture.resize((300, 200)), "JPEG", quality=90)
    full = Image.open(__import__("io").BytesIO(data)).convert("RGB")
    expected = np.asarray(full.resize((224, 224), Image.BILINEAR))
    assert np.array_equal(pixels(data, size=(224, 224)), expected)


def test_a_photo_decoded_at_reduced_scale_stays_close_to_the_full_decode():
    """The draft decode of a 1920x1080 JPEG (1/4 scale) against the full decode then the
    same resize: a mean difference under 2 levels of 255, no pixel off by more than 40."""
    rng = np.random.default_rng(3)
    small = rng.integers(0, 256, (27, 48, 3), dtype=np.uint8)
    photo = Image.fromarray(small).resize((1920, 1080), Image.BICUBIC)
    data = imagekit.encode(photo, "JPEG", quality=90)
    full = Image.open(__import__("io").BytesIO(data)).convert("RGB")
    expected = np.asarray(full.resize((224, 224), Image.BILINEAR)).astype(int)
    got = pixels(data, size=(224, 224)).astype(int)
    assert np.abs(got - expected).mean() < 2
    assert np.abs(got - expected).max() <= 40


@pytest.mark.parametrize("mean, std", [(None, None),
                                       ((120.0, 110.0, 100.0), (60.0, 55.0, 50.0))])
def test_model_input_is_the_nchw_batch_normalised_and_padded_with_blanks(mean, std):
    spec = dataclasses.replace(
        parse_settings({"spark.mxsql.model.default.uri": "/models/m"}).model("default"),
        mean=mean, std=std)
    rng = np.random.default_rng(1)
    batch = rng.integers(0, 256, (3, 5, 7, 3), dtype=np.uint8)
    x = model_input(spec, batch, 4)
    expected = np.zeros((4, 3, 5, 7), np.float32)
    expected[:3] = batch.transpose(0, 3, 1, 2)
    if mean is not None:
        expected -= np.array(mean, np.float32).reshape(1, 3, 1, 1)
        expected /= np.array(std, np.float32).reshape(1, 3, 1, 1)
    assert x.dtype == np.float32 and x.flags.c_contiguous
    assert np.array_equal(x, expected)
