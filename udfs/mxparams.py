"""MXNet's ``.params`` format (what ``mx.nd.save`` writes), read with numpy alone.

A file is a list header (magic 0x112, a reserved word), an array count, the arrays, and a
list of names (``arg:NAME``/``aux:NAME`` in a checkpoint, bare names from Gluon's
``save_parameters``, none for a saved list). Each array is written in one of four forms:
V2 (storage type, shape, context, dtype, data, and the aux arrays of a sparse array), V3
(V2 under NumPy shape semantics, where a 0-d shape is a scalar), V1 (no storage type), or
the legacy form with no magic, whose first word is the number of dimensions. Every length
is checked against the bytes left before anything is allocated, so a truncated or corrupt
file is a ``ModelLoadError`` naming it, never a crash or a huge allocation.
"""

import struct
from typing import Dict, List, Tuple

import numpy as np

from mxsql.udfs.errors import ModelLoadError

__all__ = ["load", "load_checkpoint_params"]

_LIST_MAGIC = 0x112
_V1_MAGIC = 0xF993FAC8
_V2_MAGIC = 0xF993FAC9
_V3_MAGIC = 0xF993FACA

# mshadow's type flags; bfloat16 (12) has no numpy type and is widened to float32 exactly.
_DTYPES = {0: np.float32, 1: np.float64, 2: np.float16, 3: np.uint8, 4: np.int32,
           5: np.int8, 6: np.int64, 7: np.bool_, 12: np.uint16}
_BFLOAT16 = 12
_DEFAULT, _ROW_SPARSE, _CSR = 0, 1, 2
_AUX_COUNT = {_DEFAULT: 0, _ROW_SPARSE: 1, _CSR: 2}
_MAX_NDIM = 32  # MXNet's own ceiling; a larger count is a corrupt file


class _Corrupt(Exception):
    """What was wrong at which byte; turned into a ModelLoadError naming the file."""


class _Reader:
    def __init__(self, data: memoryview):
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or n > len(self.data) - self.pos:
            raise _Corrupt(f"{what} needs {n} bytes at offset {self.pos} but the file has "
                           f"{len(self.data) - self.pos} left (truncated?)")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str, what: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def shape(self, what: str) -> Tuple[int, ...]:
        """An int32 ndim and int64 dims, all known."""
        (ndim,) = self.unpack("i", what)
        if not 0 <= ndim <= _MAX_NDIM:
            raise _Corrupt(f"{what} has {ndim} dimensions")
        dims = self.unpack(f"{ndim}q", what)
        if any(d < 0 for d in dims):
            raise _Corrupt(f"{what} {dims} has an unknown dimension")
        return dims

    def array(self, dtype_code: int, shape: Tuple[int, ...], what: str) -> np.ndarray:
        if dtype_code not in _DTYPES:
            raise _Corrupt(f"{what} has unknown dtype code {dtype_code}")
        dtype = np.dtype(_DTYPES[dtype_code])
        count = 1
        for d in shape:
            count *= d
        raw = self.take(count * dtype.itemsize, what)
        out = np.frombuffer(raw, dtype=dtype, count=count).reshape(shape).copy()
        if dtype_code == _BFLOAT16:
            out = (out.astype(np.uint32) << 16).view(np.float32)
        return out


