"""Bodies of the SQL functions: iterators of Arrow batches in, Arrow arrays out.

Each body gets the registered ``Settings`` and the batches Spark feeds one Python
worker for one task. A row that cannot be classified gives a real SQL NULL (through
the struct's validity mask) unless ``spark.mxsql.onError=fail``.
"""

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator, List, NamedTuple, Optional

import numpy as np
import pyarrow as pa

from mxsql.udfs import images, logs, models
from mxsql.udfs.config import PREFIX, ModelSpec, Settings
from mxsql.udfs.errors import ArgumentError, InferenceError, RowError

__all__ = ["CLASS_TYPE", "INFO_TYPE", "TOP_K_TYPE", "classify", "top_k", "image_info"]

CLASS_TYPE = pa.struct([
    ("label", pa.string()), ("probability", pa.float64()), ("class_index", pa.int32()),
])
TOP_K_TYPE = pa.list_(CLASS_TYPE)
INFO_TYPE = pa.struct([
    ("format", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
    ("mode", pa.string()), ("error", pa.string()),
])
_DEFAULT_MODEL = "default"
_log = logs.logger()


class _Group(NamedTuple):
    """Rows of one Arrow batch that use one model, decoded."""

    spec: ModelSpec
    rows: np.ndarray  # positions in the batch of the decoded rows
    pixels: np.ndarray  # (len(rows), H, W, C) uint8


class _Prepared(NamedTuple):
    size: int
    groups: List[_Group]
    ks: Optional[np.ndarray]
    paths: Optional[pa.Array]  # the call's path argument, when given


def _columns(batch, n_optional: int):
    """Split an Arrow batch into its columns, padding absent optional ones with None."""
    cols = list(batch) if isinstance(batch, (tuple, list)) else [batch]
    return cols + [None] * (1 + n_optional - len(cols))


def _decode(settings: Settings, spec: ModelSpec, data: Optional[bytes]):
    """The model input for one row's bytes, or the UnreadableImage that says why not."""
    try:
        return images.load_pixels(data, input_size=spec.input_size, channels=spec.channels,
                                  resize=spec.resize, max_pixels=settings.max_image_pixels)
    except images.UnreadableImage as e:
        return e


class _Batch:
    """One Arrow batch: which model each row uses, and the rows decoded ahead of time.

    ``decode_ahead`` runs in the background thread and stops at the next row once the
    caller has ``claimed`` the batch; the caller decodes whatever is left itself.
    """

    def __init__(self, settings: Settings, batch, top: bool):
        self.function = "mx_top_k" if top else "mx_classify"
        if top:
            content, k, names, self.paths = _columns(batch, 3)
            self.ks = np.asarray(k.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
            invalid = k.is_valid().to_numpy(zero_copy_only=False) & (self.ks <= 0)
            if invalid.any():
                raise ArgumentError(
                    f"mx_top_k: k must be a positive integer, got {self.ks[invalid][0]}")
        else:
            content, names, self.paths = _columns(batch, 2)
            self.ks = None
        self.settings = settings
        self.values = content.to_pylist()
        name_list = names.to_pylist() if names is not None else [_DEFAULT_MODEL] * len(self.values)
        self.by_model = {}
        for row, name in enumerate(name_list):
            self.by_model.setdefault(name or _DEFAULT_MODEL, []).append(row)
        self.specs = {name: settings.model(name) for name in self.by_model}
        self.decoded = {}
        self.claimed = False

    def _image(self, row: int) -> str:
        if self.paths is not None:
            return f"image {self.paths[row].as_py()}"
        position = "fourth" if self.function == "mx_top_k" else "third"
        return (f"an image (pass its path as the {position} argument of {self.function} "
                "to name the file)")

    def rows(self, name: str) -> List[int]:
        """The rows that use model ``name`` and have something to classify (k is not NULL)."""
        return [row for row in self.by_model[name] if self.ks is None or self.ks[row] > 0]

    def decode_ahead(self) -> None:
        """Decode the rows in order (in the background thread) until the batch is claimed."""
        for name, spec in self.specs.items():
            for row in self.rows(name):
                if self.claimed:
                    return
                self.decoded[row] = _decode(self.settings, spec, self.values[row])

    def prepare(self) -> _Prepared:
        """Claim the batch and decode the rows the background thread has not."""
        self.claimed = True
        groups = []
        for name, spec in self.specs.items():
            decoded, kept = [], []
            for row in self.rows(name):
                pixels = self.decoded.pop(row, None)
                if pixels is None:
                    pixels = _decode(self.settings, spec, self.values[row])
                if isinstance(pixels, images.UnreadableImage):
                    if self.settings.on_error == "fail":
                        raise RowError(
                            f"cannot classify {self._image(row)} with model '{name}': {pixels} "
                            f"({PREFIX}onError=fail; set it to null to get NULL instead)")
                    continue
                decoded.append(pixels)
                kept.append(row)
            height, width = spec.input_size
            pixels = (np.stack(decoded) if decoded
                      else np.empty((0, height, width, spec.channels), np.uint8))
            groups.append(_Group(spec, np.array(kept, dtype=np.int64), pixels))
        return _Prepared(len(self.values), groups, self.ks, self.paths)


def _idle_priority() -> None:
    """Let the calling thread run only on a core that no other thread wants (SCHED_IDLE)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError) as e:  # not Linux, or a seccomp/container policy
        # The initializer of the worker's one decode thread: one line per worker process.
        _log.warning("decode-ahead runs at normal priority and may take cores from the "
                     "network: cannot set SCHED_IDLE on its thread (%s: %s)",
                     type(e).__name__, e)


# One decode thread per Python worker, for all its tasks: a thread per task, not waited
# for at the task's end, left a new thread (and with it a new malloc arena) to each next
# task, and a worker's memory grew over a long query (tests/test_cluster.py).
_decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mxsql-decode",
                              initializer=_idle_priority)


def _prepared_batches(settings: Settings, batches: Iterable, top: bool) -> Iterator[_Prepared]:
    """Decoded batches; with prefetch, the next one is decoded ahead while the caller runs
    the network on this one.

    The decode thread runs at idle priority: it takes a core only when the network, Spark
    and the other tasks leave it idle, so it never slows them. When the caller needs the
    batch, it decodes the rows the thread has not, so a thread starved on a busy machine
    never holds a task up.
    """
    if not settings.prefetch:
        for batch in batches:
            yield _Batch(settings, batch, top).prepare()
        return
    ahead: List[_Batch] = []  # handed to the thread, not yet claimed
    try:
        for batch in batches:
            ahead.append(_Batch(settings, batch, top))
            _decoder.submit(ahead[-1].decode_ahead)
            if len(ahead) == 2:
                yield ahead.pop(0).prepare()
        if ahead:
            yield ahead.pop().prepare()
    finally:
        for batch in ahead:
            batch.claimed = True  # a stopped query: the thread stops at its next row


def _scored(settings: Settings, prepared: _Prepared):
    """(group, model, probabilities) for every group that has decodable rows."""
    for group in prepared.groups:
        if len(group.rows) == 0:
            continue
        model = models.get_model(group.spec, settings)
        _log.debug("model '%s' runs on %d rows (pid %d)", group.spec.name, len(group.rows),
                   os.getpid())
        if prepared.paths is not None and _log.isEnabledFor(logging.DEBUG):
            _log.debug("%s", logs.classified_line(
                group.spec.name, os.getpid(), prepared.paths.take(group.rows).to_pylist()))
        try:
            yield group, model, model.predict(group.pixels, settings.batch_size)
        except InferenceError:
            if settings.on_error == "fail":
                raise
            yield _isolate_failures(settings, group, model)


def _isolate_failures(settings: Settings, group: _Group, model):
    """Run a group the network failed on one image at a time; failing rows get no result."""
    kept, probs = [], []
    for i, row in enumerate(group.rows):
        try:
            probs.append(model.predict(group.pixels[i:i + 1], settings.batch_size)[0])
            kept.append(i)
        except InferenceError as e:
            _log.warning("row %d of a batch gives NULL: %s", row, e)
    rows = group.rows[kept]
    scores = np.stack(probs) if probs else np.empty((0, model.num_classes))
    return group._replace(rows=rows, pixels=group.pixels[kept]), model, scores


def classify(settings: Settings, batches: Iterable) -> Iterator[pa.Array]:
    """``mx_classify(content[, model[, path]])``: the top-1 class of each image."""
    settings = settings.for_task()
    for prepared in _prepared_batches(settings, batches, top=False):
        n = prepared.size
        labels = np.full(n, None, dtype=object)
        probs = np.zeros(n, dtype=np.float64)
        index = np.zeros(n, dtype=np.int32)
        valid = np.zeros(n, dtype=bool)
        for group, model, p in _scored(settings, prepared):
            best = p.argmax(axis=1)
            labels[group.rows] = np.asarray(model.labels, dtype=object)[best]
            probs[group.rows] = p[np.arange(len(best)), best]
            index[group.rows] = best
            valid[group.rows] = True
        yield pa.StructArray.from_arrays(
            [pa.array(labels, pa.string()), pa.array(probs), pa.array(index)],
            fields=list(CLASS_TYPE), mask=pa.array(~valid),
        )


def top_k(settings: Settings, batches: Iterable) -> Iterator[pa.Array]:
    """``mx_top_k(content, k[, model[, path]])``: the k best classes, best first."""
    settings = settings.for_task()
    for prepared in _prepared_batches(settings, batches, top=True):
        n = prepared.size
        counts = np.zeros(n, dtype=np.int64)
        scored = []
        for group, model, p in _scored(settings, prepared):
            ks = np.minimum(prepared.ks[group.rows], model.num_classes)
            order = np.argsort(-p, axis=1, kind="stable")[:, :int(ks.max(initial=0))]
            counts[group.rows] = ks
            scored.append((group.rows, ks, model, p, order))
        valid = np.zeros(n, dtype=bool)
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(counts, out=offsets[1:])
        labels = np.full(offsets[-1], None, dtype=object)
        probs = np.zeros(offsets[-1], dtype=np.float64)
        index = np.zeros(offsets[-1], dtype=np.int32)
        for rows, ks, model, p, order in scored:
            valid[rows] = True
            ranks = np.arange(order.shape[1])
            taken = ranks[None, :] < ks[:, None]  # (rows, ranks): rank within the row's k
            positions = (offsets[rows][:, None] + ranks[None, :])[taken]
            classes = order[taken]
            labels[positions] = np.asarray(model.labels, dtype=object)[classes]
            probs[positions] = np.take_along_axis(p, order, axis=1)[taken]
            index[positions] = classes
        items = pa.StructArray.from_arrays(
            [pa.array(labels, pa.string()), pa.array(probs), pa.array(index)],
            fields=list(CLASS_TYPE),
        )
        yield pa.ListArray.from_arrays(pa.array(offsets), items, type=TOP_K_TYPE,
                                       mask=pa.array(~valid))


def image_info(settings: Settings, batches: Iterable) -> Iterator[pa.Array]:
    """``mx_image_info(content)``: format, size and mode, or why the image won't decode."""
    settings = settings.for_task()
    for batch in batches:
        (content,) = _columns(batch, 0)[:1]
        infos = [images.image_info(v, settings.max_image_pixels) for v in content.to_pylist()]
        yield pa.array([i._asdict() for i in infos], type=INFO_TYPE)
