"""mx_models() and mx_labels(): the configured models as SQL tables."""

import pytest


def test_mx_models_lists_each_model(spark):
    rows = {r.name: r for r in spark.sql("SELECT * FROM mx_models()").collect()}
    assert {"default", "resnet18"} <= set(rows)
    digits = rows["default"]
    assert digits.error is None
    assert digits.num_labels == 10
    assert digits.input_shape[0] == digits.channels
    assert len(digits.sha256_params) == 64


def test_mx_labels_in_index_order(spark):
    rows = spark.sql("SELECT * FROM mx_labels('default')").collect()
    assert [r.class_index for r in rows] == list(range(10))
    assert rows == spark.sql("SELECT * FROM mx_labels()").collect()


def test_mx_labels_unknown_model_names_configured_ones(spark):
    with pytest.raises(Exception, match="unknown model 'defualt'.*did you mean"):
        spark.sql("SELECT * FROM mx_labels('defualt')").collect()


def test_session_set_reaches_the_table_functions(spark):
    # A model key changed with SET is refused in the worker: the UDTF sees task properties.
    spark.conf.set("spark.mxsql.model.default.epoch", "7")
    try:
        with pytest.raises(Exception, match="spark.mxsql.model.default.epoch cannot be changed"):
            spark.sql("SELECT * FROM mx_models()").collect()
    finally:
        spark.conf.unset("spark.mxsql.model.default.epoch")


@pytest.mark.slow
def test_mx_labels_in_the_mxsql_shell(digits, tmp_path):
    from demo import digits as digits_demo
    from tests import shellkit

    run = shellkit.run_mxsql([
        *shellkit.conf_args(digits_demo.model_conf(digits[0])),
        "-e", "SELECT count(*) FROM mx_labels(); SELECT name FROM mx_models()",
    ], home=str(tmp_path))
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["10", "default"]
