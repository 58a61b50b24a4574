"""MXNet checkpoints: load once per Python worker, check, and run on whole batches.

The network runs on MXNet, or on ONNX Runtime for a model whose engine key asks for it
(``onnx_engine.py``); checks, preprocessing, batching and softmax are the same for both.

The cache is a module global of this importable module, so UDF closures refer to it
by reference and it lives as long as the Python worker that Spark reuses.
"""

import json
import os
import re
import sys
import threading
import time
from typing import Dict, Iterator, List, Tuple

import numpy as np

from mxsql.udfs import artifacts, logs
from mxsql.udfs.config import ModelSpec, Settings
from mxsql.udfs.errors import InferenceError, ModelLoadError

__all__ = ["LoadedModel", "get_model", "read_labels", "SOFTMAX_OPS", "SHORT_BATCH"]

SOFTMAX_OPS = frozenset({"SoftmaxOutput", "softmax", "SoftmaxActivation"})
# The batch shape a short batch runs in (see LoadedModel.predict).
SHORT_BATCH = 4
_WORDNET_ID = re.compile(r"^n\d{8}\s+")
# Optional imports of MXNet that mxsql does not use (see _import_mxnet).
_SKIPPED_BY_MXNET = ("sklearn", "scipy")

_log = logs.logger()

_cache: Dict[tuple, "LoadedModel"] = {}
_cache_lock = threading.Lock()


def read_labels(path: str) -> List[str]:
    """One label a line; a leading WordNet id (``n01440764 tench``) is dropped."""
    with open(path, encoding="utf-8") as f:
        lines = [line.strip() for line in f]
    while lines and not lines[-1]:
        lines.pop()
    return [_WORDNET_ID.sub("", line) for line in lines]


def _first_line(error: Exception) -> str:
    """The line of an error that says what went wrong (MXNet's start with a C++ trace)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("MXNetError:"):
            return line[len("MXNetError:"):].strip()
    return lines[0] if lines else type(error).__name__


def _import_mxnet():
    """Import MXNet without scikit-learn, scipy and setuptools.

    MXNet imports scikit-learn and scipy only if they are installed, and only for code
    mxsql never runs: mxnet.model subclasses scikit-learn's BaseEstimator in the
    deprecated FeedForward API, and scipy serves quantization calibration, test
    utilities and conversion of scipy sparse matrices. It imports distutils for
    LooseVersion, which setuptools' import hook (where installed) serves by importing
    all of setuptools; the standard library's distutils does as well. Together they are
    nearly half of the import's CPU time (1.3 s against 0.75 s here), paid again by every
    fresh worker (after a LIMIT query, for one).
    """
    if "mxnet" in sys.modules:
        return sys.modules["mxnet"]
    hidden = [name for name in _SKIPPED_BY_MXNET if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # makes `import name` raise ImportError
    hooks = _setuptools_distutils_hooks()
    for hook in hooks:
        sys.meta_path.remove(hook)
    try:
        import mxnet
    finally:
        for name in hidden:
            del sys.modules[name]
        sys.meta_path[:0] = hooks
    return mxnet


def _setuptools_distutils_hooks() -> list:
    """setuptools' distutils import hooks, where the standard library has its own."""
    if sys.version_info >= (3, 12) or "distutils" in sys.modules:
        return []
    return [hook for hook in sys.meta_path if type(hook).__module__ == "_distutils_hack"]


