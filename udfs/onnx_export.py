"""An MXNet checkpoint (``symbol.json`` and parameters) as an ONNX model, without MXNet.

The graph maps node by node to ONNX opset 13, with every parameter as an initializer and a
dynamic batch axis; the IR version is pinned to 7 so that older runtimes load the file.
It covers the operators of the MXNet model zoo's classification networks and of classic
symbolic CNNs; an operator (or an attribute value) it does not know is a
``ModelLoadError`` naming the operator, the node and the model's key, raised while
converting, before any row is read. onnx is imported here, numpy only otherwise.
"""

import ast
import json
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from mxsql.udfs.errors import ModelLoadError

__all__ = ["OPSET", "IR_VERSION", "convert", "read_symbol", "supported_ops"]

OPSET = 13
IR_VERSION = 7


def read_symbol(path: str) -> dict:
    """The parsed ``symbol.json`` of a checkpoint, or a ModelLoadError naming the file."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            graph = json.load(f)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read the MXNet symbol {path}: {e}") from e
    if not isinstance(graph, dict) or not isinstance(graph.get("nodes"), list) \
            or not isinstance(graph.get("heads"), list):
        raise ModelLoadError(f"{path} is not an MXNet symbol file (no 'nodes' and 'heads')")
    return graph


class _Unsupported(Exception):
    """An operator or attribute value the converter does not handle."""


def _attrs(node: dict) -> Dict[str, str]:
    # "attrs" since MXNet 1.0; "attr" and "param" in files older releases wrote.
    return node.get("attrs") or node.get("attr") or node.get("param") or {}


def _ints(text: Optional[str], default: Sequence[int] = ()) -> Tuple[int, ...]:
    if text is None or text in ("", "None"):
        return tuple(default)
    value = ast.literal_eval(text)
    return tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (int(value),)


def _bool(text: Optional[str], default: bool) -> bool:
    if text is None:
        return default
    return text.strip().lower() in ("true", "1")


def _float(text: Optional[str], default: float) -> float:
    return default if text is None or text == "None" else float(text)


class _Graph:
    """The ONNX nodes and initializers being built from one MXNet graph."""

    def __init__(self, params: Dict[str, np.ndarray]):
        from onnx import helper, numpy_helper

        self.helper = helper
        self.numpy_helper = numpy_helper
        self.params = params
        self.nodes = []
        self.initializers = {}
        self.count = 0
        # Outputs shape inference cannot follow (a Reshape to a computed shape), by the
        # tensor whose shape they have.
        self.same_shape = {}

    def weight(self, name: str, node: str) -> str:
        """The initializer for parameter ``name``, as float32."""
        if name not in self.initializers:
            if name not in self.params:
                raise ModelLoadError(f"node '{node}' needs parameter '{name}', which the "
                                     "parameters file does not hold")
            self.constant(name, self.params[name])
        return name

    def constant(self, name: str, value) -> str:
        array = np.asarray(value)
        if array.dtype != np.int64:
            array = array.astype(np.float32)
        self.initializers[name] = self.numpy_helper.from_array(array, name)
        return name

    def add(self, op: str, inputs: List[str], output: str, **attrs) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def fresh(self, stem: str) -> str:
        self.count += 1
        return f"{stem}__{self.count}"


def _convolution(g: _Graph, name, attrs, ins):
    kernel = _ints(attrs.get("kernel"))
    n = len(kernel)
    if attrs.get("layout", "None") not in ("None", "NCW", "NCHW", "NCDHW"):
        raise _Unsupported(f"layout={attrs['layout']}")
    inputs = [ins[0], g.weight(ins[1], name)]
    if not _bool(attrs.get("no_bias"), False):
        inputs.append(g.weight(ins[2], name))
    pad = _ints(attrs.get("pad"), (0,) * n)
    return g.add("Conv", inputs, name, kernel_shape=list(kernel),
                 strides=list(_ints(attrs.get("stride"), (1,) * n)),
                 dilations=list(_ints(attrs.get("dilate"), (1,) * n)),
                 pads=list(pad) * 2, group=int(attrs.get("num_group", "1")))


def _batch_norm(g: _Graph, name, attrs, ins):
    if int(attrs.get("axis", "1")) != 1:
        raise _Unsupported(f"axis={attrs['axis']}")
    # Symbolic BatchNorm defaults to fix_gamma=True: gamma is read as ones whatever it holds.
    if _bool(attrs.get("fix_gamma"), True):
        channels = g.params[g.weight(ins[2], name)].shape
        gamma = g.constant(f"{name}__ones", np.ones(channels, np.float32))
    else:
        gamma = g.weight(ins[1], name)
    return g.add("BatchNormalization",
                 [ins[0], gamma, g.weight(ins[2], name), g.weight(ins[3], name),
                  g.weight(ins[4], name)],
                 name, epsilon=_float(attrs.get("eps"), 1e-3))


_ACTIVATIONS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softrelu": "Softplus",
                "softsign": "Softsign"}


def _activation(g: _Graph, name, attrs, ins):
    act = attrs.get("act_type")
    if act not in _ACTIVATIONS:
        raise _Unsupported(f"act_type={act}")
    return g.add(_ACTIVATIONS[act], [ins[0]], name)


def _leaky_relu(g: _Graph, name, attrs, ins):
    act = attrs.get("act_type", "leaky")
    slope = _float(attrs.get("slope"), 0.25)
    if act == "leaky":
        return g.add("LeakyRelu", [ins[0]], name, alpha=slope)
    if act == "elu":
        return g.add("Elu", [ins[0]], name, alpha=slope)
    if act == "selu":
        return g.add("Selu", [ins[0]], name)  # ONNX's default alpha and gamma are SELU's
    raise _Unsupported(f"act_type={act}")


def _pooling(g: _Graph, name, attrs, ins):
    pool = attrs.get("pool_type", "max")
    if pool not in ("max", "avg"):
        raise _Unsupported(f"pool_type={pool}")
    if attrs.get("layout", "None") not in ("None", "NCW", "NCHW", "NCDHW"):
        raise _Unsupported(f"layout={attrs['layout']}")
    if _bool(attrs.get("global_pool"), False):
        return g.add("GlobalMaxPool" if pool == "max" else "GlobalAveragePool", [ins[0]], name)
    kernel = _ints(attrs.get("kernel"))
    n = len(kernel)
    stride = _ints(attrs.get("stride"), (1,) * n)
    pad = _ints(attrs.get("pad"), (0,) * n)
    convention = attrs.get("pooling_convention", "valid")
    if convention not in ("valid", "full"):
        raise _Unsupported(f"pooling_convention={convention}")
    include_pad = _bool(attrs.get("count_include_pad"), True)
    # "full" is ceil mode, and MXNet keeps a last window that starts in the right padding,
    # which ONNX Runtime's ceil mode drops: floor mode over stride-1 more padding on the
    # right gives MXNet's windows.
    extra = tuple(s - 1 for s in stride) if convention == "full" else (0,) * n
    x = ins[0]
    if pool == "max":
        left, right = pad, tuple(p + e for p, e in zip(pad, extra))
        if any(r >= k for r, k in zip(right, kernel)):
            # ONNX Runtime refuses a pad as large as the kernel: pad explicitly with the
            # lowest float, which no window's maximum can be below.
            x = _pad(g, name, x, left, right, float(np.finfo(np.float32).min))
            left, right = (0,) * n, (0,) * n
        return g.add("MaxPool", [x], name, kernel_shape=list(kernel), strides=list(stride),
                     pads=[*left, *right])
    if convention == "valid":
        return g.add("AveragePool", [x], name, kernel_shape=list(kernel), strides=list(stride),
                     pads=[*pad, *pad], count_include_pad=int(include_pad))
    # "full" average: MXNet divides by the window clipped to the padded input, so the
    # symmetric padding counts (when count_include_pad) and the extra right padding never.
    left, right = pad, tuple(p + e for p, e in zip(pad, extra))
    if include_pad and any(pad):
        x = _pad(g, name, x, pad, pad, 0.0)
        left, right = (0,) * n, extra
    if all(r < k for r, k in zip(right, kernel)):
        return g.add("AveragePool", [x], name, kernel_shape=list(kernel),
                     strides=list(stride), pads=[*left, *right], count_include_pad=0)
    # ONNX Runtime refuses a pad as large as the kernel: the mean of the zero-padded input
    # over the mean of a mask of the counted positions, padded the same way.
    counted = _ones_like_spatial(g, name, ins[0], n)
    if x is not ins[0]:  # the symmetric padding counts
        counted = _pad(g, name, counted, pad, pad, 1.0)
    sums, counts = (
        g.add("AveragePool", [_pad(g, name, t, left, right, 0.0)], g.fresh(f"{name}_{what}"),
              kernel_shape=list(kernel), strides=list(stride))
        for t, what in ((x, "sums"), (counted, "counts")))
    return g.add("Div", [sums, counts], name)


def _ones_like_spatial(g: _Graph, name, x, n):
    """Ones of shape (1, 1, *spatial dims of x)."""
    shape = g.add("Shape", [x], g.fresh(f"{name}_shape"))
    start = g.constant(g.fresh(f"{name}_start"), np.array([2], np.int64))
    end = g.constant(g.fresh(f"{name}_end"), np.array([2 + n], np.int64))
    spatial = g.add("Slice", [shape, start, end], g.fresh(f"{name}_spatial"))
    ones_shape = g.add("Concat", [g.constant(g.fresh(f"{name}_11"), np.array([1, 1], np.int64)),
                                  spatial], g.fresh(f"{name}_ones_shape"), axis=0)
    return g.add("ConstantOfShape", [ones_shape], g.fresh(f"{name}_ones"),
                 value=g.numpy_helper.from_array(np.array([1.0], np.float32)))


def _pad(g: _Graph, name, x, left, right, value):
    pads = g.constant(g.fresh(f"{name}_pads"), np.array([0, 0, *left, 0, 0, *right], np.int64))
    fill = g.constant(g.fresh(f"{name}_fill"), np.array(value, np.float32))
    return g.add("Pad", [x, pads, fill], g.fresh(f"{name}_padded"), mode="constant")


def _fully_connected(g: _Graph, name, attrs, ins):
    no_bias = _bool(attrs.get("no_bias"), False)
    if _bool(attrs.get("flatten"), True):
        flat = g.add("Flatten", [ins[0]], g.fresh(f"{name}_flat"), axis=1)
        inputs = [flat, g.weight(ins[1], name)]
        if not no_bias:
            inputs.append(g.weight(ins[2], name))
        return g.add("Gemm", inputs, name, transB=1)
    weight = g.params.get(ins[1])
    if weight is None:
        g.weight(ins[1], name)  # raises, naming the missing parameter
    wt = g.constant(f"{ins[1]}__transposed", np.ascontiguousarray(weight.T))
    if no_bias:
        return g.add("MatMul", [ins[0], wt], name)
    product = g.add("MatMul", [ins[0], wt], g.fresh(f"{name}_matmul"))
    return g.add("Add", [product, g.weight(ins[2], name)], name)


def _flatten(g: _Graph, name, attrs, ins):
    return g.add("Flatten", [ins[0]], name, axis=1)


def _dropout(g: _Graph, name, attrs, ins):
    if attrs.get("mode", "training") != "training":
        raise _Unsupported(f"mode={attrs['mode']} (dropout at inference)")
    return g.add("Identity", [ins[0]], name)


def _identity(g: _Graph, name, attrs, ins):
    return g.add("Identity", [ins[0]], name)


def _clip(g: _Graph, name, attrs, ins):
    low = g.constant(g.fresh(f"{name}_min"), np.array(float(attrs["a_min"]), np.float32))
    high = g.constant(g.fresh(f"{name}_max"), np.array(float(attrs["a_max"]), np.float32))
    return g.add("Clip", [ins[0], low, high], name)


def _concat(g: _Graph, name, attrs, ins):
    return g.add("Concat", list(ins), name, axis=int(attrs.get("dim", "1")))


def _binary(op):
    def convert(g: _Graph, name, attrs, ins):
        return g.add(op, [ins[0], ins[1]], name)
    return convert


def _scalar(op, *, reverse=False):
    def convert(g: _Graph, name, attrs, ins):
        scalar = g.constant(g.fresh(f"{name}_scalar"),
                            np.array(float(attrs["scalar"]), np.float32))
        return g.add(op, [scalar, ins[0]] if reverse else [ins[0], scalar], name)
    return convert


def _softmax(g: _Graph, name, attrs, ins):
    x = ins[0]
    temperature = _float(attrs.get("temperature"), 1.0)
    if temperature != 1.0:
        x = g.add("Div", [x, g.constant(g.fresh(f"{name}_t"), np.array(temperature))],
                  g.fresh(f"{name}_scaled"))
    # MXNet's softmax defaults to the last axis (ONNX's to axis 1 before opset 13).
    return g.add("Softmax", [x], name, axis=int(attrs.get("axis", "-1")))


def _log_softmax(g: _Graph, name, attrs, ins):
    if _float(attrs.get("temperature"), 1.0) != 1.0:
        raise _Unsupported(f"temperature={attrs['temperature']}")
    return g.add("LogSoftmax", [ins[0]], name, axis=int(attrs.get("axis", "-1")))


def _softmax_over_instance(g: _Graph, name, x):
    """Softmax over all but the batch axis, in the input's shape."""
    shape = g.add("Shape", [x], g.fresh(f"{name}_shape"))
    flat = g.add("Flatten", [x], g.fresh(f"{name}_flat"), axis=1)
    probabilities = g.add("Softmax", [flat], g.fresh(f"{name}_softmax"), axis=1)
    g.same_shape[name] = x
    return g.add("Reshape", [probabilities, shape], name)


