"""The MXNet-to-ONNX converter, run by ONNX Runtime, against MXNet's own forward pass.

Every model-zoo classifier the converter covers is exported with random weights (batch
norm statistics randomised too, so that they matter), converted from its files without
MXNet, and compared on random inputs with MXNet's symbolic executor over the same files.
Small graphs pin the traps one by one. Tests needing MXNet for a reference skip where it
cannot install (Python 3.12+); the error tests run everywhere.
"""

import json
import os

import numpy as np
import pytest

from mxsql.udfs import mxparams, onnx_export
from mxsql.udfs.errors import ModelLoadError

KEY = "spark.mxsql.model.test.uri"
TOLERANCE = 1e-4  # max |ONNX - MXNet| / max |MXNet|, on logits and on probabilities


# Session scope, so that it skips before the session fixtures that build models with MXNet.
@pytest.fixture(scope="session")
def mx():
    return pytest.importorskip("mxnet")


def _session(model):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def _mx_forward(mx, symbol, params, x):
    """MXNet's forward pass (inference) of a symbol with numpy parameters."""
    executor = symbol.simple_bind(mx.cpu(), grad_req="null", data=x.shape)
    for name, array in executor.arg_dict.items():
        array[:] = x if name == "data" else params.get(name, 0)
    for name, array in executor.aux_dict.items():
        array[:] = params[name]
    return executor.forward(is_train=False)[0].asnumpy()


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _relative(got, want):
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


def _compare(mx, symbol, params, shape, *, batch=2, seeds=(0, 1)):
    """Convert, run both, and return the worst relative difference; top-1 must agree."""
    graph = json.loads(symbol.tojson())
    model = onnx_export.convert(graph, params, input_shape=shape, key=KEY)
    session = _session(model)
    worst = 0.0
    for seed in seeds:
        x = np.random.RandomState(seed).uniform(-1, 1, (batch, *shape)).astype(np.float32)
        want = _mx_forward(mx, symbol, params, x)
        got = session.run(None, {"data": x})[0]
        assert got.shape == want.shape
        worst = max(worst, _relative(got, want))
        flat_got, flat_want = got.reshape(batch, -1), want.reshape(batch, -1)
        np.testing.assert_array_equal(flat_got.argmax(1), flat_want.argmax(1))
        worst = max(worst, _relative(_softmax(flat_got), _softmax(flat_want)))
    return worst


# name: input side (the smallest each network's last pooling allows); the heavy ones are
# slow (vgg and alexnet for their 4096x4096 layers).
ZOO = {
    "resnet18_v1": 32, "resnet18_v2": 32, "mobilenet1.0": 32, "mobilenetv2_1.0": 32,
    "squeezenet1.1": 224, "alexnet": 64,
    "resnet50_v1": 32, "resnet50_v2": 32, "densenet121": 224, "squeezenet1.0": 224,
    "vgg11": 32, "vgg11_bn": 32, "inceptionv3": 299,
}
QUICK = {"resnet18_v1", "resnet18_v2", "mobilenet1.0", "mobilenetv2_1.0", "squeezenet1.1"}


def _export_zoo(mx, name, size, root):
    """Export a zoo network with random weights and random batch-norm statistics."""
    from mxnet.gluon.model_zoo import vision

    mx.random.seed(11)
    rng = np.random.RandomState(11)
    net = vision.get_model(name, pretrained=False, classes=10)
    net.initialize(mx.init.Xavier())
    net.hybridize()
    net(mx.nd.zeros((1, 3, size, size)))
    for param_name, param in net.collect_params().items():
        shape = param.shape
        if param_name.endswith(("running_var", "gamma")):
            param.set_data(mx.nd.array(rng.uniform(0.5, 1.5, shape)))
        elif param_name.endswith(("running_mean", "beta")):
            param.set_data(mx.nd.array(rng.normal(0, 0.1, shape)))
    net(mx.nd.zeros((1, 3, size, size)))
    prefix = os.path.join(root, name)
    net.export(prefix, epoch=0)
    return prefix


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=() if n in QUICK else pytest.mark.slow) for n in ZOO])
def test_zoo_network_matches_mxnet(mx, tmp_path, name):
    size = ZOO[name]
    prefix = _export_zoo(mx, name, size, str(tmp_path))
    # The converter reads the files with no MXNet: our params reader, the JSON as text.
    params = mxparams.load_checkpoint_params(f"{prefix}-0000.params")
    graph = onnx_export.read_symbol(f"{prefix}-symbol.json")
    symbol = mx.sym.load_json(json.dumps(graph))
    assert _compare(mx, symbol, params, (3, size, size)) < TOLERANCE


