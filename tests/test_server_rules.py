"""The server's rules without a server: which paths are allowed, which SETs refused.

The same functions run inside mxsql-thriftserver's check rule (test_server_sessions.py
shows them there, statement by statement).
"""

import os

import pytest

from mxsql.registry.serverrules import (
    ALLOWED_PATHS_KEY, PathRules, connection_set_problem, parse_location, set_problem,
)
from mxsql.udfs.errors import ConfigError


@pytest.fixture
def rules(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "warehouse").mkdir()
    return PathRules.from_settings(
        f"{tmp_path / 'images'}, s3://bucket/images/, hdfs://nn:8020/data",
        str(tmp_path / "warehouse"),
    )


def _problem(rules, text):
    from mxsql.registry.serverrules import _split

    return rules.problem(*_split(text), shown=text, action="reading")


def test_paths_under_the_allowed_folders_and_the_warehouse_are_allowed(rules, tmp_path):
    for text in (f"{tmp_path}/images", f"{tmp_path}/images/a/b.png",
                 f"file:{tmp_path}/images/x", f"file://{tmp_path}/images/x",
                 f"file://localhost{tmp_path}/images/x", f"{tmp_path}/warehouse/t",
                 "s3://bucket/images/x.png", "s3a://bucket/images/y/z.png",
                 "hdfs://nn:8020/data/part-0"):
        assert _problem(rules, text) is None, text


def test_dot_dot_and_file_forms_are_resolved_before_comparing(rules, tmp_path):
    for text in (f"{tmp_path}/images/../../etc", f"file:{tmp_path}/images/../..",
                 "s3://bucket/images/../secrets/key", "/etc/hostname", "file:///etc/hostname"):
        problem = _problem(rules, text)
        assert problem is not None and ALLOWED_PATHS_KEY in problem, text
    assert "resolves to /etc" in _problem(rules, f"{tmp_path}/images/../../../../../etc")


def test_a_symlink_out_of_an_allowed_folder_is_refused(rules, tmp_path):
    os.symlink("/etc", tmp_path / "images" / "escape")
    assert "resolves to /etc/hostname" in _problem(rules, f"{tmp_path}/images/escape/hostname")


def test_a_prefix_is_a_folder_not_a_string_prefix(rules, tmp_path):
    assert _problem(rules, f"{tmp_path}/images-private/x") is not None
    assert _problem(rules, "s3://bucket/images-private/x") is not None
    assert _problem(rules, "s3://other-bucket/images/x") is not None
    assert _problem(rules, "hdfs://othernn:8020/data/x") is not None


def test_glob_braces_and_other_hosts_are_refused(rules, tmp_path):
    assert "glob braces" in _problem(rules, f"{tmp_path}/images/{{a,../..}}/etc")
    assert "names host" in _problem(rules, f"file://elsewhere{tmp_path}/images/x")


def test_a_path_without_scheme_is_on_the_default_file_system():
    rules = PathRules.from_settings("hdfs://nn/data", "hdfs://nn/warehouse",
                                    default_fs="hdfs://nn")
    assert rules.problem(None, "", "/data/x", shown="/data/x", action="reading") is None
    assert rules.problem(None, "", "/etc", shown="/etc", action="reading") is not None


@pytest.mark.parametrize("entry, message", [
    ("relative/folder", "is not an absolute folder"),
    ("http://example.com/x", "has scheme http"),
])
def test_malformed_allowed_paths_name_the_key(entry, message):
    with pytest.raises(ConfigError, match=f"{ALLOWED_PATHS_KEY}: '{entry}' .*{message}"):
        PathRules.from_settings(entry, "/warehouse")


def test_s3_schemes_are_one_store():
    assert parse_location("s3a://b/x/../y") == parse_location("s3://b/y")


def test_set_of_a_settable_key_is_checked_and_allowed():
    assert set_problem("spark.mxsql.batchSize", "8") is None
    assert set_problem("spark.mxsql.batchSize", None) is None  # shows the value
    assert "spark.mxsql.batchSize='abc'" in set_problem("spark.mxsql.batchSize", "abc")
    assert "did you mean 'spark.mxsql.batchSize'" in set_problem("spark.mxsql.batchsize", "8")


@pytest.mark.parametrize("key", [
    "spark.mxsql.model.default.uri", "spark.mxsql.model.other.uri", "spark.mxsql.cacheDir",
    "spark.mxsql.s3.endpoint", ALLOWED_PATHS_KEY, "fs.defaultFS", "spark.hadoop.fs.file.impl",
    "spark.sql.catalog.mine",
])
def test_set_of_a_key_that_is_the_servers_is_refused(key):
    assert set_problem(key, "x").startswith(f"mxsql-thriftserver forbids SET {key}")


def test_set_of_other_spark_keys_is_allowed():
    assert set_problem("spark.sql.shuffle.partitions", "4") is None


@pytest.mark.parametrize("key", [
    "hive.exec.stagingdir", "hive.metastore.uris", "spark.hadoop.hive.metastore.uris",
    "io.compression.codecs", "parquet.crypto.factory.class", "mapreduce.job.user.name",
    "spark.sql.redaction.string.regex", "spark.sql.redaction.options.regex",
    "spark.sql.legacy.setCommandRejectsSparkCoreConfs", "fs.defaultFS",
    "spark.sql.catalog.x.url", "spark.sql.execution.pyspark.udf.hideTraceback.enabled",
])
def test_a_connection_may_not_set_hadoop_hive_or_redaction_keys(key):
    assert connection_set_problem(key, "x").startswith(f"mxsql-thriftserver forbids SET {key}")


@pytest.mark.parametrize("key", [
    "spark.sql.shuffle.partitions", "spark.sql.sources.default", "spark.mxsql.batchSize",
    "hive.server2.thrift.resultset.default.fetch.size", "hivevar:day", "mapred.reduce.tasks",
])
def test_a_connection_may_set_its_own_session_keys(key):
    assert connection_set_problem(key, "8") is None
    assert connection_set_problem("hive.exec.stagingdir", None) is None  # shows the value
