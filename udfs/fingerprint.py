"""A model's fingerprint: what its outputs depend on, as a short digest.

Predictions record the fingerprint of the model that made them (``sql/backfill.sql``), so
a re-run can tell predictions that still hold from stale ones: the same fingerprint means
the same outputs for the same image, a new one means every image must be classified again.
"""

import hashlib
import json
import os
import threading
from typing import Dict, Optional, Tuple

from mxsql.udfs import artifacts
from mxsql.udfs.config import ModelSpec, Settings

__all__ = ["artifact_checksums", "model_fingerprint", "file_sha256"]

# How many hex digits a fingerprint keeps: 64 bits, ample to tell apart the versions of
# a table's models, and short enough to read in a query's output.
_DIGITS = 16

_hashed: Dict[Tuple[str, int, int], str] = {}
_hashed_lock = threading.Lock()


def file_sha256(path: str) -> str:
    """SHA-256 of a local file, hashed once per process while its (path, size, mtime) hold.

    A file rewritten in place gets a new mtime (and usually size), so it is hashed again;
    an unchanged one costs one ``stat``.
    """
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    with _hashed_lock:
        known = _hashed.get(key)
    if known is not None:
        return known
    digest = artifacts.sha256_of(path)
    with _hashed_lock:
        _hashed[key] = digest
    return digest


def artifact_checksums(spec: ModelSpec, settings: Settings) -> Tuple[str, str, str]:
    """``(sha256_symbol, sha256_params, sha256_labels)`` of ``spec``'s files.

    A configured ``sha256.*`` is taken as it is (the model does not load unless its file
    matches it); otherwise the local file, or the copy fetched into ``cacheDir``
    (downloading it if needed, as loading the model would), is hashed. Raises
    ModelLoadError naming the key when a file cannot be found or fetched.
    """
    labels_key = spec.key("labels") if spec.labels else spec.key("uri")
    wanted = (
        (spec.symbol_uri, spec.key("uri"), spec.sha256_symbol, spec.key("sha256.symbol")),
        (spec.params_uri, spec.key("uri"), spec.sha256_params, spec.key("sha256.params")),
        (spec.labels_uri, labels_key, spec.sha256_labels, spec.key("sha256.labels")),
    )
    return tuple(
        configured or _fetched_sha256(uri, key, checksum_key, settings)
        for uri, key, configured, checksum_key in wanted
    )


def _fetched_sha256(uri: str, key: str, checksum_key: str, settings: Settings) -> str:
    path = artifacts.fetch(uri, key=key, cache_dir=settings.cache_dir, s3=settings.s3,
                           checksum_key=checksum_key)
    return file_sha256(path)


def model_fingerprint(spec: ModelSpec, settings: Settings, *,
                      checksums: Optional[Tuple[str, str, str]] = None) -> str:
    """A short, stable hex digest of what ``spec``'s outputs depend on.

    In: the SHA-256 of the symbol, params and labels files (``checksums`` when the caller
    has them, else :func:`artifact_checksums`), and the settings that change outputs:
    input size, channels, mean, std, resize, output (the softmax rule), precision and, for
    int8, the calibration prefix and image count (the quantization depends on them).

    Out, on purpose: the model's name and ``uri`` (the same files moved elsewhere give
    the same outputs); ``epoch``, which only chooses the params file, whose checksum is in;
    ``engine``, because MXNet and ONNX Runtime run the same checkpoint with the same
    arithmetic and differ by float rounding (about 5e-7 relative, top-1 equal), as one
    engine does on two CPUs, and switching engines must not re-classify a whole table;
    ``batchSize`` and the other global keys, which change speed, not outputs. A changed
    calibration image under an unchanged prefix is not seen: change the prefix or count.
    """
    symbol, params, labels = checksums or artifact_checksums(spec, settings)
    int8 = spec.precision == "int8"
    parts = {
        "sha256": [symbol, params, labels],
        "input_size": list(spec.input_size),
        "channels": spec.channels,
        "mean": list(spec.mean) if spec.mean else None,
        "std": list(spec.std) if spec.std else None,
        "resize": spec.resize,
        "output": spec.output,
        "precision": spec.precision,
        "calibration": [spec.calibration, spec.calibration_images] if int8 else None,
    }
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:_DIGITS]
