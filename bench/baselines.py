"""Worker-side code of the paths mxsql is compared with: (3), (4) and (5).

Each uses the same network (mxsql's ``LoadedModel``, the same forward and padding) and
the same decode (``images.load_pixels``), so that the comparison is about how Spark
feeds the model. Each keeps its own singleton model per Python worker (not mxsql's
cache, so no path profits from another's load) and logs its load the way mxsql does.
"""

import os
import threading
import time
from typing import Dict, Iterable, Iterator, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mxsql.udfs import images, logs
from mxsql.udfs.config import ModelSpec, Settings

_log = logs.logger("mxsql.bench")

_models: Dict[Tuple[str, ModelSpec], object] = {}
_lock = threading.Lock()


def log_load(spec: ModelSpec, started: float) -> None:
    """Log a model load the way mxsql's workers do, so the benchmark can count it."""
    _log.info("%s", logs.loaded_model_line(spec.name, spec.uri, time.monotonic() - started,
                                           os.getpid()))


def _model(path: str, spec: ModelSpec, settings: Optional[Settings] = None):
    """The singleton model of ``path`` in this Python worker (``settings`` give the INT8
    engine its cache folder)."""
    key = (path, spec)
    with _lock:
        if key not in _models:
            from mxsql.udfs.models import LoadedModel

            started = time.monotonic()
            _models[key] = LoadedModel(spec, spec.symbol_uri, spec.params_uri, spec.labels_uri,
                                       settings=settings)
            log_load(spec, started)
        return _models[key]


def _pixels(data: bytes, spec: ModelSpec) -> np.ndarray:
    return images.load_pixels(data, input_size=spec.input_size, channels=spec.channels,
                              resize=spec.resize, max_pixels=2 ** 31)


def make_predict(spec: ModelSpec, batch_size: int, settings: Optional[Settings] = None):
    """``make_predict_fn`` for ``pyspark.ml.functions.predict_batch_udf`` (path 3)."""
    model = _model("predict_batch_udf", spec, settings)
    labels = np.asarray(model.labels, dtype=object)

    def predict(contents: np.ndarray) -> Dict[str, np.ndarray]:
        pixels = np.stack([_pixels(c, spec) for c in contents])
        p = model.predict(pixels, batch_size)
        best = p.argmax(axis=1)
        return {"label": labels[best], "probability": p[np.arange(len(best)), best],
                "class_index": best.astype(np.int32)}

    return predict


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def classic_partition(spec: ModelSpec, batch_size: int, paths: Iterable[str]) -> Iterator[tuple]:
    """The classic recipe (path 4): a partition of file paths, a singleton model, fixed
    batches (the last padded with blank images); each batch is read, decoded, then run,
    one after the other (no overlap)."""
    model = _model("classic", spec)

    def run(batch):
        pixels = np.stack([_pixels(_read(path), spec) for path in batch])
        padded = np.zeros((batch_size,) + pixels.shape[1:], np.uint8)
        padded[:len(batch)] = pixels
        p = model.predict(padded, batch_size)[:len(batch)]
        best = p.argmax(axis=1)
        for path, b, prob in zip(batch, best, p[np.arange(len(best)), best]):
            yield path, model.labels[b], float(prob)

    batch = []
    for path in paths:
        batch.append(path)
        if len(batch) == batch_size:
            yield from run(batch)
            batch = []
    if batch:
        yield from run(batch)


def content_lengths(batches: Iterator[pa.Array]) -> Iterator[pa.Array]:
    """The body of the "read" path's Arrow UDF: each file's length in bytes. It reads the
    batches Spark hands over, as mx_classify does, and does nothing else with them."""
    for batch in batches:
        yield pc.binary_length(batch)


def classify_row(spec: ModelSpec, content: bytes) -> tuple:
    """A row-at-a-time Python UDF (path 5): decode one image, run a batch of one."""
    model = _model("row", spec)
    p = model.predict(_pixels(content, spec)[None], 1)[0]
    best = int(p.argmax())
    return model.labels[best], float(p[best]), best
