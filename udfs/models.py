"""Models: load once per Python worker, check, and run on whole batches.

A model is its checked checkpoint (``checkpoint.py``) and the network an engine built from
it (``engines.py``: MXNet in FP32 or INT8, ONNX Runtime). Preprocessing, batching, the
softmax rule and errors are the same whatever the engine.

The cache is a module global of this importable module, so UDF closures refer to it
by reference and it lives as long as the Python worker that Spark reuses. It holds one
model per name: a model is kept while its whole spec and its files are the ones it was
loaded from, and replaced (the old one dropped) when either changed, so a session's
``SET spark.mxsql.model.…`` or a file rewritten at the same URI takes effect on the next
query and a worker never holds more models than there are names.
"""

import os
import threading
import time
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple

import numpy as np

from mxsql.udfs import artifacts, engines, fingerprint, logs
from mxsql.udfs.checkpoint import Checkpoint, first_line, model_input, probabilities
from mxsql.udfs.config import ModelSpec, Settings
from mxsql.udfs.errors import InferenceError

__all__ = ["LoadedModel", "get_model", "SHORT_BATCH"]

# The batch shape a short batch runs in (see LoadedModel.predict).
SHORT_BATCH = 4

_log = logs.logger()


class _Version(NamedTuple):
    """What one artifact was when its model loaded: its configured SHA-256 (then the file
    is never looked at again: the spec holds it), else the file's SHA-256 and the stat
    (size, mtime, inode) that stands for it until the file changes."""

    sha256: str
    stat: Optional[Tuple[int, int, int, int]]


class _Entry(NamedTuple):
    spec: ModelSpec
    model: "LoadedModel"
    versions: Tuple[_Version, ...]
    checked_in: Optional[int]  # the task attempt that last found the files unchanged


_cache: Dict[tuple, _Entry] = {}
_cache_lock = threading.Lock()


class LoadedModel:
    """A checked checkpoint's labels and the network its engine built, ready to predict.

    ``settings`` gives the engine its cache folder and S3 access (for INT8's calibration
    images); unset, the defaults.
    """

    def __init__(self, spec: ModelSpec, symbol_path: str, params_path: str, labels_path: str,
                 *, settings: Optional[Settings] = None):
        checkpoint = Checkpoint(spec, symbol_path, params_path, labels_path)
        self.spec = spec
        self.labels = checkpoint.labels
        self.num_classes = checkpoint.num_classes
        self.outputs_probabilities = checkpoint.outputs_probabilities
        self.network = engines.build(checkpoint, settings or Settings())
        self._lock = threading.Lock()

    def predict(self, pixels: np.ndarray, batch_size: int) -> np.ndarray:
        """Class probabilities, shape (N, classes), for uint8 pixels of shape (N, H, W, C).

        Runs the network ``batch_size`` images at a time, and a short batch in pieces of
        ``SHORT_BATCH`` images, the last one padded (10 = 4 + 4 + 2 run as 4): a worker
        binds two batch shapes, whatever its tasks' sizes, their bad rows or the models
        sharing a batch. Each MXNet executor's fused convolutions hold their own copy of
        the weights with batch norm folded in (45 MB for ResNet-18), so one executor per
        short size grew a worker by 300 MB; at most SHORT_BATCH - 1 blank images are
        computed, where padding to ``batch_size`` nearly doubled a short batch's cost.
        Raises InferenceError, naming the model, when the network fails on the input.
        """
        n = len(pixels)
        out = np.empty((n, self.num_classes), dtype=np.float64)
        for start in range(0, n, batch_size):
            chunk = pixels[start:start + batch_size]
            try:
                out[start:start + len(chunk)] = np.concatenate(
                    [self._forward(piece, shape) for piece, shape in _pieces(chunk, batch_size)])
            except self.network.errors as e:
                raise InferenceError(
                    f"model '{self.spec.name}' ({artifacts.shown(self.spec.uri)}) failed on a "
                    f"batch of {len(chunk)} images: {first_line(e)}"
                ) from e
        return out

    def _forward(self, chunk: np.ndarray, shape: int) -> np.ndarray:
        """Probabilities of ``chunk``'s images, run as a batch of ``shape`` (blank images
        pad it)."""
        x = model_input(self.spec, chunk, shape)
        with self._lock:
            scores = self.network.run(x)
        return probabilities(scores.reshape(shape, -1)[:len(chunk)], self.outputs_probabilities)


