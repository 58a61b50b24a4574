"""A short batch runs in pieces of SHORT_BATCH images: same results, two batch shapes.

Padding 18 images to a batch of 32 nearly doubled their cost (bench/RESULTS.md); pieces
of 4 compute at most 3 blank images (DECISIONS 6). Every batch shape costs a worker a
copy of the weights (test_worker_memory.py), so a worker binds only two.
"""

import numpy as np
import pytest

from demo import digits as digits_demo
from mxsql.udfs.config import parse_settings
from mxsql.udfs.models import SHORT_BATCH, LoadedModel


@pytest.fixture
def model(digits):
    prefix, _ = digits
    spec = parse_settings(digits_demo.model_conf(prefix)).model("default")
    return LoadedModel(spec, spec.symbol_uri, spec.params_uri, spec.labels_uri)


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(6).integers(0, 256, (53, 16, 16, 1), dtype=np.uint8)


def test_short_batch_gives_the_same_probabilities_as_one_image_at_a_time(model, pixels):
    batched = model.predict(pixels, 32)  # 32, then 21 = 5 x 4 + 1 padded to 4
    single = np.concatenate([model.predict(pixels[i:i + 1], 1) for i in range(len(pixels))])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def _pieces_run(model, monkeypatch):
    """(images, batch shape) of every forward pass of ``model`` from now on."""
    runs = []
    forward = model._forward

    def recording(chunk, shape):
        runs.append((len(chunk), shape))
        return forward(chunk, shape)

    monkeypatch.setattr(model, "_forward", recording)
    return runs


def _bound_batch_shapes(model):
    """The batch dimension of the input of every executor MXNet has bound for ``model``."""
    return {exe.arg_dict["data"].shape[0] for exe in model.network._executors.values()}


def test_short_batch_runs_in_pieces_of_short_batch_the_last_padded(model, pixels, monkeypatch):
    runs = _pieces_run(model, monkeypatch)
    model.predict(pixels[:53], 32)  # a full batch of 32, then a short one of 21
    assert runs[0] == (32, 32)
    pieces = runs[1:]
    assert sum(images for images, _ in pieces) == 21
    assert {shape for _, shape in pieces} == {SHORT_BATCH}
    assert all(images == SHORT_BATCH for images, _ in pieces[:-1]), "only the last is padded"
    blank = sum(shape - images for images, shape in pieces)
    assert blank < SHORT_BATCH and blank < 32 - 21, "cheaper than padding to the batch size"


def test_a_worker_binds_two_batch_shapes_whatever_the_batch_sizes(model, pixels):
    for n in range(1, 54):
        model.predict(pixels[:n], 32)
    assert _bound_batch_shapes(model) == {32, SHORT_BATCH}


def test_a_batch_size_below_short_batch_pads_to_the_batch_size(model, pixels, monkeypatch):
    runs = _pieces_run(model, monkeypatch)
    model.predict(pixels[:3], 2)
    assert runs == [(2, 2), (1, 2)]
