"""The MXNet engine: a checkpoint bound by MXNet's executors on CPU (oneDNN), in FP32.

``int8_engine.py`` runs its quantized network with the same :class:`MxnetNetwork`.
"""

from typing import Dict

import numpy as np

from mxsql.udfs.checkpoint import Checkpoint, import_mxnet
from mxsql.udfs.config import Settings

__all__ = ["MxnetNetwork", "build"]


class MxnetNetwork:
    """An MXNet symbol and its parameters, bound once per batch shape it is run with.

    The first batch shape is bound; every other one is a reshape of it, sharing its
    parameters. Each executor's fused convolutions still hold their own copy of the
    weights with batch norm folded in (45 MB for ResNet-18), which is why the caller runs
    short batches in pieces of one shape.
    """

    def __init__(self, symbol, arg_params: dict, aux_params: dict, data_name: str):
        self._mx = import_mxnet()
        self._symbol = symbol
        self._arg_params = arg_params
        self._aux_params = aux_params
        self._data_name = data_name
        self._executors: Dict[int, object] = {}
        self.errors = (self._mx.base.MXNetError,)

    def _executor(self, shape: tuple):
        exe = self._executors.get(shape[0])
        if exe is not None:
            return exe
        if not self._executors:
            exe = self._symbol.simple_bind(self._mx.cpu(), grad_req="null",
                                           **{self._data_name: shape})
            exe.copy_params_from(self._arg_params, self._aux_params, allow_extra_params=True)
        else:
            # Other inputs (a SoftmaxOutput's label) follow the new batch size.
            first = next(iter(self._executors.values()))
            exe = first.reshape(partial_shaping=True, allow_up_sizing=True,
                                **{self._data_name: shape})
        self._executors[shape[0]] = exe
        return exe

    def run(self, x: np.ndarray) -> np.ndarray:
        """The network's first output for a float32 NCHW batch."""
        exe = self._executor(x.shape)
        exe.forward(is_train=False, **{self._data_name: x})
        return exe.outputs[0].asnumpy()


def build(checkpoint: Checkpoint, settings: Settings) -> MxnetNetwork:
    """The checkpoint's network in FP32."""
    return MxnetNetwork(checkpoint.symbol, checkpoint.arg_params, checkpoint.aux_params,
                        checkpoint.data_name)