def _softmax_activation(g: _Graph, name, attrs, ins):
    if attrs.get("mode", "instance") == "channel":
        return g.add("Softmax", [ins[0]], name, axis=1)
    return _softmax_over_instance(g, name, ins[0])


def _softmax_output(g: _Graph, name, attrs, ins):
    # At inference SoftmaxOutput is a softmax; its label input is not read. Over more than
    # two dimensions MXNet's reference kernel flattens each instance (the oneDNN pip build
    # takes the last axis instead); the documented semantics are kept.
    if _bool(attrs.get("preserve_shape"), False):
        return g.add("Softmax", [ins[0]], name, axis=-1)
    if _bool(attrs.get("multi_output"), False):
        return g.add("Softmax", [ins[0]], name, axis=1)
    return _softmax_over_instance(g, name, ins[0])


def _reshape(g: _Graph, name, attrs, ins):
    shape = _ints(attrs.get("shape"))
    if _bool(attrs.get("reverse"), False) or any(d < -1 for d in shape) or not shape:
        raise _Unsupported(f"shape={attrs.get('shape')} reverse={attrs.get('reverse')}")
    # MXNet's 0 (copy the input's dimension) and -1 mean the same in ONNX's Reshape.
    target = g.constant(g.fresh(f"{name}_target"), np.array(shape, np.int64))
    return g.add("Reshape", [ins[0], target], name)


