"""The MXNet INT8 engine (``spark.mxsql.model.NAME.precision=int8``).

The checkpoint is quantized by oneDNN (``quantize_model_mkldnn``: naive min/max
calibration on the model's calibration images through its own preprocessing, channel-wise
weights, every layer oneDNN can quantize, int8 or uint8 as the data's sign needs) once per
machine into ``spark.mxsql.cacheDir``. The folder it lands in is named by a hash of the
checkpoint's content, the input shape and preprocessing, the calibration set (paths, sizes,
content hashes) and MXNet's version, so a change of any of them quantizes again; a file
lock makes concurrent workers wait for the first, which lands by atomic rename. The
quantized network then runs on MXNet's executors like FP32 (``mxnet_engine.py``).
"""

import hashlib
import json
import os
import re
import tempfile
import time
from typing import List

import numpy as np

from mxsql.udfs import artifacts, calibration, logs
from mxsql.udfs.checkpoint import Checkpoint, first_line, import_mxnet, model_input, split_params
from mxsql.udfs.config import Settings
from mxsql.udfs.errors import ModelLoadError
from mxsql.udfs.mxnet_engine import MxnetNetwork

__all__ = ["REQUIRED_CPU_FLAGS", "build", "cpu_lacks"]

# oneDNN's INT8 kernels run on x86-64; below AVX2 they are SSE4.1 or reference code that
# is no faster than FP32. AVX2 alone ran ResNet-18 2.2x faster than FP32 here; VNNI
# (avx512_vnni, avx_vnni) is faster still.
REQUIRED_CPU_FLAGS = ("avx2",)
_CPUINFO = "/proc/cpuinfo"
_OPTIONS = dict(calib_mode="naive", quantized_dtype="auto", quantize_mode="full",
                quantize_granularity="channel-wise")
_CALIBRATION_BATCH = 16  # images a calibration forward pass: bounds its memory
_INT8_COMPUTE_OPS = frozenset({"_contrib_quantized_conv", "_contrib_quantized_fully_connected"})
_FUSED_OPS = frozenset({"_sg_mkldnn_conv", "_sg_mkldnn_fully_connected"})
_SYMBOL = "int8-symbol.json"
_PARAMS = "int8-0000.params"

_log = logs.logger()


