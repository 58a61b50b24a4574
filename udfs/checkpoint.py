"""MXNet checkpoints: the files, labels, shapes and checks that do not depend on the engine.

A :class:`Checkpoint` is read and checked once per worker; the engine that runs it
(``engines.py``) takes from it the symbol and parameters it needs. Preprocessing and the
softmax rule live here too, so every engine sees the same input and gives the same kind
of output.
"""

import json
import os
import re
import sys
from typing import Dict, List, Sequence, Tuple

import numpy as np

from mxsql.udfs.config import ModelSpec
from mxsql.udfs.errors import ModelLoadError

__all__ = ["Checkpoint", "SOFTMAX_OPS", "first_line", "import_mxnet", "model_input",
           "probabilities", "read_labels", "split_params"]

SOFTMAX_OPS = frozenset({"SoftmaxOutput", "softmax", "SoftmaxActivation"})
_WORDNET_ID = re.compile(r"^n\d{8}\s+")
# Optional imports of MXNet that mxsql does not use (see import_mxnet).
_SKIPPED_BY_MXNET = ("sklearn", "scipy")


def read_labels(path: str) -> List[str]:
    """One label a line; a leading WordNet id (``n01440764 tench``) is dropped."""
    with open(path, encoding="utf-8") as f:
        lines = [line.strip() for line in f]
    while lines and not lines[-1]:
        lines.pop()
    return [_WORDNET_ID.sub("", line) for line in lines]


def first_line(error: Exception) -> str:
    """The line of an error that says what went wrong (MXNet's start with a C++ trace)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("MXNetError:"):
            return line[len("MXNetError:"):].strip()
    return lines[0] if lines else type(error).__name__


def import_mxnet():
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
    if sys.modules.get("mxnet") is not None:  # None: blocked, `import` raises ImportError
        return sys.modules["mxnet"]
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")  # one log line per load, not two
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


def split_params(symbol, saved: Dict[str, object]) -> Tuple[dict, dict]:
    """(arg_params, aux_params) by bare name from a params file's ``arg:``/``aux:`` names."""
    auxs = set(symbol.list_auxiliary_states())
    arg_params, aux_params = {}, {}
    for name, value in (saved or {}).items():  # an empty file loads as an empty list
        kind, _, bare = name.partition(":")
        if not bare:
            kind, bare = ("aux" if name in auxs else "arg"), name
        (aux_params if kind == "aux" else arg_params)[bare] = value
    return arg_params, aux_params


def _require_mxnet(spec: ModelSpec):
    """MXNet, or a ModelLoadError saying what to install or which engine to use."""
    try:
        return import_mxnet()
    except ImportError as e:
        via = (f"{spec.key('precision')}={spec.precision} runs only through MXNet; "
               if spec.precision != "fp32" else "")
        raise ModelLoadError(
            f"{spec.key('engine')}={spec.engine}: MXNet cannot be imported in this Python "
            f"{sys.version_info.major}.{sys.version_info.minor} worker ({e}); {via}install it "
            f"with `pip install mxnet==1.9.1` (Python <= 3.11 only), or set "
            f"{spec.key('engine')}=onnxruntime"
        ) from e