_CONVERTERS = {
    "Convolution": _convolution,
    "BatchNorm": _batch_norm,
    "Activation": _activation,
    "LeakyReLU": _leaky_relu,
    "relu": lambda g, name, attrs, ins: g.add("Relu", [ins[0]], name),
    "sigmoid": lambda g, name, attrs, ins: g.add("Sigmoid", [ins[0]], name),
    "tanh": lambda g, name, attrs, ins: g.add("Tanh", [ins[0]], name),
    "Pooling": _pooling,
    "FullyConnected": _fully_connected,
    "Flatten": _flatten,
    "flatten": _flatten,
    "Dropout": _dropout,
    "BlockGrad": _identity,
    "stop_gradient": _identity,
    "_copy": _identity,
    "identity": _identity,
    "clip": _clip,
    "Concat": _concat,
    "concat": _concat,
    "elemwise_add": _binary("Add"),
    "_plus": _binary("Add"),
    "_Plus": _binary("Add"),
    "broadcast_add": _binary("Add"),
    "broadcast_plus": _binary("Add"),
    "elemwise_sub": _binary("Sub"),
    "_minus": _binary("Sub"),
    "_Minus": _binary("Sub"),
    "broadcast_sub": _binary("Sub"),
    "broadcast_minus": _binary("Sub"),
    "elemwise_mul": _binary("Mul"),
    "_mul": _binary("Mul"),
    "_Mul": _binary("Mul"),
    "broadcast_mul": _binary("Mul"),
    "elemwise_div": _binary("Div"),
    "_div": _binary("Div"),
    "_Div": _binary("Div"),
    "broadcast_div": _binary("Div"),
    "_plus_scalar": _scalar("Add"),
    "_PlusScalar": _scalar("Add"),
    "_minus_scalar": _scalar("Sub"),
    "_MinusScalar": _scalar("Sub"),
    "_rminus_scalar": _scalar("Sub", reverse=True),
    "_RMinusScalar": _scalar("Sub", reverse=True),
    "_mul_scalar": _scalar("Mul"),
    "_MulScalar": _scalar("Mul"),
    "_div_scalar": _scalar("Div"),
    "_DivScalar": _scalar("Div"),
    "_rdiv_scalar": _scalar("Div", reverse=True),
    "_RDivScalar": _scalar("Div", reverse=True),
    "softmax": _softmax,
    "log_softmax": _log_softmax,
    "SoftmaxActivation": _softmax_activation,
    "SoftmaxOutput": _softmax_output,
    "Softmax": _softmax_output,  # SoftmaxOutput's old name
    "Reshape": _reshape,
    "reshape": _reshape,
}

