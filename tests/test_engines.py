"""Engines behind one interface: each builds a network from the same checked checkpoint.

Decoding, preprocessing, batches and the softmax rule are the caller's (``models.py``);
an engine's network only maps a float32 NCHW batch to scores.
"""

import glob
import os
import shutil

import numpy as np
import pytest

from demo import digits as digits_demo
from mxsql.udfs import engines
from mxsql.udfs.checkpoint import Checkpoint, model_input, probabilities
from mxsql.udfs.config import model_key, parse_settings
from mxsql.udfs.models import SHORT_BATCH, LoadedModel


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(16).integers(0, 256, (40, 16, 16, 1), dtype=np.uint8)


@pytest.fixture(scope="module")
def calibration(digits, tmp_path_factory):
    """32 training digits in one folder, classes mixed."""
    train = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(digits[1][0]))),
                         "train")
    folder = tmp_path_factory.mktemp("engines-calibration")
    for path in sorted(glob.glob(os.path.join(train, "*", "*.png")))[::40]:
        shutil.copy(path, folder / os.path.basename(path))
    return str(folder)


@pytest.mark.parametrize("engine, precision", sorted(engines.ENGINES))
def test_every_engine_runs_the_checkpoint_with_the_same_top_class_as_mxnet_fp32(
        digits, calibration, tmp_path, pixels, engine, precision):
    conf = {**digits_demo.model_conf(digits[0]), model_key("default", "engine"): engine,
            model_key("default", "precision"): precision,
            model_key("default", "calibration"): calibration,
            "spark.mxsql.cacheDir": str(tmp_path)}
    settings = parse_settings(conf)
    spec = settings.model("default")
    checkpoint = Checkpoint(spec, spec.symbol_uri, spec.params_uri, spec.labels_uri)
    reference = parse_settings(digits_demo.model_conf(digits[0])).model("default")
    fp32 = engines.build(Checkpoint(reference, spec.symbol_uri, spec.params_uri,
                                    spec.labels_uri), settings)
    network = engines.build(checkpoint, settings)
    x = model_input(spec, pixels, len(pixels))
    got = probabilities(network.run(x), checkpoint.outputs_probabilities)
    want = probabilities(fp32.run(x), checkpoint.outputs_probabilities)
    assert got.shape == (len(pixels), 10)
    assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.95


def test_a_short_batch_first_then_a_full_one_binds_two_shapes_with_the_same_results(digits,
                                                                                    pixels):
    """The first shape bound is a short one; the full batch is a reshape of it."""
    spec = parse_settings(digits_demo.model_conf(digits[0])).model("default")
    model = LoadedModel(spec, spec.symbol_uri, spec.params_uri, spec.labels_uri)
    short = model.predict(pixels[:3], 32)
    full = model.predict(pixels[:32], 32)
    assert {e.arg_dict["data"].shape[0] for e in model.network._executors.values()} == \
        {SHORT_BATCH, 32}
    single = np.concatenate([model.predict(pixels[i:i + 1], 1) for i in range(32)])
    np.testing.assert_allclose(full, single, atol=1e-5)
    np.testing.assert_allclose(short, single[:3], atol=1e-5)