def cpu_lacks(cpuinfo: str = _CPUINFO) -> List[str]:
    """The CPU flags INT8 needs that ``cpuinfo`` (``/proc/cpuinfo``'s text) does not list,
    or ``["x86-64 flags"]`` when it lists none."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return ["x86-64 flags"]
    line = next((line for line in text.splitlines() if line.startswith("flags")), None)
    if line is None:
        return ["x86-64 flags"]
    flags = set(line.partition(":")[2].split())
    return [flag for flag in REQUIRED_CPU_FLAGS if flag not in flags]


def _check_cpu(spec) -> None:
    missing = cpu_lacks(_CPUINFO)
    if missing:
        raise ModelLoadError(
            f"{spec.key('precision')}=int8: this CPU cannot run oneDNN's INT8 kernels at a "
            f"gain ({_CPUINFO} lacks {', '.join(missing)}; they need Linux on x86-64 with "
            f"{' and '.join(REQUIRED_CPU_FLAGS)}): set {spec.key('precision')}=fp32 to run "
            "the model in FP32")


def build(checkpoint: Checkpoint, settings: Settings) -> MxnetNetwork:
    """The checkpoint's network quantized to INT8, quantized first unless a worker on this
    machine already has for the same checkpoint, shape and calibration set."""
    spec = checkpoint.spec
    _check_cpu(spec)
    found = calibration.list_images(spec, settings)
    cache_dir = os.path.expanduser(settings.cache_dir)
    target = os.path.join(cache_dir, _folder_name(checkpoint, found))
    with artifacts.cache_lock(cache_dir, target,
                              needed_for=f"the INT8 quantization of model '{spec.name}'"):
        if not os.path.isfile(os.path.join(target, _SYMBOL)):
            _quantize_into(target, checkpoint, settings, found)
    mx = import_mxnet()
    try:
        symbol = mx.sym.load(os.path.join(target, _SYMBOL))
        arg_params, aux_params = split_params(symbol, mx.nd.load(os.path.join(target, _PARAMS)))
    except Exception as e:
        raise ModelLoadError(
            f"{spec.key('precision')}=int8: cannot load the quantized model in {target} "
            f"({first_line(e)}): delete that folder to quantize again") from e
    return MxnetNetwork(symbol, arg_params, aux_params, checkpoint.data_name)


def _folder_name(checkpoint: Checkpoint, found: List[calibration.CalibrationImage]) -> str:
    spec = checkpoint.spec
    mx = import_mxnet()
    digest = hashlib.sha256()
    # A checksum key, when set, was verified when the file was fetched: no need to hash again.
    parts = [spec.sha256_symbol or artifacts.sha256_of(checkpoint.symbol_path),
             spec.sha256_params or artifacts.sha256_of(checkpoint.params_path),
             json.dumps([checkpoint.input_shape(1)[1:], spec.mean, spec.std, spec.resize]),
             mx.__version__, json.dumps(_OPTIONS, sort_keys=True)]
    parts += [json.dumps(image) for image in found]
    for part in parts:
        digest.update(part.encode() + b"\0")
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", spec.uri.rstrip("/").rpartition("/")[2]) or "model"
    return f"{stem}-int8-{digest.hexdigest()[:24]}"


def _quantize_into(target: str, checkpoint: Checkpoint, settings: Settings,
                   found: List[calibration.CalibrationImage]) -> None:
    spec = checkpoint.spec
    started = time.monotonic()
    x = model_input(spec, calibration.load_pixels(spec, settings, found), len(found))
    qsymbol, qarg_params, qaux_params = _quantize(checkpoint, x)
    partial = tempfile.mkdtemp(dir=os.path.dirname(target), prefix=".partial-")
    try:
        qsymbol.save(os.path.join(partial, _SYMBOL))
        mx = import_mxnet()
        saved = {f"arg:{k}": v for k, v in qarg_params.items()}
        saved.update((f"aux:{k}", v) for k, v in qaux_params.items())
        mx.nd.save(os.path.join(partial, _PARAMS), saved)
        with open(os.path.join(partial, "calibration.txt"), "w", encoding="utf-8") as f:
            f.write("".join(f"{i.uri}\t{i.size}\t{i.digest}\n" for i in found))
        for name in os.listdir(partial):
            os.chmod(os.path.join(partial, name), 0o644)
        os.chmod(partial, 0o755)  # mkdtemp's 0700 would hide it from other users' workers
        os.replace(partial, target)
    finally:
        if os.path.isdir(partial):
            for name in os.listdir(partial):
                os.unlink(os.path.join(partial, name))
            os.rmdir(partial)
    _log.info("quantized model '%s' to int8 from %d images in %.2f s: %s (pid %d)",
              spec.name, len(found), time.monotonic() - started, target, os.getpid())


def _quantize(checkpoint: Checkpoint, x: np.ndarray):
    """(symbol, arg_params, aux_params) of the checkpoint quantized, calibrated on ``x``."""
    spec = checkpoint.spec
    mx = import_mxnet()
    from mxnet.contrib.quantization import quantize_model_mkldnn

    batch = min(_CALIBRATION_BATCH, len(x))
    arg_shapes, _, _ = checkpoint.symbol.infer_shape(
        **{checkpoint.data_name: checkpoint.input_shape(batch)})
    shapes = dict(zip(checkpoint.symbol.list_arguments(), arg_shapes))
    # A SoftmaxOutput's label is an input of the symbol even for inference: zeros will do.
    labels = {name: np.zeros((len(x), *shapes[name][1:]), np.float32)
              for name in checkpoint.label_names}
    data = mx.io.NDArrayIter(data={checkpoint.data_name: x}, label=labels or None,
                             batch_size=batch, last_batch_handle="pad")
    try:
        qsymbol, qarg_params, qaux_params = quantize_model_mkldnn(
            checkpoint.symbol, checkpoint.arg_params, checkpoint.aux_params,
            data_names=(checkpoint.data_name,), label_names=tuple(labels), ctx=mx.cpu(),
            calib_data=data, num_calib_examples=len(x), **_OPTIONS)
    except Exception as e:
        raise ModelLoadError(
            f"{spec.key('precision')}=int8: oneDNN cannot quantize model '{spec.name}' "
            f"({spec.uri}): {first_line(e)}; set {spec.key('precision')}=fp32") from e
    if not _quantized_layers(qsymbol):
        raise ModelLoadError(
            f"{spec.key('precision')}=int8: oneDNN cannot quantize any convolution or fully "
            f"connected layer of model '{spec.name}' ({spec.uri}), which would run in FP32: set "
            f"{spec.key('precision')}=fp32")
    return qsymbol, qarg_params, qaux_params


def _quantized_layers(symbol) -> List[str]:
    """Names of the convolutions and fully connected layers that compute in INT8 (a
    quantized flatten or pooling alone would leave all the arithmetic in FP32)."""
    return [node["name"] for node in json.loads(symbol.tojson())["nodes"]
            if node["op"] in _INT8_COMPUTE_OPS
            or (node["op"] in _FUSED_OPS and node.get("attrs", {}).get("quantized") == "True")]