def test_symbolic_digits_model_matches_mxnet(mx, digits):
    prefix, _ = digits
    symbol = mx.sym.load(f"{prefix}-symbol.json")
    params = mxparams.load_checkpoint_params(f"{prefix}-0000.params")
    assert _compare(mx, symbol, params, (1, 16, 16), seeds=(0, 1, 2)) < TOLERANCE


def _params_for(mx, symbol, shape, seed=0):
    """Random parameters for every argument but data and labels, and positive variances."""
    rng = np.random.RandomState(seed)
    arg_shapes, _, aux_shapes = symbol.infer_shape(data=(2, *shape))
    params = {}
    for name, s in [*zip(symbol.list_arguments(), arg_shapes),
                    *zip(symbol.list_auxiliary_states(), aux_shapes)]:
        if name == "data" or name.endswith("label"):
            continue
        params[name] = (rng.uniform(0.5, 1.5, s) if name.endswith("var")
                        else rng.normal(0, 0.5, s)).astype(np.float32)
    return params


_DATA = {}


def _data(mx):
    """One data variable shared by the branches of a graph (MXNet binds one per node)."""
    return _DATA.setdefault("data", mx.sym.Variable("data"))


def _conv(mx, *, data=None, **kw):
    return mx.sym.Convolution(mx.sym.Variable("data") if data is None else data,
                              num_filter=4, kernel=(3, 3), **kw)


SMALL_GRAPHS = {
    # Symbolic BatchNorm: fix_gamma defaults to True (gamma read as ones), eps to 1e-3.
    "batchnorm-defaults": lambda mx: mx.sym.BatchNorm(_conv(mx, name="c"), name="bn"),
    "batchnorm-free-gamma": lambda mx: mx.sym.BatchNorm(
        _conv(mx, name="c"), fix_gamma=False, eps=2e-5, name="bn"),
    "softmax-default-axis": lambda mx: mx.sym.softmax(_conv(mx, name="c"), name="s"),
    "softmax-axis1-temperature": lambda mx: mx.sym.softmax(
        _conv(mx, name="c"), axis=1, temperature=2.0, name="s"),
    "log-softmax": lambda mx: mx.sym.log_softmax(_conv(mx, name="c"), axis=1, name="s"),
    "softmax-activation-channel": lambda mx: mx.sym.SoftmaxActivation(
        _conv(mx, name="c"), mode="channel", name="s"),
    "softmax-output-multi": lambda mx: mx.sym.SoftmaxOutput(
        _conv(mx, name="c"), multi_output=True, name="softmax"),
    "softmax-output-preserve": lambda mx: mx.sym.SoftmaxOutput(
        _conv(mx, name="c"), preserve_shape=True, name="softmax"),
    "conv-groups-dilate-nobias": lambda mx: mx.sym.Convolution(
        mx.sym.Variable("data"), num_filter=6, num_group=3, kernel=(3, 3), dilate=(2, 2),
        pad=(2, 1), stride=(2, 1), no_bias=True, name="c"),
    "activations": lambda mx: mx.sym.Concat(*[
        mx.sym.Activation(_conv(mx, name=f"c{a}", data=_data(mx)), act_type=a, name=a)
        for a in ("relu", "sigmoid", "tanh", "softrelu", "softsign")], dim=1, name="cat"),
    "leaky-relu-variants": lambda mx: mx.sym.Concat(*[
        mx.sym.LeakyReLU(_conv(mx, name=f"c{a}", data=_data(mx)), act_type=a, slope=0.3,
                         name=a)
        for a in ("leaky", "elu", "selu")], dim=1, name="cat"),
    "fc-no-flatten-no-bias": lambda mx: mx.sym.FullyConnected(
        _conv(mx, name="c"), num_hidden=5, flatten=False, no_bias=True, name="fc"),
    "fc-no-flatten": lambda mx: mx.sym.FullyConnected(
        _conv(mx, name="c"), num_hidden=5, flatten=False, name="fc"),
    "fc-no-bias": lambda mx: mx.sym.FullyConnected(
        _conv(mx, name="c"), num_hidden=5, no_bias=True, name="fc"),
    "clip-dropout-flatten": lambda mx: mx.sym.Flatten(mx.sym.Dropout(
        mx.sym.clip(_conv(mx, name="c"), a_min=-0.5, a_max=0.7), p=0.5), name="f"),
    "broadcast-and-elementwise": lambda mx: mx.sym.broadcast_mul(
        mx.sym.elemwise_add(_conv(mx, name="a", data=_data(mx)),
                            _conv(mx, name="b", data=_data(mx))),
        mx.sym.broadcast_sub(_conv(mx, name="d", data=_data(mx)),
                             mx.sym.Pooling(_conv(mx, name="e", data=_data(mx)),
                                            global_pool=True, kernel=(1, 1), pool_type="max")),
        name="out"),
    "scalars": lambda mx: 2.0 / (1.5 - (_conv(mx, name="c") * 0.5 + 3.0) / 4.0 - 1.0),
    "reshape": lambda mx: mx.sym.Reshape(_conv(mx, name="c"), shape=(0, -1, 2), name="r"),
}


