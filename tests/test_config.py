"""The spark.mxsql.* keys: parsing, defaults, errors that name the key, and SET rules."""

import os
import re

import pytest

from mxsql.udfs.config import describe_keys, parse_settings
from mxsql.udfs.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_nothing_configured_is_valid():
    settings = parse_settings({})
    assert settings.models == ()
    assert settings.batch_size == 32 and settings.on_error == "null"


def test_model_keys_become_a_spec():
    settings = parse_settings({
        "spark.mxsql.model.default.uri": "/m/resnet-18",
        "spark.mxsql.model.default.epoch": "7",
        "spark.mxsql.model.default.inputSize": "224,192",
        "spark.mxsql.model.default.mean": "1,2,3",
        "spark.mxsql.model.default.resize": "center-crop",
        "spark.other.key": "ignored",
    })
    spec = settings.model("default")
    assert spec.params_uri == "/m/resnet-18-0007.params"
    assert spec.symbol_uri == "/m/resnet-18-symbol.json"
    assert spec.labels_uri == "/m/synset.txt"
    assert spec.input_size == (224, 192)
    assert spec.mean == (1.0, 2.0, 3.0)
    assert spec.resize == "center-crop"


@pytest.mark.parametrize("key, value, message", [
    ("spark.mxsql.batchSize", "-1", "spark.mxsql.batchSize='-1': must be a positive integer"),
    ("spark.mxsql.batchSize", "many", "spark.mxsql.batchSize='many': is not a valid value"),
    ("spark.mxsql.onError", "ignore", "spark.mxsql.onError='ignore': must be one of null, fail"),
    ("spark.mxsql.model.default.inputSize", "1,2,3", "must be SIZE or HEIGHT,WIDTH"),
    ("spark.mxsql.model.default.channels", "4", "must be 3 (RGB) or 1 (grayscale)"),
    ("spark.mxsql.model.default.sha256.params", "abc", "must be 64 hexadecimal digits"),
])
def test_bad_value_names_the_key(key, value, message):
    conf = {"spark.mxsql.model.default.uri": "/m/x", key: value}
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_settings(conf)


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"unknown key spark.mxsql.batchsize; did you mean 'spark.mxsql.batchSize'\?"):
        parse_settings({"spark.mxsql.batchsize": "8"})


def test_unknown_model_setting_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"spark.mxsql.model.x.inputsize: unknown model setting 'inputsize'; did you mean 'inputSize'\?"):
        parse_settings({"spark.mxsql.model.x.uri": "/m", "spark.mxsql.model.x.inputsize": "8"})


def test_model_without_uri_names_the_uri_key():
    with pytest.raises(ConfigError, match=r"no spark.mxsql.model.small.uri"):
        parse_settings({"spark.mxsql.model.small.epoch": "3"})


def test_mean_needs_one_value_per_channel():
    with pytest.raises(ConfigError, match=r"spark.mxsql.model.g.mean: 3 values but spark.mxsql.model.g.channels is 1"):
        parse_settings({"spark.mxsql.model.g.uri": "/m", "spark.mxsql.model.g.channels": "1",
                        "spark.mxsql.model.g.mean": "1,2,3"})


def test_unknown_model_name_suggests_a_configured_one():
    settings = parse_settings({"spark.mxsql.model.resnet18.uri": "/m/r"})
    with pytest.raises(ConfigError, match=r"unknown model 'resnet19'.*spark.mxsql.model.resnet19.uri.*did you mean 'resnet18'"):
        settings.model("resnet19")


def test_set_of_a_settable_key_takes_effect():
    settings = parse_settings({"spark.mxsql.model.default.uri": "/m"})
    changed = settings.with_session_overrides({"spark.mxsql.batchSize": "4", "spark.app.name": "x"})
    assert changed.batch_size == 4
    assert changed.model("default") == settings.model("default")


def test_set_of_a_model_source_is_refused():
    settings = parse_settings({"spark.mxsql.model.default.uri": "/m"})
    with pytest.raises(ConfigError, match=r"spark.mxsql.model.default.uri cannot be changed with SET"):
        settings.with_session_overrides({"spark.mxsql.model.default.uri": "s3://elsewhere/m"})


def test_set_of_a_bad_value_names_the_key():
    settings = parse_settings({})
    with pytest.raises(ConfigError, match=r"spark.mxsql.onError='maybe'"):
        settings.with_session_overrides({"spark.mxsql.onError": "maybe"})


def test_unchanged_registered_values_are_not_a_set():
    conf = {"spark.mxsql.model.default.uri": "/m", "spark.mxsql.cacheDir": "/tmp/c"}
    settings = parse_settings(conf)
    assert settings.with_session_overrides(conf) is settings


def test_every_key_is_documented_in_spark_defaults_and_readme():
    documents = {}
    for name in ("spark-defaults.conf", "README.md"):
        with open(os.path.join(ROOT, name), encoding="utf-8") as f:
            documents[name] = f.read()
    for key, _, _ in describe_keys():
        pattern = key.replace("NAME", "default") if "NAME" in key else key
        assert pattern in documents["spark-defaults.conf"], key
        assert key in documents["README.md"], key


def test_default_cache_dir_is_expanded_by_each_worker_not_the_driver():
    assert parse_settings({}).cache_dir == "~/.cache/mxsql"


def test_bad_worker_log_level_names_the_variable():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import mxsql.udfs.models"], cwd="/",
                          env={**os.environ, "MXSQL_LOG_LEVEL": "loud"},
                          capture_output=True, text=True)
    assert done.returncode != 0
    assert "ConfigError: MXSQL_LOG_LEVEL='LOUD': must be one of DEBUG, INFO, WARNING, ERROR" in done.stderr