class Checkpoint:
    """A checked MXNet checkpoint: symbol, parameters, labels and shapes, not yet bound.

    ``symbol_path`` and ``params_path`` are the local files it was read from (engines
    that cache a converted network key it by their content).
    """

    def __init__(self, spec: ModelSpec, symbol_path: str, params_path: str, labels_path: str):
        self.spec = spec
        self.symbol_path = symbol_path
        self.params_path = params_path
        self.converted = None  # read without MXNet: its ONNX conversion (onnx_engine)
        if spec.engine == "mxnet":
            self._read_with_mxnet(_require_mxnet(spec))
        else:
            self._read_without_mxnet()
        try:
            self.labels = read_labels(labels_path)
        except (OSError, UnicodeDecodeError) as e:
            raise ModelLoadError(
                f"{spec.key('labels')}: cannot read {labels_path} as UTF-8 text, one label a "
                f"line: {e}"
            ) from None
        if len(self.labels) != self.num_classes:
            raise ModelLoadError(
                f"{spec.key('labels')}: {len(self.labels)} labels in {labels_path} but the "
                f"network outputs {self.num_classes} classes"
            )
        self.outputs_probabilities = self._outputs_probabilities()

    def _read_with_mxnet(self, mx) -> None:
        spec, symbol_path, params_path = self.spec, self.symbol_path, self.params_path
        try:
            self.symbol = mx.sym.load(symbol_path)
        except Exception as e:
            reason = first_line(e)
            if "around ^`" in reason:  # MXNet's JSON errors quote the file's text
                line = re.search(r"Error at Line (\d+)", reason)
                reason = "not JSON that MXNet reads" + (
                    f" (line {int(line.group(1)) + 1})" if line else "")
            raise ModelLoadError(
                f"{spec.key('uri')}: {symbol_path} is not an MXNet symbol file: {reason}"
            ) from None
        try:
            saved = mx.nd.load(params_path)
        except Exception as e:
            raise ModelLoadError(
                f"{spec.key('uri')}: {params_path} is not an MXNet params file: {first_line(e)}"
            ) from None
        self.arg_params, self.aux_params = split_params(self.symbol, saved)
        self.data_name = self._input_name(self.symbol.list_arguments())
        self.num_classes = self._check_shapes()
        self._graph = json.loads(self.symbol.tojson())

    def _read_without_mxnet(self) -> None:
        """The same reading and checks from the files alone: the symbol with the ONNX
        converter's reader, the parameters with ``mxparams``, the output shape by ONNX
        shape inference of the converted graph (engines other than MXNet run that graph)."""
        from mxsql.udfs import mxparams, onnx_export

        spec = self.spec
        self.symbol = None  # no MXNet symbol: engines read ``symbol_path`` themselves
        try:
            self._graph = onnx_export.read_symbol(self.symbol_path)
        except ModelLoadError as e:
            raise ModelLoadError(f"{spec.key('uri')}: {e}") from None
        try:
            saved = mxparams.load(self.params_path)
        except ModelLoadError as e:
            raise ModelLoadError(f"{spec.key('uri')}: {e}") from None
        self.arg_params, self.aux_params = {}, {}
        for name, value in saved:
            kind, _, bare = name.partition(":")
            if not bare:
                kind, bare = "arg", name
            (self.aux_params if kind == "aux" else self.arg_params)[bare] = value
        self.data_name = self._input_name(self._arguments())
        self.num_classes = self._infer_classes()

    def _arguments(self) -> List[str]:
        """The symbol's variables read by some operator, as ``list_arguments`` names them
        (auxiliary states, which the params file tags ``aux:``, left out)."""
        nodes = self._graph["nodes"]
        read = {entry[0] for node in nodes for entry in node.get("inputs", [])}
        return [node["name"] for i, node in enumerate(nodes)
                if node["op"] == "null" and i in read and node["name"] not in self.aux_params]

    def _infer_classes(self) -> int:
        from mxsql.udfs import onnx_engine

        # Kept for the engine: it saves this conversion when the machine has none.
        self.converted = onnx_engine.convert(self.spec, self._graph,
                                             {**self.arg_params, **self.aux_params})
        dims = self.converted.model.graph.output[0].type.tensor_type.shape.dim
        if not dims or not all(d.HasField("dim_value") for d in dims[1:]):
            raise ModelLoadError(
                f"{self.spec.key('inputSize')}: cannot infer the network's output for "
                f"input shape {self.input_shape(1)[1:]}")
        return int(np.prod([d.dim_value for d in dims[1:]]))

    @property
    def label_names(self) -> List[str]:
        """Inputs that only training reads (a SoftmaxOutput's label)."""
        return [a for a in self.symbol.list_arguments()
                if a not in self.arg_params and a != self.data_name]

    def input_shape(self, batch: int) -> Tuple[int, int, int, int]:
        """The network's NCHW input shape for ``batch`` images."""
        height, width = self.spec.input_size
        return batch, self.spec.channels, height, width

    def _input_name(self, arguments: List[str]) -> str:
        inputs = [
            a for a in arguments
            if a not in self.arg_params and not a.endswith("label")
        ]
        if len(inputs) != 1:
            missing = [a for a in inputs if a != "data"] or ["an input"]
            raise ModelLoadError(
                f"{self.spec.key('uri')}: the params file lacks {', '.join(missing)} "
                f"(is {self.spec.key('epoch')}={self.spec.epoch} the right checkpoint?)"
            )
        return inputs[0]

    def _check_shapes(self) -> int:
        shape = self.input_shape(1)
        try:
            known = {name: value.shape for name, value in self.arg_params.items()}
            _, out_shapes, _ = self.symbol.infer_shape(**known, **{self.data_name: shape})
        except Exception as e:
            raise ModelLoadError(
                f"{self.spec.key('inputSize')}: the network rejects input shape "
                f"{shape[1:]} (channels, height, width): {first_line(e)}; set "
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
        head = self._graph["heads"][0][0]
        return self._graph["nodes"][head]["op"] in SOFTMAX_OPS


def _per_channel(values: Sequence[float]) -> np.ndarray:
    return np.array(values, np.float32).reshape(1, -1, 1, 1)


def model_input(spec: ModelSpec, pixels: np.ndarray, batch: int) -> np.ndarray:
    """The float32 NCHW batch of ``batch`` images for uint8 pixels (N, H, W, C), N <= batch:
    the model's mean and std applied, blank images after the N given."""
    n, channels = len(pixels), pixels.shape[3]
    x = np.empty((batch, channels, pixels.shape[1], pixels.shape[2]), np.float32)
    # A channel at a time: a third less CPU than one strided copy of the whole batch into
    # zeros (bench/NOTES.md).
    for c in range(channels):
        x[:n, c] = pixels[..., c]
    x[n:] = 0
    if spec.mean is not None:
        x -= _per_channel(spec.mean)
    if spec.std is not None:
        x /= _per_channel(spec.std)
    return x


def probabilities(scores: np.ndarray, outputs_probabilities: bool) -> np.ndarray:
    """Float64 class probabilities from the network's scores (N, classes): softmax
    unless the network already ends in one."""
    scores = scores.astype(np.float64)
    if outputs_probabilities:
        return scores
    scores -= scores.max(axis=1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=1, keepdims=True)
    return scores