def _read_array(r: _Reader, index: int) -> np.ndarray:
    what = f"array {index}"
    (magic,) = r.unpack("I", f"{what}'s magic")
    stype = _DEFAULT
    storage_shape = None
    if magic in (_V2_MAGIC, _V3_MAGIC):
        (stype,) = r.unpack("i", f"{what}'s storage type")
        if stype not in _AUX_COUNT:
            raise _Corrupt(f"{what} has unknown storage type {stype}")
        if _AUX_COUNT[stype]:
            storage_shape = r.shape(f"{what}'s storage shape")
        shape = r.shape(f"{what}'s shape")
    elif magic == _V1_MAGIC:
        shape = r.shape(f"{what}'s shape")
    else:  # legacy: the magic is the ndim, then uint32 dims
        if magic > _MAX_NDIM:
            raise _Corrupt(f"{what} starts with unknown magic 0x{magic:x}")
        shape = r.unpack(f"{magic}I", f"{what}'s shape")
    # Only NumPy semantics (V3) have 0-d arrays; elsewhere a 0-d shape is an empty slot,
    # which mx.nd.load cannot return either.
    if not shape and magic != _V3_MAGIC:
        raise _Corrupt(f"{what} is an empty slot (no shape)")
    r.unpack("ii", f"{what}'s context")
    (dtype_code,) = r.unpack("i", f"{what}'s dtype")
    if stype == _DEFAULT:
        return r.array(dtype_code, shape, what)
    aux = []
    for i in range(_AUX_COUNT[stype]):
        (aux_code,) = r.unpack("i", f"{what}'s aux dtype")
        aux.append((aux_code, r.shape(f"{what}'s aux shape")))
    values = r.array(dtype_code, storage_shape, f"{what}'s values")
    aux_arrays = [r.array(code, s, f"{what}'s aux array {i}") for i, (code, s) in
                  enumerate(aux)]
    return _densify(stype, shape, values, aux_arrays, what)


def _densify(stype, shape, values, aux, what) -> np.ndarray:
    dense = np.zeros(shape, dtype=values.dtype)
    try:
        if stype == _ROW_SPARSE:
            (rows,) = aux
            if len(rows) != len(values) or values.shape[1:] != tuple(shape[1:]):
                raise _Corrupt(f"{what}: row_sparse indices and values do not match")
            rows = rows.astype(np.int64)
            if np.any(rows < 0):
                raise _Corrupt(f"{what}: negative row_sparse index")
            dense[rows] = values
        else:
            indptr, cols = (a.astype(np.int64) for a in aux)
            if (len(shape) != 2 or len(indptr) != shape[0] + 1 or len(cols) != len(values)
                    or indptr[0] != 0 or indptr[-1] != len(values)
                    or np.any(np.diff(indptr) < 0)):
                raise _Corrupt(f"{what}: csr indptr, indices and values do not match")
            if np.any(cols < 0):
                raise _Corrupt(f"{what}: negative csr column index")
            rows = np.repeat(np.arange(shape[0]), np.diff(indptr))
            dense[rows, cols] = values
    except IndexError as e:
        raise _Corrupt(f"{what}: sparse index out of range ({e})") from e
    return dense


def _parse(data: memoryview) -> List[Tuple[str, np.ndarray]]:
    r = _Reader(data)
    magic, _reserved = r.unpack("QQ", "the header")
    if magic != _LIST_MAGIC:
        raise _Corrupt(f"it does not start with MXNet's list magic 0x112 (found 0x{magic:x})")
    (count,) = r.unpack("Q", "the array count")
    arrays = [_read_array(r, i) for i in range(count)]
    (name_count,) = r.unpack("Q", "the name count")
    if name_count not in (0, count):
        raise _Corrupt(f"it has {count} arrays but {name_count} names")
    names = []
    for i in range(name_count):
        (length,) = r.unpack("Q", f"name {i}'s length")
        names.append(bytes(r.take(length, f"name {i}")).decode("utf-8", errors="replace"))
    if r.pos != len(data):
        raise _Corrupt(f"{len(data) - r.pos} bytes follow the name list")
    return list(zip(names or [""] * count, arrays))


def load(path: str) -> List[Tuple[str, np.ndarray]]:
    """The (name, array) pairs of an MXNet ``.params``/``.nd`` file, in file order.

    Arrays are what ``mx.nd.load(path)[...].asnumpy()`` gives, bit for bit: sparse arrays
    densified, bfloat16 widened to float32 exactly; names are "" when the file holds an
    unnamed list.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ModelLoadError(f"cannot read MXNet parameters {path}: {e.strerror or e}") from e
    try:
        return _parse(memoryview(data))
    except _Corrupt as e:
        raise ModelLoadError(
            f"{path} is not a readable MXNet parameters file: {e}; fetch or export it again"
        ) from None  # the cause holds only our own message


def load_checkpoint_params(path: str) -> Dict[str, np.ndarray]:
    """A checkpoint's parameters by bare name (``arg:``/``aux:`` prefixes dropped), for
    use as weights."""
    return {name.split(":", 1)[1] if name[:4] in ("arg:", "aux:") else name: array
            for name, array in load(path)}
