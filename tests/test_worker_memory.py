"""A worker's memory does not grow with the short batches it has run.

Each MXNet executor's fused convolutions keep their own copy of the weights with batch
norm folded in, so an executor for every power-of-two piece of a short batch
(16, 8, 4, 2, 1) grew a ResNet-18 worker by 50 MB a size: 813 MiB after 1,000 images
and 1,115 MiB after 10,000, whose tasks ended on more sizes (issue 5). Short batches
now run in pieces of one shape. RSS is read from /proc, so the test runs on Linux only.
"""

import sys

import numpy as np
import pytest

from mxsql.udfs.config import parse_settings
from mxsql.udfs.models import LoadedModel

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.fixture(scope="module")
def resnet(resnet18):
    spec = parse_settings({"spark.mxsql.model.resnet.uri": resnet18}).model("resnet")
    return LoadedModel(spec, spec.symbol_uri, spec.params_uri, spec.labels_uri)


def test_short_batches_of_every_size_cost_no_more_memory_than_one(resnet):
    height, width = resnet.spec.input_size
    pixels = np.random.default_rng(5).integers(0, 256, (32, height, width, 3), dtype=np.uint8)
    resnet.predict(pixels, 32)
    resnet.predict(pixels[:16], 32)
    after_one_size = _rss_mib()
    for n in (8, 4, 2, 1, 16, 8, 4, 2, 1):
        resnet.predict(pixels[:n], 32)
    # One more executor of ResNet-18's weights would be 45 MB.
    assert _rss_mib() - after_one_size < 25
