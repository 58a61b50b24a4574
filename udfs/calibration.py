"""A model's calibration images (``spark.mxsql.model.NAME.calibration``): listed, keyed, decoded.

The set is the first ``calibrationImages`` files under a local folder (a path or
``file://``) or an ``s3://`` prefix, in path order; names starting with ``.`` or ``_``
(hidden files, ``_SUCCESS``) are skipped, as Spark's file listing does. Each image is
identified by its path, size and a hash of its content (an S3 object's ETag), so a
changed set is noticed without reading an unchanged S3 one again.
"""

import hashlib
import os
import urllib.parse
from typing import Iterator, List, NamedTuple

import numpy as np

from mxsql.udfs import images
from mxsql.udfs.config import ModelSpec, Settings
from mxsql.udfs.errors import ModelLoadError
from mxsql.udfs.s3.client import S3_SCHEMES, s3_client, s3_reason, split_s3_uri

__all__ = ["CalibrationImage", "list_images", "load_pixels"]


class CalibrationImage(NamedTuple):
    """One file of the set: where it is, its size in bytes, and a hash of its content."""

    uri: str
    size: int
    digest: str


def _skipped(name: str) -> bool:
    return name.startswith((".", "_"))


def _local_folder(location: str) -> str:
    if location.startswith("file://"):
        return urllib.parse.unquote(urllib.parse.urlparse(location).path)
    return os.path.abspath(os.path.expanduser(location))


def _local_files(folder: str) -> Iterator[str]:
    """Files under ``folder`` in the order of their full paths ("a/b.png" before "a/b/c")."""
    with os.scandir(folder) as it:
        entries = [e for e in it if not _skipped(e.name)]
    entries.sort(key=lambda e: e.name + ("/" if e.is_dir() else ""))
    for entry in entries:
        if entry.is_dir():
            yield from _local_files(entry.path)
        elif entry.is_file():
            yield entry.path


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _s3_objects(spec: ModelSpec, settings: Settings, location: str) -> Iterator[CalibrationImage]:
    try:
        bucket, prefix = split_s3_uri(location)
    except ValueError as e:
        raise ModelLoadError(f"{spec.key('calibration')}: {e}") from e
    pages = s3_client(settings.s3).get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix)
    try:
        for page in pages:
            for item in page.get("Contents", []):
                key = item["Key"]
                if key.endswith("/") or _skipped(key.rpartition("/")[2]):
                    continue
                yield CalibrationImage(f"s3://{bucket}/{key}", item["Size"],
                                       item["ETag"].strip('"'))
    except Exception as e:
        raise ModelLoadError(
            f"{spec.key('calibration')}: cannot list {location}: "
            f"{s3_reason(e, bucket, prefix, settings.s3)}") from e


def list_images(spec: ModelSpec, settings: Settings) -> List[CalibrationImage]:
    """The first ``calibrationImages`` files of the model's calibration set, in path order.

    Raises ModelLoadError naming the key when the location cannot be read or holds no file.
    """
    location = spec.calibration
    scheme = urllib.parse.urlparse(location).scheme
    wanted = spec.calibration_images
    if scheme in S3_SCHEMES:
        found = []
        for image in _s3_objects(spec, settings, location):
            found.append(image)
            if len(found) == wanted:
                break
    elif scheme in ("", "file"):
        folder = _local_folder(location)
        if not os.path.isdir(folder):
            raise ModelLoadError(
                f"{spec.key('calibration')}: {folder} is not a folder: give a folder, file:// "
                "or s3:// prefix of images like those the model will classify")
        found = []
        try:
            for path in _local_files(folder):
                found.append(CalibrationImage(path, os.path.getsize(path), _sha256(path)))
                if len(found) == wanted:
                    break
        except OSError as e:
            raise ModelLoadError(
                f"{spec.key('calibration')}: cannot read {e.filename or folder}: "
                f"{e.strerror}") from e
    else:
        raise ModelLoadError(
            f"{spec.key('calibration')}: unsupported scheme '{scheme}://' (use a folder, "
            "file:// or s3://)")
    if not found:
        raise ModelLoadError(
            f"{spec.key('calibration')}: no images under {location}: give a folder, file:// "
            "or s3:// prefix of images like those the model will classify")
    return found


def _read(spec: ModelSpec, settings: Settings, image: CalibrationImage) -> bytes:
    if image.uri.startswith("s3://"):
        bucket, key = split_s3_uri(image.uri)
        try:
            return s3_client(settings.s3).get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as e:
            raise ModelLoadError(
                f"{spec.key('calibration')}: cannot read {image.uri}: "
                f"{s3_reason(e, bucket, key, settings.s3)}") from e
    try:
        with open(image.uri, "rb") as f:
            return f.read()
    except OSError as e:
        raise ModelLoadError(
            f"{spec.key('calibration')}: cannot read {image.uri}: {e.strerror}") from e


def load_pixels(spec: ModelSpec, settings: Settings,
                found: List[CalibrationImage]) -> np.ndarray:
    """The set's images decoded as the model's input, uint8 (N, H, W, C).

    An image that cannot be read or decoded is a ModelLoadError naming the key and the
    file: calibrating on fewer images than configured would go unnoticed.
    """
    pixels = []
    for image in found:
        data = _read(spec, settings, image)
        try:
            pixels.append(images.load_pixels(
                data, input_size=spec.input_size, channels=spec.channels, resize=spec.resize,
                max_pixels=settings.max_image_pixels))
        except images.UnreadableImage as e:
            raise ModelLoadError(
                f"{spec.key('calibration')}: {image.uri} is not an image the model can read "
                f"({e}): remove it from the calibration set") from e
    return np.stack(pixels)
