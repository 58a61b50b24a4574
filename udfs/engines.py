"""The engines that run a checked checkpoint, one module each, behind one interface.

An engine module has ``build(checkpoint, settings) -> Network``; the table below says
which module runs each ``engine`` and ``precision`` of a model. Adding an engine is its
module, its row here and its value in the key table (``config.py``). Everything around
the network (decoding, preprocessing, batches, softmax, errors) is the engine's caller's
(``models.py``), the same for all.
"""

import importlib
from typing import Protocol, Tuple

import numpy as np

from mxsql.udfs.checkpoint import Checkpoint
from mxsql.udfs.config import ModelSpec, Settings
from mxsql.udfs.errors import ConfigError

__all__ = ["ENGINES", "Network", "build", "check"]

# (engine, precision) -> the module whose build() makes the network.
ENGINES = {
    ("mxnet", "fp32"): "mxsql.udfs.mxnet_engine",
    ("mxnet", "int8"): "mxsql.udfs.int8_engine",
    ("onnxruntime", "fp32"): "mxsql.udfs.onnx_engine",
}


class Network(Protocol):
    """A network ready to run: built once, never changed afterwards."""

    #: The exceptions ``run`` raises for input the network refuses.
    errors: Tuple[type, ...]

    def run(self, x: np.ndarray) -> np.ndarray:
        """The network's first output for a float32 NCHW batch (callers serialise calls)."""


def check(spec: ModelSpec) -> None:
    """Refuse, naming both keys, a precision that the model's engine does not run."""
    if (spec.engine, spec.precision) in ENGINES:
        return
    precisions = sorted(p for e, p in ENGINES if e == spec.engine)
    engines = sorted(e for e, p in ENGINES if p == spec.precision)
    raise ConfigError(
        f"{spec.key('engine')}={spec.engine} cannot run {spec.key('precision')}="
        f"{spec.precision} (it runs {', '.join(precisions)}): set {spec.key('precision')}="
        f"{precisions[0]}, or {spec.key('engine')}={' or '.join(engines)}")


def build(checkpoint: Checkpoint, settings: Settings) -> Network:
    """The network that runs ``checkpoint`` with its model's engine and precision."""
    check(checkpoint.spec)
    module = ENGINES[checkpoint.spec.engine, checkpoint.spec.precision]
    return importlib.import_module(module).build(checkpoint, settings)
