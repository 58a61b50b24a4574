"""Models: load once per Python worker, check, and run on whole batches.

A model is its checked checkpoint (``checkpoint.py``) and the network an engine built from
it (``engines.py``: MXNet in FP32 or INT8, ONNX Runtime). Preprocessing, batching, the
softmax rule and errors are the same whatever the engine.

The cache is a module global of this importable module, so UDF closures refer to it
by reference and it lives as long as the Python worker that Spark reuses.
"""

import os
import threading
import time
from typing import Dict, Iterator, Optional, Tuple

import numpy as np

from mxsql.udfs import artifacts, engines, logs
from mxsql.udfs.checkpoint import Checkpoint, first_line, model_input, probabilities
from mxsql.udfs.config import ModelSpec, Settings
from mxsql.udfs.errors import InferenceError

__all__ = ["LoadedModel", "get_model", "SHORT_BATCH"]

# The batch shape a short batch runs in (see LoadedModel.predict).
SHORT_BATCH = 4

_log = logs.logger()

_cache: Dict[tuple, "LoadedModel"] = {}
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
                    f"model '{self.spec.name}' ({self.spec.uri}) failed on a batch of "
                    f"{len(chunk)} images: {first_line(e)}"
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
    """The loaded model for ``spec``: fetched and loaded on first use, then reused."""
    cache_key = (spec, settings.cache_dir, settings.s3)
    model = _cache.get(cache_key)
    if model is not None:
        return model
    with _cache_lock:
        model = _cache.get(cache_key)
        if model is None:
            model = _load(spec, settings)
            _cache[cache_key] = model
    return model


def _load(spec: ModelSpec, settings: Settings) -> LoadedModel:
    started = time.monotonic()
    common = dict(cache_dir=settings.cache_dir, s3=settings.s3)
    symbol = artifacts.fetch(spec.symbol_uri, key=spec.key("uri"), sha256=spec.sha256_symbol,
                             checksum_key=spec.key("sha256.symbol"), **common)
    params = artifacts.fetch(spec.params_uri, key=spec.key("uri"), sha256=spec.sha256_params,
                             checksum_key=spec.key("sha256.params"), **common)
    labels_key = spec.key("labels") if spec.labels else spec.key("uri")
    labels = artifacts.fetch(spec.labels_uri, key=labels_key, sha256=spec.sha256_labels,
                             checksum_key=spec.key("sha256.labels"), **common)
    model = LoadedModel(spec, symbol, params, labels, settings=settings)
    _log.info("%s", logs.loaded_model_line(spec.name, spec.uri, time.monotonic() - started,
                                           os.getpid()))
    return model