class LoadedModel:
    """A checked MXNet network bound for inference, with its labels."""

    def __init__(self, spec: ModelSpec, symbol_path: str, params_path: str, labels_path: str):
        os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")  # one log line per load, not two
        mx = _import_mxnet()

        self.spec = spec
        self._mx = mx
        self._lock = threading.Lock()
        try:
            self._symbol = mx.sym.load(symbol_path)
        except Exception as e:
            raise ModelLoadError(
                f"{spec.key('uri')}: {symbol_path} is not an MXNet symbol file: {_first_line(e)}"
            ) from None
        try:
            saved = mx.nd.load(params_path)
        except Exception as e:
            raise ModelLoadError(
                f"{spec.key('uri')}: {params_path} is not an MXNet params file: {_first_line(e)}"
            ) from None
        try:
            self.labels = read_labels(labels_path)
        except (OSError, UnicodeDecodeError) as e:
            raise ModelLoadError(
                f"{spec.key('labels')}: cannot read {labels_path} as UTF-8 text, one label a "
                f"line: {e}"
            ) from None
        self._arg_params, self._aux_params = self._split_params(saved)
        self._data_name = self._input_name()
        self.num_classes = self._check_shapes()
        if len(self.labels) != self.num_classes:
            raise ModelLoadError(
                f"{spec.key('labels')}: {len(self.labels)} labels in {labels_path} but the "
                f"network outputs {self.num_classes} classes"
            )
        self.outputs_probabilities = self._outputs_probabilities()
        self._executors: Dict[int, object] = {}
        self._onnx = None
        self._errors: tuple = (mx.base.MXNetError,)
        self._mean = None if spec.mean is None else np.array(spec.mean, np.float32).reshape(1, -1, 1, 1)
        self._std = None if spec.std is None else np.array(spec.std, np.float32).reshape(1, -1, 1, 1)

    def use_onnxruntime(self, *, cache_dir: str, symbol_path: str, params_path: str) -> None:
        """Run the network with ONNX Runtime instead of MXNet (``engine=onnxruntime``)."""
        from mxsql.udfs import onnx_engine

        self._onnx = onnx_engine.load(
            self.spec, self._symbol, {**self._arg_params, **self._aux_params},
            symbol_path=symbol_path, params_path=params_path, cache_dir=cache_dir)
        self._errors = self._onnx.errors
        self._arg_params = self._aux_params = None  # the session holds its own copy

    def _split_params(self, saved):
        auxs = set(self._symbol.list_auxiliary_states())
        arg_params, aux_params = {}, {}
        for name, value in saved.items():
            kind, _, bare = name.partition(":")
            if not bare:
                kind, bare = ("aux" if name in auxs else "arg"), name
            (aux_params if kind == "aux" else arg_params)[bare] = value
        return arg_params, aux_params

    def _input_name(self) -> str:
        inputs = [
            a for a in self._symbol.list_arguments()
            if a not in self._arg_params and not a.endswith("label")
        ]
        if len(inputs) != 1:
            missing = [a for a in inputs if a != "data"] or ["an input"]
            raise ModelLoadError(
                f"{self.spec.key('uri')}: the params file lacks {', '.join(missing)} "
                f"(is {self.spec.key('epoch')}={self.spec.epoch} the right checkpoint?)"
            )
        return inputs[0]

    def _input_shape(self, batch: int) -> Tuple[int, int, int, int]:
        height, width = self.spec.input_size
        return batch, self.spec.channels, height, width

    def _check_shapes(self) -> int:
        shape = self._input_shape(1)
        try:
            known = {name: value.shape for name, value in self._arg_params.items()}
            _, out_shapes, _ = self._symbol.infer_shape(**known, **{self._data_name: shape})
        except Exception as e:
            raise ModelLoadError(
                f"{self.spec.key('inputSize')}: the network rejects input shape "
                f"{shape[1:]} (channels, height, width): {_first_line(e)}; set "
                f"{self.spec.key('inputSize')} and {self.spec.key('channels')} to what it "
                "was trained on"
            ) from None
        if not out_shapes or out_shapes[0] is None:
            raise ModelLoadError(
                f"{self.spec.key('inputSize')}: cannot infer the network's output for "
                f"input shape {shape[1:]}"
            )
        return int(np.prod(out_shapes[0][1:]))

    def _outputs_probabilities(self) -> bool:
        if self.spec.output != "auto":
            return self.spec.output == "probabilities"
        graph = json.loads(self._symbol.tojson())
        head = graph["heads"][0][0]
        return graph["nodes"][head]["op"] in SOFTMAX_OPS

    def _executor(self, batch: int, batch_size: int):
        exe = self._executors.get(batch)
        if exe is None:
            full = self._executors.get(batch_size)
            if full is None:
                full = self._symbol.simple_bind(
                    self._mx.cpu(), grad_req="null",
                    **{self._data_name: self._input_shape(batch_size)},
                )
                full.copy_params_from(self._arg_params, self._aux_params,
                                      allow_extra_params=True)
                self._executors[batch_size] = full
            # A smaller batch shares the full executor's parameters and memory; other
            # inputs (a SoftmaxOutput's label) follow the new batch size.
            exe = full if batch == batch_size else full.reshape(
                partial_shaping=True, **{self._data_name: self._input_shape(batch)})
            self._executors[batch] = exe
        return exe

    def predict(self, pixels: np.ndarray, batch_size: int) -> np.ndarray:
        """Class probabilities, shape (N, classes), for uint8 pixels of shape (N, H, W, C).

        Runs the network ``batch_size`` images at a time, and a short batch in pieces of
        ``SHORT_BATCH`` images, the last one padded (10 = 4 + 4 + 2 run as 4): a worker
        binds two batch shapes, whatever its tasks' sizes, their bad rows or the models
        sharing a batch. Each executor's fused convolutions hold their own copy of the
        weights with batch norm folded in (45 MB for ResNet-18), so one executor per
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
                    [self._forward(piece, shape, batch_size)
                     for piece, shape in _pieces(chunk, batch_size)])
            except self._errors as e:
                raise InferenceError(
                    f"model '{self.spec.name}' ({self.spec.uri}) failed on a batch of "
                    f"{len(chunk)} images: {_first_line(e)}"
                ) from None
        return out

    def _forward(self, chunk: np.ndarray, shape: int, batch_size: int) -> np.ndarray:
        """Scores of ``chunk``'s images, run as a batch of ``shape`` (blank images pad it)."""
        rows = len(chunk)
        x = np.zeros((shape, chunk.shape[3], chunk.shape[1], chunk.shape[2]), np.float32)
        x[:rows] = chunk.transpose(0, 3, 1, 2)
        if self._mean is not None:
            x -= self._mean
        if self._std is not None:
            x /= self._std
        with self._lock:
            if self._onnx is not None:
                scores = self._onnx.run(x)
            else:
                exe = self._executor(shape, batch_size)
                exe.forward(is_train=False, **{self._data_name: x})
                scores = exe.outputs[0].asnumpy()
        scores = scores.reshape(shape, -1)[:rows].astype(np.float64)
        if self.outputs_probabilities:
            return scores
        scores -= scores.max(axis=1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        return scores


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
    model = LoadedModel(spec, symbol, params, labels)
    if spec.engine == "onnxruntime":
        model.use_onnxruntime(cache_dir=settings.cache_dir, symbol_path=symbol, params_path=params)
    _log.info(
        "loaded model '%s' from %s in %.2f s (pid %d)",
        spec.name, spec.uri, time.monotonic() - started, os.getpid(),
    )
    return model
