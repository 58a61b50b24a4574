"""The numpy reader of MXNet's .params format gives mx.nd.load's arrays, bit for bit.

References are made by MXNet itself where it can write the form (V2 dense and sparse, V3
np-shape, checkpoints); the forms MXNet 1.9.1 only reads (V1, the legacy form without a
magic, bfloat16) are written byte by byte here and read by both mx.nd.load and ours.
Tests that need MXNet skip where it cannot install (Python 3.12+); the rest run there too.
"""

import os
import struct

import numpy as np
import pytest

from mxsql.udfs import mxparams
from mxsql.udfs.errors import ModelLoadError

_V1, _V2, _V3 = 0xF993FAC8, 0xF993FAC9, 0xF993FACA


def _file(arrays, names=()):
    """MXNet's list format around already-encoded arrays."""
    out = struct.pack("<QQQ", 0x112, 0, len(arrays)) + b"".join(arrays)
    out += struct.pack("<Q", len(names))
    for name in names:
        out += struct.pack("<Q", len(name.encode())) + name.encode()
    return out


def _shape(shape):
    return struct.pack(f"<i{len(shape)}q", len(shape), *shape)


def _v2(array, code, magic=_V2):
    return (struct.pack("<Ii", magic, 0) + _shape(array.shape) + struct.pack("<iii", 1, 0, code)
            + array.tobytes())


def _v1(array, code):
    return struct.pack("<I", _V1) + _shape(array.shape) + struct.pack("<iii", 1, 0, code) \
        + array.tobytes()


def _legacy(array, code):
    return (struct.pack(f"<I{array.ndim}I", array.ndim, *array.shape)
            + struct.pack("<iii", 1, 0, code) + array.tobytes())


