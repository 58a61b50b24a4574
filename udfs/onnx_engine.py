"""The optional ONNX Runtime engine (``spark.mxsql.model.NAME.engine=onnxruntime``).

The model's MXNet checkpoint is converted by ``onnx_export`` (no MXNet needed) once per
machine into ``spark.mxsql.cacheDir``, under a name made of the checkpoint's content hashes
and input shape, so a changed checkpoint is converted again; a file lock makes concurrent workers
wait for the first conversion, which lands by atomic rename. It is there for portability,
not speed: here it measured no faster than MXNet's oneDNN path. onnx and onnxruntime are
imported only by a model that uses this engine.
"""

import hashlib
import os
import re
import sys
import tempfile
import time
from typing import Dict, NamedTuple, Optional, Tuple

import numpy as np

from mxsql.udfs import artifacts, logs
from mxsql.udfs.checkpoint import Checkpoint
from mxsql.udfs.config import ModelSpec, Settings
from mxsql.udfs.errors import ModelLoadError

__all__ = ["INSTALL", "Converted", "OnnxNetwork", "build", "convert", "load"]

INSTALL = "pip install 'mxsql[onnx]'"

_log = logs.logger()


def _require(spec: ModelSpec, module: str):
    """Import ``module``, or a ModelLoadError naming the engine key and the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = (e.name or module).split(".")[0]
        raise ModelLoadError(
            f"{spec.key('engine')}=onnxruntime but {missing} cannot be imported by this "
            f"worker's Python ({sys.executable}): {INSTALL} on every node, or set "
            f"{spec.key('engine')}=mxnet"
        ) from e


def _reason(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _threads() -> int:
    """Intra-op threads: ``OMP_NUM_THREADS``, which Spark sets to spark.task.cpus in its
    Python workers, so tasks x threads = cores as with MXNet; 0 (ONNX Runtime decides)
    when it is unset."""
    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(text) if text.isdigit() else 0


class OnnxNetwork:
    """An ONNX Runtime session on CPU over one converted checkpoint.

    The batch axis is dynamic, so one file serves every ``spark.mxsql.batchSize`` (a SET
    may change it per session); the caller still runs short batches in pieces of one
    size, which bounds the input shapes ONNX Runtime plans memory for.
    """

    def __init__(self, spec: ModelSpec, path: str):
        ort = _require(spec, "onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = _threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only: its warnings are not the user's to act on
        try:
            self._session = ort.InferenceSession(
                path, options, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise ModelLoadError(
                f"{spec.key('engine')}=onnxruntime: ONNX Runtime cannot load {path} "
                f"({_reason(e)}): delete it to convert the checkpoint again"
            ) from e
        self.path = path
        self._input = self._session.get_inputs()[0].name
        state = ort.capi.onnxruntime_pybind11_state
        # ONNX Runtime's errors share no base class but Exception.
        self.errors = (state.Fail, state.InvalidArgument, state.RuntimeException,
                       state.EngineError, state.NotImplemented)

    def run(self, x: np.ndarray) -> np.ndarray:
        """The network's first output for a float32 NCHW batch."""
        return self._session.run(None, {self._input: x})[0]


class Converted(NamedTuple):
    """A checkpoint converted to ONNX in memory, and the seconds the conversion took."""

    model: object  # onnx.ModelProto
    seconds: float


def convert(spec: ModelSpec, graph: dict, params: Dict[str, np.ndarray]) -> Converted:
    """``spec``'s checkpoint (its ``symbol.json`` graph and its parameters by bare name)
    converted by mxsql's converter for the model's input shape, with a dynamic batch."""
    _require(spec, "onnxruntime")  # before a conversion that would be of no use
    _require(spec, "onnx")
    from mxsql.udfs import onnx_export

    # Our converter reads checkpoints without MXNet. Against mxnet.onnx on ResNet-18 it
    # gave the same agreement with MXNet (max relative difference 7.2e-7) and the same
    # ONNX Runtime CPU time per image (54.2 against 53.0 ms, 2 threads).
    started = time.monotonic()
    model = onnx_export.convert(graph, params, input_shape=(spec.channels, *spec.input_size),
                                key=spec.key("uri"))
    return Converted(model, time.monotonic() - started)


def build(checkpoint: Checkpoint, settings: Settings) -> OnnxNetwork:
    """The checkpoint's network on ONNX Runtime (``engine=onnxruntime``), from the
    conversion the checkpoint made to read its output shape when this machine has none."""
    return load(checkpoint.spec, checkpoint.symbol,
                {**checkpoint.arg_params, **checkpoint.aux_params},
                symbol_path=checkpoint.symbol_path, params_path=checkpoint.params_path,
                cache_dir=settings.cache_dir, converted=checkpoint.converted)


def load(spec: ModelSpec, symbol, params: Dict[str, object], *, symbol_path: str,
         params_path: str, cache_dir: str, converted: Optional[Converted] = None) -> OnnxNetwork:
    """An ONNX Runtime session for a loaded checkpoint, converted first unless a worker on
    this machine already has (``converted``, when given, is that conversion, made from
    the same files). ``params`` holds its arg and aux parameters by bare name."""
    _require(spec, "onnxruntime")  # before a conversion that would be of no use
    shape = (spec.channels, *spec.input_size)
    cache_dir = os.path.expanduser(cache_dir)
    target = os.path.join(cache_dir, _file_name(spec, symbol_path, params_path, shape))
    with artifacts.cache_lock(cache_dir, target,
                              needed_for=f"the ONNX conversion of model '{spec.name}'"):
        if not os.path.isfile(target):
            _save(target, spec, converted or _convert_files(spec, symbol_path, params_path))
    return OnnxNetwork(spec, target)


def _file_name(spec: ModelSpec, symbol_path: str, params_path: str,
               shape: Tuple[int, int, int]) -> str:
    # A checksum key, when set, was verified when the file was fetched: no need to hash again.
    digest = hashlib.sha256()
    for part in (spec.sha256_symbol or artifacts.sha256_of(symbol_path),
                 spec.sha256_params or artifacts.sha256_of(params_path),
                 "x".join(map(str, shape))):
        digest.update(part.encode() + b"\0")
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", spec.uri.rstrip("/").rpartition("/")[2]) or "model"
    return f"{stem}-{digest.hexdigest()[:24]}.onnx"


def _convert_files(spec: ModelSpec, symbol_path: str, params_path: str) -> Converted:
    from mxsql.udfs import mxparams, onnx_export

    return convert(spec, onnx_export.read_symbol(symbol_path),
                   mxparams.load_checkpoint_params(params_path))


def _save(target: str, spec: ModelSpec, converted: Converted) -> None:
    """Write ``converted`` as ``target``, atomically, and log the conversion."""
    onnx = _require(spec, "onnx")
    started = time.monotonic()
    fd, partial = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".partial-",
                                   suffix=".onnx")
    os.close(fd)
    try:
        onnx.save(converted.model, partial)
        os.chmod(partial, 0o644)  # mkstemp's 0600 would hide it from other users' workers
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    _log.info("converted model '%s' to ONNX in %.2f s: %s (pid %d)",
              spec.name, converted.seconds + time.monotonic() - started, target, os.getpid())
