"""A short last batch runs in power-of-two pieces: same results, no padding, few shapes.

Padding 18 images to a batch of 32 nearly doubled their cost (bench/RESULTS.md); cutting
them into 16 + 2 computes no blank image, and MKLDNN still caches a bounded number of
kernel plans (DECISIONS 6).
"""

import numpy as np
import pytest

from demo import digits as digits_demo
from mxsql.udfs.config import parse_settings
from mxsql.udfs.models import LoadedModel


@pytest.fixture
def model(digits):
    prefix, _ = digits
    spec = parse_settings(digits_demo.model_conf(prefix)).model("default")
    return LoadedModel(spec, spec.symbol_uri, spec.params_uri, spec.labels_uri)


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(6).integers(0, 256, (53, 16, 16, 1), dtype=np.uint8)


def test_short_batch_gives_the_same_probabilities_as_one_image_at_a_time(model, pixels):
    batched = model.predict(pixels, 32)  # 32, then 21 = 16 + 4 + 1
    single = np.concatenate([model.predict(pixels[i:i + 1], 1) for i in range(len(pixels))])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_short_batch_runs_as_powers_of_two_not_padded(model, pixels):
    model.predict(pixels[:21], 32)
    assert set(model._executors) == {32, 16, 4, 1}  # bound at 32, run as 16 + 4 + 1


def test_batch_shapes_stay_powers_of_two_below_the_batch_size(model, pixels):
    for n in range(1, 41):
        model.predict(pixels[:n], 32)
    assert set(model._executors) == {32, 16, 8, 4, 2, 1}
