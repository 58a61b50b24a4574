"""Decode prefetch: the next batch is decoded at idle priority, and never waited for.

The decode thread shares the cores with the network. At normal priority it took them
from the network (bench/RESULTS.md: prefetch on ran slower than off); at idle priority
it runs only on a core nothing else wants. A thread at idle priority may get no core at
all on a busy machine, so the task decodes whatever the thread has not finished itself.
"""

import os
import threading
import time
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest

from mxsql.udfs import functions
from mxsql.udfs.config import parse_settings
from mxsql.udfs.errors import RowError
from tests import imagekit

_ROWS = 12


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


def _decoded(settings, batches, pause=0.0):
    out = []
    for prepared in functions._prepared_batches(settings, iter(batches), top=False):
        out.append(_pixels(prepared))
        time.sleep(pause)  # the network's turn: the decode thread may use the core
    return out


def _same(a, b):
    assert len(a) == len(b)
    for (rows_a, pixels_a), (rows_b, pixels_b) in zip(a, b):
        assert rows_a.tolist() == rows_b.tolist()
        assert np.array_equal(pixels_a, pixels_b)


def test_prefetch_gives_the_rows_and_pixels_of_decoding_in_turn(settings, batches):
    expected = _decoded(replace(settings, prefetch=False), batches)
    assert [rows.tolist() for rows, _ in expected][1] == [i for i in range(_ROWS) if i != 5]
    _same(_decoded(settings, batches, pause=0.05), expected)


def test_decode_thread_runs_at_idle_priority(settings, batches, monkeypatch):
    policies = {}
    decode = functions._decode

    def recording(*args):
        policies.setdefault(threading.current_thread().name, set()).add(os.sched_getscheduler(0))
        return decode(*args)

    monkeypatch.setattr(functions, "_decode", recording)
    _decoded(settings, batches, pause=0.2)
    ahead = {p for name, ps in policies.items() if name.startswith("mxsql-decode") for p in ps}
    assert ahead == {os.SCHED_IDLE}, policies
    assert policies.get(threading.current_thread().name, {os.SCHED_OTHER}) == {os.SCHED_OTHER}


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
    decoded_ahead = []
    first_row = threading.Event()
    decode = functions._decode

    def slow(*args):
        if threading.current_thread().name.startswith("mxsql-decode"):
            decoded_ahead.append(args[2])
            first_row.set()
            time.sleep(0.05)
        return decode(*args)

    monkeypatch.setattr(functions, "_decode", slow)
    generator = functions._prepared_batches(settings, iter(batches), top=False)
    next(generator)
    first_row.wait(60)
    generator.close()  # what Spark does to a LIMIT query's iterator
    functions._decoder.submit(lambda: None).result(60)  # the thread is done with the batch
    assert 0 < len(decoded_ahead) < _ROWS


def test_on_error_fail_names_the_row_with_prefetch(settings, batches):
    failing = replace(settings, on_error="fail")
    paths = [pa.array([f"/images/{b}/{i}.png" for i in range(_ROWS)]) for b in range(3)]
    names = [pa.array(["default"] * _ROWS) for _ in range(3)]
    with pytest.raises(RowError, match="/images/1/5.png with model 'default'"):
        list(functions._prepared_batches(failing, iter(zip(batches, names, paths)), top=False))