# Inputs of these operators that inference never reads (a loss layer's label).
_UNREAD_INPUTS = {"SoftmaxOutput": {1}, "Softmax": {1}}


def supported_ops() -> List[str]:
    """The MXNet operator names the converter handles."""
    return sorted(_CONVERTERS)


def convert(graph: dict, params: Dict[str, np.ndarray], *, input_shape: Sequence[int],
            key: str, name: str = "mxsql") -> "onnx.ModelProto":  # noqa: F821
    """The ONNX model (opset 13, IR 7, batch axis dynamic) of a parsed ``symbol.json`` and
    its parameters by bare name, for inputs of ``input_shape`` (without the batch axis).

    ``key`` names the model in errors (``spark.mxsql.model.NAME.uri``). The model passes
    ``onnx.checker`` with shape inference before it is returned.
    """
    import onnx

    g = _Graph(params)
    nodes = graph["nodes"]
    read = {entry[0] for node in nodes for i, entry in enumerate(node.get("inputs", []))
            if i not in _UNREAD_INPUTS.get(node.get("op"), ())}
    # The inputs are the variables read with no value in the parameters, by name.
    data = sorted({node["name"] for i, node in enumerate(nodes) if node["op"] == "null"
                   and node["name"] not in params and i in read})
    if len(data) != 1:
        raise ModelLoadError(
            f"{key}: the network has {len(data)} inputs without a value in the parameters "
            f"file ({', '.join(data) or 'none'}); mxsql feeds exactly one, the image batch")
    tensors = {}  # (node index, output index) -> ONNX tensor name
    for i, node in enumerate(nodes):
        op = node["op"]
        if op == "null":
            tensors[(i, 0)] = node["name"]
            continue
        converter = _CONVERTERS.get(op)
        if converter is None:
            raise ModelLoadError(
                f"{key}: node '{node['name']}' uses MXNet operator '{op}', which the ONNX "
                "converter does not support; serve this model with engine=mxnet (Python "
                "3.11 with mxnet installed)")
        ins = []
        for slot, entry in enumerate(node.get("inputs", [])):
            if slot in _UNREAD_INPUTS.get(op, ()):
                continue
            source = (entry[0], entry[1] if len(entry) > 1 else 0)
            if source not in tensors:
                raise ModelLoadError(
                    f"{key}: node '{node['name']}' ({op}) reads output {source[1]} of node "
                    f"'{nodes[source[0]]['name']}', which the ONNX converter does not produce")
            ins.append(tensors[source])
        try:
            tensors[(i, 0)] = converter(g, node["name"], _attrs(node), ins)
        except _Unsupported as e:
            raise ModelLoadError(
                f"{key}: node '{node['name']}' uses MXNet operator '{op}' with {e}, which the "
                "ONNX converter does not support; serve this model with engine=mxnet") from e
        except (KeyError, ValueError, SyntaxError, IndexError) as e:
            raise ModelLoadError(f"{key}: node '{node['name']}' ({op}) has attributes the "
                                 f"ONNX converter cannot read ({type(e).__name__}: {e})") from e
        except ModelLoadError as e:
            raise ModelLoadError(f"{key}: {e}") from e
    outputs = []
    for head in graph["heads"]:
        source = (head[0], head[1] if len(head) > 1 else 0)
        if source not in tensors:
            raise ModelLoadError(f"{key}: the network's output {source} is not produced")
        outputs.append(tensors[source])
    h = g.helper
    batch = ["batch"]
    model = h.make_model(
        h.make_graph(
            g.nodes, name,
            [h.make_tensor_value_info(data[0], onnx.TensorProto.FLOAT,
                                      batch + list(input_shape))],
            [h.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None) for o in outputs],
            list(g.initializers.values())),
        opset_imports=[h.make_opsetid("", OPSET)], producer_name="mxsql")
    model.ir_version = IR_VERSION
    try:
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        _copy_shapes(model, g.same_shape)
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ModelLoadError(
            f"{key}: the ONNX graph converted from the checkpoint is not valid for input "
            f"shape {tuple(input_shape)} ({str(e).strip().splitlines()[0]})") from e
    return model


def _copy_shapes(model, same_shape: Dict[str, str]) -> None:
    """Give graph outputs that shape inference left without a shape the inferred type of
    the tensor they share their shape with (the checker wants every output's shape)."""
    known = {v.name: v.type for v in [*model.graph.input, *model.graph.value_info]}
    for output in model.graph.output:
        source = same_shape.get(output.name)
        if not output.type.tensor_type.HasField("shape") and source in known:
            output.type.CopyFrom(known[source])