def _pieces(chunk: np.ndarray, batch_size: int) -> Iterator[Tuple[np.ndarray, int]]:
    """(images, batch shape to run them as): a full batch as it is, a short one in
    pieces of SHORT_BATCH (fewer when batch_size is smaller), the last padded."""
    if len(chunk) == batch_size:
        yield chunk, batch_size
        return
    shape = min(SHORT_BATCH, batch_size)
    for start in range(0, len(chunk), shape):
        yield chunk[start:start + shape], shape


def get_model(spec: ModelSpec, settings: Settings) -> LoadedModel:
    """The loaded model for ``spec``: fetched and loaded on first use, then reused while
    ``spec`` and its files are unchanged.

    Files without a configured SHA-256 are looked at once per Spark task (a stat, and
    for S3 the HEAD request ``artifacts.fetch`` makes): a file whose stat changed is
    hashed, and the model loads again only if its content did. A model with another spec
    under the same name replaces the one held.
    """
    cache_key = (spec.name, settings.cache_dir, settings.s3)
    task = _task_attempt()
    entry = _cache.get(cache_key)
    if entry is not None and entry.spec == spec and task is not None \
            and entry.checked_in == task:
        return entry.model
    with _cache_lock:
        entry = _cache.get(cache_key)
        if entry is not None and entry.spec == spec:
            versions = _current_versions(spec, settings, entry.versions)
            if versions is not None:
                _cache[cache_key] = entry._replace(versions=versions, checked_in=task)
                return entry.model
            reason = "its files changed"
        else:
            reason = "its settings changed"
        if entry is not None:
            # Dropped before the new one loads: a worker holds one network per name.
            del _cache[cache_key]
            _log.info("model '%s' loads again: %s (pid %d)", spec.name, reason, os.getpid())
        entry = _load(spec, settings, task)
        _cache[cache_key] = entry
    return entry.model


def _task_attempt() -> Optional[int]:
    from pyspark import TaskContext

    context = TaskContext.get()
    return context.taskAttemptId() if context is not None else None


def _artifacts(spec: ModelSpec):
    """(uri, uri's key, configured sha256, its key) of the symbol, params and labels."""
    labels_key = spec.key("labels") if spec.labels else spec.key("uri")
    return (
        (spec.symbol_uri, spec.key("uri"), spec.sha256_symbol, spec.key("sha256.symbol")),
        (spec.params_uri, spec.key("uri"), spec.sha256_params, spec.key("sha256.params")),
        (spec.labels_uri, labels_key, spec.sha256_labels, spec.key("sha256.labels")),
    )


def _stat(path: str) -> Tuple[int, int, int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev


def _current_versions(spec: ModelSpec, settings: Settings,
                      loaded: Tuple[_Version, ...]) -> Optional[Tuple[_Version, ...]]:
    """The artifacts' versions now if their content is the one ``loaded``, else None."""
    current: List[_Version] = []
    for (uri, key, configured, _), was in zip(_artifacts(spec), loaded):
        if configured:
            current.append(was)
            continue
        path = artifacts.fetch(uri, key=key, cache_dir=settings.cache_dir, s3=settings.s3)
        stat = _stat(path)
        if stat != was.stat:
            if fingerprint.file_sha256(path) != was.sha256:
                return None
            was = was._replace(stat=stat)
        current.append(was)
    return tuple(current)


def _load(spec: ModelSpec, settings: Settings, task: Optional[int]) -> _Entry:
    started = time.monotonic()
    paths, versions = [], []
    for uri, key, configured, checksum_key in _artifacts(spec):
        path = artifacts.fetch(uri, key=key, sha256=configured, checksum_key=checksum_key,
                               cache_dir=settings.cache_dir, s3=settings.s3)
        paths.append(path)
        if configured:
            versions.append(_Version(configured, None))
        else:
            stat = _stat(path)  # before hashing: a file rewritten meanwhile differs later
            versions.append(_Version(fingerprint.file_sha256(path), stat))
    model = LoadedModel(spec, *paths, settings=settings)
    _log.info("%s", logs.loaded_model_line(spec.name, artifacts.shown(spec.uri),
                                           time.monotonic() - started, os.getpid()))
    return _Entry(spec, model, tuple(versions), task)
