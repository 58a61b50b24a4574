"""The classic recipe as published (path 4): the AWS blog's MXNet + Spark inference.

Its worker code in its own shape, on local files instead of S3: the list of files is
padded with repeats of its first files to a whole number of batches, one partition a
batch; a partition reads its files one after another, decodes each image at full size,
converts it to RGB and resizes it to 224x224 with Lanczos (Pillow's old ANTIALIAS),
stacks them, and runs a singleton ``mx.mod.Module`` bound for the batch; each image's
top 5 classes become strings; the driver collects them and drops the padding.
None of mxsql's decode or network code is used: this row measures what moving from
the recipe to mxsql gains, where ``classic_shape`` measures the orchestration alone.
"""

import io
import threading
import time
from functools import partial
from itertools import cycle, islice
from typing import Iterable, List, Tuple

import numpy as np

from bench.baselines import log_load
from mxsql.udfs.config import ModelSpec

__all__ = ["run_published"]

_SIDE = 224
_TOP = 5
_state = {}
_lock = threading.Lock()


def _module(spec: ModelSpec, batch_size: int) -> Tuple[object, List[str]]:
    """The worker's singleton: the checkpoint bound with the Module API, and its labels."""
    with _lock:
        if "module" not in _state:
            import mxnet as mx

            started = time.monotonic()
            symbol = mx.sym.load(spec.symbol_uri)
            saved = mx.nd.load(spec.params_uri)
            params = {kind: {name.split(":", 1)[1]: value for name, value in saved.items()
                             if name.startswith(kind + ":")} for kind in ("arg", "aux")}
            module = mx.mod.Module(symbol=symbol, label_names=None, context=mx.cpu())
            module.bind(for_training=False, data_shapes=[("data", (batch_size, 3, _SIDE, _SIDE))])
            module.set_params(params["arg"], params["aux"], allow_missing=True)
            with open(spec.labels_uri, encoding="utf-8") as f:
                labels = [line.strip() for line in f]
            _state.update(module=module, labels=labels)
            log_load(spec, started)
        return _state["module"], _state["labels"]


def _decode(data: bytes) -> np.ndarray:
    """One image as a (1, 3, 224, 224) uint8 array: full decode, RGB, Lanczos resize."""
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB").resize((_SIDE, _SIDE), Image.LANCZOS)
    return np.asarray(img).transpose(2, 0, 1)[None]


def _top5(module, labels: List[str], batch: np.ndarray) -> List[List[str]]:
    import mxnet as mx

    module.forward(mx.io.DataBatch(data=[mx.nd.array(batch)]), is_train=False)
    out = []
    for probs in module.get_outputs()[0].asnumpy():
        best = np.argsort(probs)[::-1][:_TOP]
        out.append([f"probability={probs[i]:f}, class={labels[i]}" for i in best])
    return out


def _partition(spec: ModelSpec, batch_size: int, paths: Iterable[str]) -> List[List[str]]:
    """One partition, one batch: read every file, then decode them all, then predict."""
    module, labels = _module(spec, batch_size)
    contents = []
    for path in paths:
        with open(path, "rb") as f:
            contents.append(f.read())
    return _top5(module, labels, np.concatenate([_decode(c) for c in contents]))


def run_published(spark, spec: ModelSpec, batch_size: int, paths: List[str]) -> int:
    """Classify ``paths`` the recipe's way, collected to the driver; returns the rows."""
    short = -len(paths) % batch_size
    keys = list(paths) + list(islice(cycle(paths), short))
    rdd = spark.sparkContext.parallelize(keys, len(keys) // batch_size)
    return len(rdd.mapPartitions(partial(_partition, spec, batch_size)).collect()[:len(paths)])