@pytest.mark.parametrize("name", SMALL_GRAPHS)
def test_small_graph_matches_mxnet(mx, name):
    symbol = SMALL_GRAPHS[name](mx)
    shape = (3, 9, 10)
    assert _compare(mx, symbol, _params_for(mx, symbol, shape), shape) < TOLERANCE


# (pool, count_include_pad, input side, kernel, stride, pad). A last "full" window that
# starts in the right padding (5, 2, 2, 1: ONNX Runtime's ceil mode drops it) is empty for
# an average without padding (MXNet divides by zero there), so that case is max and
# count_include_pad only. (6, 3, 3, 1) pads as much as the kernel; (6, 3, 2, 0) is
# squeezenet's.
FULL_POOLING = [
    (pool, include, *geometry)
    for pool, include in (("max", True), ("avg", True), ("avg", False))
    for geometry in ((5, 2, 2, 1), (7, 3, 2, 1), (6, 3, 2, 0), (6, 3, 3, 1), (8, 3, 2, 1),
                     (7, 1, 2, 0))
    if not (pool, include, geometry) == ("avg", False, (5, 2, 2, 1))
]


@pytest.mark.parametrize("pool, include_pad, side, kernel, stride, pad", FULL_POOLING)
def test_full_pooling_convention_keeps_mxnet_windows(mx, pool, include_pad, side, kernel,
                                                      stride, pad):
    symbol = mx.sym.Pooling(mx.sym.Variable("data"), kernel=(kernel, kernel),
                            stride=(stride, stride), pad=(pad, pad), pool_type=pool,
                            pooling_convention="full", count_include_pad=include_pad,
                            name="pool")
    assert _compare(mx, symbol, {}, (2, side, side)) < TOLERANCE


@pytest.mark.parametrize("pool, include_pad", [("max", True), ("avg", True), ("avg", False)])
def test_valid_pooling_with_padding_matches_mxnet(mx, pool, include_pad):
    symbol = mx.sym.Pooling(mx.sym.Variable("data"), kernel=(3, 3), stride=(2, 2),
                            pad=(1, 1), pool_type=pool, count_include_pad=include_pad,
                            name="pool")
    assert _compare(mx, symbol, {}, (2, 8, 7)) < TOLERANCE


def test_softmax_output_over_feature_maps_softmaxes_each_instance(mx):
    """MXNet's reference kernel flattens each instance; the oneDNN pip build takes the last
    axis instead, so the reference here is numpy, on MXNet's own convolution output."""
    conv = _conv(mx, name="c")
    shape = (3, 6, 6)
    params = _params_for(mx, conv, shape)
    x = np.random.RandomState(3).uniform(-1, 1, (2, *shape)).astype(np.float32)
    features = _mx_forward(mx, conv, params, x)
    graph = json.loads(mx.sym.SoftmaxOutput(conv, name="softmax").tojson())
    got = _session(onnx_export.convert(graph, params, input_shape=shape, key=KEY)).run(
        None, {"data": x})[0]
    assert got.shape == features.shape
    want = _softmax(features.reshape(2, -1)).reshape(features.shape)
    assert _relative(got, want) < TOLERANCE


