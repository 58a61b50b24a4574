"""The spark.mxsql.* keys: parsing, defaults, errors that name the key, and SET rules."""

import dataclasses
import functools
import http.server
import os
import pickle
import re
import threading
import traceback

import pytest

from mxsql.registry.config import documents
from mxsql.udfs.artifacts import fetch
from mxsql.udfs.config import (
    GLOBAL_KEYS, MODEL_KEYS, S3_KEYS, InvalidValue, ModelSpec, S3Settings, Settings,
    parse_settings, positive_int,
)
from mxsql.udfs.errors import ConfigError
from mxsql.udfs.s3.options import OPTIONS, parse_options

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
    ("spark.mxsql.batchSize", "many", "spark.mxsql.batchSize='many': must be a positive integer"),
    ("spark.mxsql.maxImagePixels", "1e9", "spark.mxsql.maxImagePixels='1e9': must be a positive integer"),
    ("spark.mxsql.prefetch", "yes", "spark.mxsql.prefetch='yes': must be true or false"),
    ("spark.mxsql.model.default.epoch", "last", "spark.mxsql.model.default.epoch='last': must be an integer >= 0"),
    ("spark.mxsql.model.default.inputSize", "big", "inputSize='big': must be SIZE or HEIGHT,WIDTH"),
    ("spark.mxsql.model.default.channels", "rgb", "channels='rgb': must be 3 (RGB) or 1 (grayscale)"),
    ("spark.mxsql.model.default.mean", "1,x,3", "mean='1,x,3': must be a comma-separated list of numbers"),
    ("spark.mxsql.model.default.std", "1,0,1", "std='1,0,1': must be a comma-separated list of numbers > 0"),
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
    with pytest.raises(ConfigError, match=r"spark.mxsql.model.default.uri: s3://elsewhere/m-symbol.json "
                                          r"is outside spark.mxsql.model.allowedUris"):
        settings.with_session_overrides({"spark.mxsql.model.default.uri": "s3://elsewhere/m"})


def test_set_of_a_bad_value_names_the_key():
    settings = parse_settings({})
    with pytest.raises(ConfigError, match=r"spark.mxsql.onError='maybe'"):
        settings.with_session_overrides({"spark.mxsql.onError": "maybe"})


def test_unchanged_registered_values_are_not_a_set():
    conf = {"spark.mxsql.model.default.uri": "/m", "spark.mxsql.cacheDir": "/tmp/c"}
    settings = parse_settings(conf)
    assert settings.with_session_overrides(conf) is settings


def test_parsers_raise_invalid_value_saying_what_they_want():
    with pytest.raises(InvalidValue) as refused:
        positive_int("abc")
    assert refused.value.wanted == "must be a positive integer"
    assert "abc" not in str(refused.value)


def test_a_bad_s3_option_is_named_without_its_value():
    secret = "AKIAEXAMPLESECRET"
    with pytest.raises(ConfigError, match=r"^mxsql_s3: option 'maxAttempts': must be a positive integer$") as refused:
        parse_options({"path": "s3://b/p/", "maxattempts": secret}, writing=False)
    shown = "".join(traceback.format_exception(refused.value))  # what -v would print
    assert "maxAttempts" in shown and secret not in shown


def test_a_misspelt_s3_option_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"unknown option 'maxattempt'; did you mean 'maxAttempts'\?"):
        parse_options({"path": "s3://b/p/", "maxattempt": "3"}, writing=False)


def test_s3_options_parse_into_fields_named_in_the_table():
    options = parse_options({"path": "s3://b/p/", "maxbytesperpartition": "2k",
                             "recursivefilelookup": "FALSE"}, writing=False)
    assert options.max_bytes_per_partition == 2048
    assert options.recursive_file_lookup is False
    assert options.max_attempts == 5
    assert [f.name for f in dataclasses.fields(options)] == [o.field for o in OPTIONS]


def test_the_settings_classes_have_one_field_per_key_with_its_parsed_default():
    settings = Settings()
    for key in GLOBAL_KEYS:
        default = None if key.default is None else key.parse(key.default)
        assert getattr(settings, key.field) == default, key.name
    assert settings.s3 == S3Settings() and settings.s3.endpoint is None
    assert [f.name for f in dataclasses.fields(S3Settings)] == [k.field for k in S3_KEYS]
    spec_fields = {f.name: f for f in dataclasses.fields(ModelSpec)}
    assert set(spec_fields) == {"name"} | {k.field for k in MODEL_KEYS}
    assert spec_fields["uri"].default is dataclasses.MISSING
    assert spec_fields["input_size"].default == (224, 224)
    assert parse_settings({}) == Settings()


def test_a_model_spec_is_frozen_hashable_and_picklable():
    spec = parse_settings({"spark.mxsql.model.m.uri": "/m/r", "spark.mxsql.model.m.mean": "1,2,3"}).model("m")
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert {spec: 1}[ModelSpec(name="m", uri="/m/r", mean=(1.0, 2.0, 3.0))] == 1
    assert spec.key("epoch") == "spark.mxsql.model.m.epoch"
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.epoch = 2


def test_readme_and_spark_defaults_hold_the_key_tables_rendered():
    for key in GLOBAL_KEYS + S3_KEYS + MODEL_KEYS:
        assert key.default is not None or key.example, f"{key.name}: give an example value"
    for name, expected in documents(ROOT).items():
        with open(os.path.join(ROOT, name), encoding="utf-8") as f:
            assert f.read() == expected, f"{name} differs from the key tables: run make docs"


def test_set_of_a_key_shows_the_value_in_effect(spark):
    assert spark.sql("SET spark.mxsql.batchSize").collect()[0].value == "32"
    described = {r.key: r.meaning for r in spark.sql("SET -v").collect()}
    assert described["spark.mxsql.batchSize"] == GLOBAL_KEYS[0].doc
    assert "Fixed when the mx functions are registered" in described["spark.mxsql.cacheDir"]
    assert "spark.mxsql.s3.endpoint" in described


def test_declared_defaults_are_not_settings_that_were_set(spark):
    from mxsql.registry.config import settings_from_session

    conf = spark.conf.getAll
    assert "spark.mxsql.batchSize" not in conf and "spark.mxsql.prefetch" not in conf
    settings = settings_from_session(spark)
    assert settings.with_session_overrides(conf) is settings


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def file_server(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "labels.txt").write_text("cat\n")
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_default_cache_dir_is_expanded_by_each_worker_not_the_driver(file_server, tmp_path,
                                                                      monkeypatch):
    settings = parse_settings({})  # the driver passes "~" on as written
    assert settings.cache_dir == "~/.cache/mxsql"
    worker_home = tmp_path / "worker-home"
    monkeypatch.setenv("HOME", str(worker_home))
    path = fetch(f"{file_server}/labels.txt", key="spark.mxsql.model.m.labels",
                 cache_dir=settings.cache_dir, s3=settings.s3)
    assert path.startswith(str(worker_home / ".cache" / "mxsql") + os.sep)
    assert open(path).read() == "cat\n"


def test_bad_worker_log_level_names_the_variable():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import mxsql.udfs.models"], cwd="/",
                          env={**os.environ, "MXSQL_LOG_LEVEL": "loud"},
                          capture_output=True, text=True)
    assert done.returncode != 0
    assert "ConfigError: MXSQL_LOG_LEVEL='LOUD': must be one of DEBUG, INFO, WARNING, ERROR" in done.stderr