def _write(tmp_path, name, data: bytes) -> str:
    path = str(tmp_path / name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _assert_bit_exact(ours, theirs):
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    assert ours.tobytes() == theirs.tobytes()


def _mx_arrays(path):
    import mxnet as mx

    loaded = mx.nd.load(path)
    if isinstance(loaded, dict):
        return {k: v.asnumpy() for k, v in loaded.items()}
    return {"": [v.asnumpy() for v in loaded]}


# Session scope, so that it skips before the session fixtures that build models with MXNet.
@pytest.fixture(scope="session")
def mx():
    return pytest.importorskip("mxnet")


DTYPES = ["float16", "float32", "float64", "uint8", "int8", "int32", "int64", "bool"]


def test_every_dtype_matches_mx_nd_load(mx, tmp_path):
    rng = np.random.RandomState(0)
    arrays = {}
    for dtype in DTYPES:
        values = rng.uniform(-100, 100, (3, 4, 5))
        if dtype == "bool":
            values = values > 0
        arrays[dtype] = mx.nd.array(values, dtype=dtype)
    arrays["scalar_like"] = mx.nd.array([7.25])
    arrays["five_d"] = mx.nd.array(rng.randn(2, 1, 3, 1, 2))
    path = str(tmp_path / "dtypes.params")
    mx.nd.save(path, arrays)
    ours = dict(mxparams.load(path))
    theirs = _mx_arrays(path)
    assert set(ours) == set(theirs)
    for name in theirs:
        _assert_bit_exact(ours[name], theirs[name])


def test_unnamed_list_has_empty_names(mx, tmp_path):
    path = str(tmp_path / "list.nd")
    mx.nd.save(path, [mx.nd.ones((2,)), mx.nd.zeros((1, 3))])
    loaded = mxparams.load(path)
    assert [name for name, _ in loaded] == ["", ""]
    for (_, ours), theirs in zip(loaded, _mx_arrays(path)[""]):
        _assert_bit_exact(ours, theirs)


def test_sparse_arrays_are_densified_like_mxnet(mx, tmp_path):
    rng = np.random.RandomState(1)
    row_sparse = mx.nd.sparse.row_sparse_array(
        (rng.randn(2, 3, 2).astype(np.float32), [1, 4]), shape=(6, 3, 2))
    csr = mx.nd.sparse.csr_matrix(
        (np.array([1.5, -2, 3], np.float64), np.array([0, 3, 1]), np.array([0, 2, 2, 3])),
        shape=(3, 5))
    empty_csr = mx.nd.sparse.zeros("csr", (2, 3))
    path = str(tmp_path / "sparse.params")
    mx.nd.save(path, {"rsp": row_sparse, "csr": csr, "empty": empty_csr})
    ours = dict(mxparams.load(path))
    theirs = _mx_arrays(path)
    for name in ("rsp", "csr", "empty"):
        _assert_bit_exact(ours[name], theirs[name])


def test_np_shape_v3_arrays_and_scalars_match_npx_load(mx, tmp_path):
    from mxnet import npx

    path = str(tmp_path / "np.params")
    npx.set_np()
    try:
        npx.save(path, {"matrix": mx.np.array([[1.0, 2.0], [3.0, 4.0]]),
                        "scalar": mx.np.array(5.5), "empty": mx.np.zeros((0, 3))})
        theirs = {k: v.asnumpy() for k, v in npx.load(path).items()}
    finally:
        npx.reset_np()
    with open(path, "rb") as f:
        assert struct.unpack("<I", f.read(28)[24:28])[0] == _V3
    ours = dict(mxparams.load(path))
    assert ours["scalar"].shape == ()
    for name in theirs:
        _assert_bit_exact(ours[name], theirs[name])


@pytest.mark.parametrize("encode", [_v1, _legacy], ids=["v1", "legacy"])
def test_older_array_versions_match_mx_nd_load(mx, tmp_path, encode):
    matrix = np.arange(12, dtype=np.float32).reshape(3, 4)
    empty = np.zeros((0, 3), np.int32)
    path = _write(tmp_path, "old.params",
                  _file([encode(matrix, 0), encode(empty, 4)], ["arg:w", "aux:e"]))
    ours = dict(mxparams.load(path))
    theirs = _mx_arrays(path)
    for name in ("arg:w", "aux:e"):
        _assert_bit_exact(ours[name], theirs[name])


def test_bfloat16_is_widened_to_float32_exactly(tmp_path):
    bits = np.array([[0x3F80, 0x4000, 0xC040, 0x3EAB]], np.uint16)  # 1, 2, -3, 0.333984375
    path = _write(tmp_path, "bf16.params", _file([_v2(bits, 12)], ["arg:w"]))
    (name, ours), = mxparams.load(path)
    np.testing.assert_array_equal(ours, np.array([[1, 2, -3, 0.333984375]], np.float32))
    assert ours.dtype == np.float32


def test_bfloat16_bits_are_what_mxnet_reads(mx, tmp_path):
    bits = np.array([0x3F80, 0xBF00, 0x4049], np.uint16)
    path = _write(tmp_path, "bf16.params", _file([_v2(bits, 12)], ["w"]))
    theirs = mx.nd.load(path)["w"].asnumpy().view(np.uint16).reshape(-1)
    ours = dict(mxparams.load(path))["w"]
    np.testing.assert_array_equal((theirs.astype(np.uint32) << 16).view(np.float32), ours)


def test_gluon_resnet18_export_matches_mx_nd_load(mx, resnet18):
    path = f"{resnet18}-0000.params"
    ours = dict(mxparams.load(path))
    theirs = _mx_arrays(path)
    assert len(theirs) > 100 and set(ours) == set(theirs)
    for name in theirs:
        _assert_bit_exact(ours[name], theirs[name])


def test_symbolic_checkpoint_params_by_bare_name(mx, digits):
    prefix, _ = digits
    _, arg_params, aux_params = mx.model.load_checkpoint(prefix, 0)
    params = mxparams.load_checkpoint_params(f"{prefix}-0000.params")
    assert set(params) == set(arg_params) | set(aux_params)
    for name, value in {**arg_params, **aux_params}.items():
        _assert_bit_exact(params[name], value.asnumpy())


def test_gluon_save_parameters_names_are_kept(mx, tmp_path):
    net = mx.gluon.nn.Dense(3, in_units=4, prefix="dense_")
    net.initialize()
    path = str(tmp_path / "dense.params")
    net.save_parameters(path)
    params = mxparams.load_checkpoint_params(path)
    assert set(params) == {"weight", "bias"}
    _assert_bit_exact(params["weight"], net.weight.data().asnumpy())


def _small_checkpoint() -> bytes:
    weights = np.arange(6, dtype=np.float32).reshape(2, 3)
    return _file([_v2(weights, 0), _v2(np.ones(2, np.float64), 1)], ["arg:w", "aux:m"])


def test_every_truncation_is_a_model_load_error_naming_the_file(tmp_path):
    data = _small_checkpoint()
    path = str(tmp_path / "cut.params")
    for size in range(len(data)):
        with open(path, "wb") as f:
            f.write(data[:size])
        with pytest.raises(ModelLoadError, match="cut.params"):
            mxparams.load(path)


@pytest.mark.parametrize("patch, reason", [
    (lambda d: d.replace(struct.pack("<Q", 0x112), struct.pack("<Q", 0x113), 1), "magic"),
    (lambda d: d[:16] + struct.pack("<Q", 1 << 60) + d[24:], "not a readable"),
    # A shape of 2**40 x 2**20 floats: refused from the bytes left, never allocated.
    (lambda d: d.replace(_shape((2, 3)), _shape((1 << 40, 1 << 20)), 1), "truncated"),
    (lambda d: d.replace(_shape((2, 3)), _shape((-1, 3)), 1), "unknown dimension"),
    (lambda d: d.replace(_v2(np.ones(2, np.float64), 1), _v2(np.ones(2, np.float64), 99)),
     "dtype code 99"),
    (lambda d: d + b"\0", "follow"),
], ids=["list-magic", "huge-count", "huge-shape", "unknown-dim", "dtype", "trailing"])
def test_corrupt_file_is_a_clear_error(tmp_path, patch, reason):
    path = _write(tmp_path, "bad.params", patch(_small_checkpoint()))
    with pytest.raises(ModelLoadError, match=reason) as error:
        mxparams.load(path)
    assert path in str(error.value)


def _row_sparse(values, rows, shape):
    """A V2 row_sparse array: storage shape, shape, context, dtype, aux dtype and shape,
    values, row indices."""
    return (struct.pack("<Ii", _V2, 1) + _shape(values.shape) + _shape(shape)
            + struct.pack("<iiii", 1, 0, 0, 6) + _shape(rows.shape)
            + values.tobytes() + rows.tobytes())


def test_hand_written_row_sparse_reads_as_mxnet_does(mx, tmp_path):
    values = np.arange(4, dtype=np.float32).reshape(2, 2)
    path = _write(tmp_path, "rsp.params", _file(
        [_row_sparse(values, np.array([0, 2], np.int64), (3, 2))], ["w"]))
    _assert_bit_exact(dict(mxparams.load(path))["w"], _mx_arrays(path)["w"])


@pytest.mark.parametrize("row", [7, -1])
def test_sparse_index_out_of_range_is_a_clear_error(tmp_path, row):
    path = _write(tmp_path, "rsp-bad.params", _file(
        [_row_sparse(np.ones((1, 2), np.float32), np.array([row], np.int64), (3, 2))], ["w"]))
    with pytest.raises(ModelLoadError, match="rsp-bad.params.*(out of range|negative)"):
        mxparams.load(path)


def test_missing_file_is_a_model_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="nowhere.params"):
        mxparams.load(os.path.join(str(tmp_path), "nowhere.params"))