def _graph(*nodes, heads=None):
    """A symbol.json by hand: nodes as (op, name, attrs, inputs by node index)."""
    return {"nodes": [{"op": op, "name": name, "attrs": attrs, "inputs": [[i, 0, 0] for i in ins]}
                      for op, name, attrs, ins in nodes],
            "heads": heads or [[len(nodes) - 1, 0, 0]]}


def test_model_is_opset_13_ir_7_with_weights_and_dynamic_batch():
    import onnx

    graph = _graph(("null", "data", {}, []), ("null", "fc_weight", {}, []),
                   ("null", "fc_bias", {}, []),
                   ("FullyConnected", "fc", {"num_hidden": "3"}, [0, 1, 2]),
                   ("null", "softmax_label", {}, []),
                   ("SoftmaxOutput", "softmax", {}, [3, 4]))
    rng = np.random.RandomState(0)
    params = {"fc_weight": rng.randn(3, 8).astype(np.float32),
              "fc_bias": rng.randn(3).astype(np.float64)}
    model = onnx_export.convert(graph, params, input_shape=(2, 2, 2), key=KEY)
    assert model.ir_version == 7
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 13)]
    assert {i.name for i in model.graph.initializer} == {"fc_weight", "fc_bias"}
    assert [i.name for i in model.graph.input] == ["data"]  # the label is not an input
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [2, 2, 2]
    onnx.checker.check_model(model, full_check=True)
    session = _session(model)
    for batch in (1, 5):
        x = rng.randn(batch, 2, 2, 2).astype(np.float32)
        want = _softmax(x.reshape(batch, -1) @ params["fc_weight"].T + params["fc_bias"])
        np.testing.assert_allclose(session.run(None, {"data": x})[0], want, rtol=1e-5)


def test_unknown_operator_names_op_node_and_key():
    graph = _graph(("null", "data", {}, []), ("LRN", "norm1", {"nsize": "5"}, [0]))
    with pytest.raises(ModelLoadError, match=r"spark\.mxsql\.model\.test\.uri.*'norm1'.*'LRN'"):
        onnx_export.convert(graph, {}, input_shape=(3, 8, 8), key=KEY)


@pytest.mark.parametrize("op, attrs", [
    ("Pooling", {"kernel": "(2, 2)", "pooling_convention": "same"}),
    ("Pooling", {"kernel": "(2, 2)", "pool_type": "lp"}),
    ("Activation", {"act_type": "gelu"}),
    ("Dropout", {"p": "0.5", "mode": "always"}),
    ("Reshape", {"shape": "(-3, 0)"}),
])
def test_unsupported_attribute_value_names_it(op, attrs):
    graph = _graph(("null", "data", {}, []), (op, "node7", attrs, [0]))
    with pytest.raises(ModelLoadError, match=r"test\.uri.*'node7'.*" + op):
        onnx_export.convert(graph, {}, input_shape=(3, 8, 8), key=KEY)


def test_parameter_missing_from_the_file_names_it():
    graph = _graph(("null", "data", {}, []), ("null", "fc_weight", {}, []),
                   ("FullyConnected", "fc", {"num_hidden": "3", "no_bias": "True"}, [0, 1]))
    with pytest.raises(ModelLoadError, match=r"test\.uri.*2 inputs.*data, fc_weight"):
        onnx_export.convert(graph, {}, input_shape=(3, 8, 8), key=KEY)


def test_graph_onnx_rejects_is_an_error_naming_the_key():
    graph = _graph(("null", "data", {}, []), ("Flatten", "flat", {}, [0]),
                   ("Concat", "cat", {"dim": "1", "num_args": "2"}, [0, 1]))
    with pytest.raises(ModelLoadError, match=r"test\.uri.*not valid"):
        onnx_export.convert(graph, {}, input_shape=(3, 4, 4), key=KEY)


def test_unreadable_symbol_file_names_it(tmp_path):
    path = tmp_path / "net-symbol.json"
    path.write_text('{"nodes": [')
    with pytest.raises(ModelLoadError, match="net-symbol.json"):
        onnx_export.read_symbol(str(path))
