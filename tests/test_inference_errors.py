"""An image that decodes but that the network refuses: NULL by policy, or a failure naming the model."""

import os

import pytest
from PIL import Image
from pyspark.errors import PythonException

from tests import imagekit


def _picky_model(folder):
    """A tiny network that MXNet refuses to run on bright images.

    Its Cholesky factorisation (linalg.potrf) fails unless 100 - mean pixel > 0, the
    way a real network fails on input it cannot take; dark images classify fine.
    """
    import mxnet as mx

    data = mx.sym.Variable("data")
    level = mx.sym.reshape(100 - mx.sym.mean(data, axis=(1, 2, 3)), shape=(-1, 1, 1))
    net = mx.sym.reshape(mx.sym.linalg.potrf(level), shape=(-1, 1))
    net = mx.sym.softmax(mx.sym.FullyConnected(net, num_hidden=2, name="fc"))
    prefix = os.path.join(folder, "picky")
    net.save(prefix + "-symbol.json")
    mx.nd.save(prefix + "-0000.params", {"arg:fc_weight": mx.nd.array([[1.0], [-1.0]]),
                                         "arg:fc_bias": mx.nd.zeros(2)})
    with open(os.path.join(folder, "synset.txt"), "w") as f:
        f.write("dark\nless dark\n")
    return prefix


@pytest.fixture(scope="module")
def picky(spark, tmp_path_factory, digits):
    folder = str(tmp_path_factory.mktemp("picky"))
    prefix = _picky_model(folder)
    dark = [open(p, "rb").read() for p in digits[1][:5]]
    white = imagekit.encode(Image.new("L", (32, 32), 255), "PNG")
    rows = [(f"dark/{i}", d) for i, d in enumerate(dark)] + [("white", white)]
    spark.createDataFrame(rows, "path string, content binary").coalesce(1) \
        .createOrReplaceTempView("picky_images")
    return {"spark.mxsql.model.picky.uri": prefix, "spark.mxsql.model.picky.inputSize": "8",
            "spark.mxsql.model.picky.channels": "1"}


def test_rejected_image_is_null_and_the_others_are_classified(spark, mx_conf, picky):
    mx_conf(picky)
    rows = {r.path: r.c for r in spark.sql(
        "SELECT path, mx_classify(content, 'picky') c FROM picky_images").collect()}
    assert rows["white"] is None
    assert all(rows[f"dark/{i}"] is not None for i in range(5))


def test_rejected_image_fails_the_query_naming_the_model_with_on_error_fail(spark, mx_conf, picky):
    mx_conf({**picky, "spark.mxsql.onError": "fail"})
    with pytest.raises(PythonException, match=r"InferenceError: model 'picky' \(.*picky\) "
                                              r"failed on a batch of 6 images: "
                                              r"[^\n]*spotrf failed in lapack"):
        spark.sql("SELECT mx_classify(content, 'picky') FROM picky_images").collect()
