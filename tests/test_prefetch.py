"""Decode prefetch: the next batch is decoded at idle priority, and never waited for.

The decode thread shares the cores with the network. At normal priority it took them
from the network (bench/RESULTS.md: prefetch on ran slower than off); at idle priority
it runs only on a core nothing else wants. A thread at idle priority may get no core at
all on a busy machine, so the task decodes whatever the thread has not finished itself.
The tests never sleep: they ask the thread (its policy, what it decoded) and wait for it
with a deadline.
"""

import logging
import os
import threading
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest

from mxsql.udfs import functions
from mxsql.udfs.config import parse_settings
from mxsql.udfs.errors import RowError
from tests import imagekit

_ROWS = 12
_DEADLINE = 60  # seconds: an idle-priority thread on a busy machine is slow, not stuck


@pytest.fixture(scope="module")
def settings():
    return parse_settings({"spark.mxsql.model.default.uri": "/models/unused",
                           "spark.mxsql.model.default.inputSize": "16"})


@pytest.fixture(scope="module")
def batches():
    """Three Arrow batches of PNGs of different sizes; one row of the second is not an image."""
    def png(i):
        return imagekit.encode(imagekit.gradient_rgb(20 + i, 10 + 2 * i), "PNG")

    rows = [[png(b * _ROWS + i) for i in range(_ROWS)] for b in range(3)]
    rows[1][5] = b"not an image"
    return [pa.array(r, pa.binary()) for r in rows]


def _pixels(prepared):
    (group,) = prepared.groups
    return group.rows, group.pixels


def _thread_done():
    """Wait until the decode thread has finished everything handed to it so far: it runs
    its work in order, so a no-op handed to it now runs after all of it."""
    functions._decoder.submit(lambda: None).result(_DEADLINE)


def _decoded(settings, batches, wait_for_thread=False):
    """(rows, pixels) of each prepared batch; with ``wait_for_thread``, the network's turn
    after each batch lasts until the decode thread has decoded the next one ahead."""
    out = []
    for prepared in functions._prepared_batches(settings, iter(batches), top=False):
        out.append(_pixels(prepared))
        if wait_for_thread:
            _thread_done()
    return out


def _on_decode_thread():
    return threading.current_thread().name.startswith("mxsql-decode")


def _same(a, b):
    assert len(a) == len(b)
    for (rows_a, pixels_a), (rows_b, pixels_b) in zip(a, b):
        assert rows_a.tolist() == rows_b.tolist()
        assert np.array_equal(pixels_a, pixels_b)


def test_prefetch_gives_the_rows_and_pixels_of_decoding_in_turn(settings, batches,
                                                               monkeypatch):
    expected = _decoded(replace(settings, prefetch=False), batches)
    assert [rows.tolist() for rows, _ in expected][1] == [i for i in range(_ROWS) if i != 5]
    ahead = []
    decode = functions._decode

    def recording(*args):
        if _on_decode_thread():
            ahead.append(args[2])
        return decode(*args)

    monkeypatch.setattr(functions, "_decode", recording)
    _same(_decoded(settings, batches, wait_for_thread=True), expected)
    # The second and third batches were each decoded whole by the thread ahead of time.
    assert set(ahead) >= {v.as_py() for b in batches[1:] for v in b}


def test_decode_thread_runs_at_idle_priority(settings, batches, monkeypatch):
    decoders = set()
    decode = functions._decode

    def recording(*args):
        if _on_decode_thread():
            decoders.add(threading.get_native_id())
        return decode(*args)

    monkeypatch.setattr(functions, "_decode", recording)
    _decoded(settings, batches, wait_for_thread=True)
    assert len(decoders) == 1, "one decode thread per worker"
    (thread,) = decoders
    assert os.sched_getscheduler(thread) == os.SCHED_IDLE
    assert os.sched_getscheduler(threading.get_native_id()) == os.SCHED_OTHER, \
        "the task's own thread keeps the normal priority"


def _refuse_idle_priority(monkeypatch, failure):
    """Make setting SCHED_IDLE fail as it does in a container that forbids it, or on a
    system that lacks it."""
    if failure is PermissionError:
        def refused(*args):
            raise PermissionError(1, "Operation not permitted")

        monkeypatch.setattr(os, "sched_setscheduler", refused)
    else:
        monkeypatch.delattr(os, "SCHED_IDLE")


@pytest.mark.parametrize("failure", [PermissionError, AttributeError])
def test_a_decode_thread_that_cannot_lower_its_priority_logs_one_warning(monkeypatch, failure):
    records = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    logger = logging.getLogger("mxsql")
    logger.addHandler(handler)
    _refuse_idle_priority(monkeypatch, failure)
    try:
        # What the worker's one decode thread runs first; a fresh thread, so that the
        # test's own thread keeps its priority whatever happens.
        thread = threading.Thread(target=functions._idle_priority)
        thread.start()
        thread.join(_DEADLINE)
    finally:
        logger.removeHandler(handler)
    (record,) = records
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(
        "decode-ahead runs at normal priority and may take cores from the network: "
        f"cannot set SCHED_IDLE on its thread ({failure.__name__}: ")


def test_a_decode_thread_that_gets_no_core_does_not_hold_the_task_up(settings, batches,
                                                                    monkeypatch):
    starved = threading.Event()
    decode_ahead = functions._Batch.decode_ahead

    def never_scheduled(batch):
        starved.wait()
        decode_ahead(batch)

    monkeypatch.setattr(functions._Batch, "decode_ahead", never_scheduled)
    outcome = {}
    consumer = threading.Thread(target=lambda: outcome.update(out=_decoded(settings, batches)))
    consumer.start()
    consumer.join(60)
    finished = "out" in outcome
    starved.set()
    consumer.join()
    assert finished, "the task waited for the decode thread"
    _same(outcome["out"], _decoded(replace(settings, prefetch=False), batches))


def test_a_stopped_query_stops_the_decode_thread_at_its_next_row(settings, batches,
                                                                 monkeypatch):
    second = {v.as_py() for v in batches[1]}
    decoded_ahead = []
    in_second_batch, stopped = threading.Event(), threading.Event()
    decode = functions._decode

    def held(*args):
        if _on_decode_thread() and args[2] in second:
            decoded_ahead.append(args[2])
            in_second_batch.set()
            stopped.wait(_DEADLINE)  # the thread is in the middle of a row when Spark stops
        return decode(*args)

    monkeypatch.setattr(functions, "_decode", held)
    generator = functions._prepared_batches(settings, iter(batches), top=False)
    next(generator)  # the first batch; the thread goes on to the second
    assert in_second_batch.wait(_DEADLINE), "the decode thread never reached the second batch"
    generator.close()  # what Spark does to a LIMIT query's iterator
    stopped.set()
    _thread_done()
    assert len(decoded_ahead) == 1, "rows decoded after the query stopped"


def test_on_error_fail_names_the_row_with_prefetch(settings, batches):
    failing = replace(settings, on_error="fail")
    paths = [pa.array([f"/images/{b}/{i}.png" for i in range(_ROWS)]) for b in range(3)]
    names = [pa.array(["default"] * _ROWS) for _ in range(3)]
    with pytest.raises(RowError, match="/images/1/5.png with model 'default'"):
        list(functions._prepared_batches(failing, iter(zip(batches, names, paths)), top=False))
