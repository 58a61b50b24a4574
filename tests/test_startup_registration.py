"""Start-up work: ``register_all`` leaves the ``mxsql_s3`` data source registered (Spark's
first registration in a JVM waits for a Python process that looks for installed data
sources) and fails when that registration fails, while the shell registers it only for
the first statement that names it; the shell starts the Python workers while the first
statement that calls an mx function is planned (``mxsql.registry.warmup``)."""

import io

import pytest

from demo import digits as digits_demo
from mxsql.registry import catalog
from mxsql.registry.shell import Shell
from mxsql.udfs.config import parse_settings


def test_register_all_returns_with_the_data_source_and_the_functions_registered(spark):
    catalog.register_all(spark)
    manager = spark._jsparkSession.sessionState().dataSourceManager()
    assert manager.dataSourceExists("mxsql_s3")
    names = {row.function for row in spark.sql("SHOW USER FUNCTIONS").collect()}
    assert {fn.name for fn in catalog.FUNCTIONS} <= {n.rsplit(".", 1)[-1] for n in names}


def test_a_failed_data_source_registration_fails_register_all(spark, monkeypatch):
    class Broken:
        @classmethod
        def name(cls):
            raise RuntimeError("no name for this data source")

    monkeypatch.setattr(catalog.s3source, "data_source", lambda settings, **kw: Broken)
    with pytest.raises(RuntimeError, match="no name for this data source"):
        catalog.register_all(spark)
    monkeypatch.undo()
    catalog.register_all(spark)  # the shared session as the other tests expect it


def test_the_shell_registers_mxsql_s3_for_the_first_statement_naming_it(spark):
    session = spark.newSession()  # a data source manager of its own, without mxsql_s3
    manager = session._jsparkSession.sessionState().dataSourceManager()
    shell = Shell(session, out=io.StringIO(), err=io.StringIO())
    try:
        assert shell.run_statement("SELECT 1") == 0
        assert not manager.dataSourceExists("mxsql_s3")
        session.conf.set("source", "MXSQL_S3")  # as `mxsql -d source=MXSQL_S3` does
        assert shell.run_statement("SELECT '${source}'") == 0
        assert manager.dataSourceExists("mxsql_s3")
    finally:
        shell.close()


def test_the_warm_up_loads_the_models_the_statement_names_by_literal(spark, digits, mx_conf):
    from mxsql.registry.warmup import WorkerWarmup, models_called

    assert models_called("SELECT 1") == set()
    assert models_called("SELECT mx_classify(content), mx_image_info(content) FROM t") == \
        {"default"}
    assert models_called("SELECT mx_classify(concat(a, ')'), 'a'), "
                         "MX_TOP_K (content, 5, \"b\", path) FROM t") == {"a", "b"}
    assert models_called("SELECT mx_classify(content, name) FROM t") is None
    settings = parse_settings({**digits_demo.model_conf("/models/digits"),
                               **digits_demo.model_conf("/models/digits", name="other")})
    warmup = WorkerWarmup(spark)
    slots = spark.sparkContext.defaultParallelism
    assert warmup.query("SELECT mx_top_k(content, 3, 'other') FROM t", settings).endswith(
        f"'other') FROM range(0, {slots}, 1, {slots})")
    settings = mx_conf(digits_demo.model_conf(digits[0]))
    rows = spark.sql(warmup.query("SELECT mx_classify(content) FROM t", settings)).collect()
    assert len(rows) == slots and all(row[0].label is not None for row in rows)
    for unknown in ("SELECT mx_classify(content, 'nope') FROM t",
                    "SELECT mx_classify(content, name) FROM t",
                    "SELECT mx_image_info(content) FROM t"):
        assert warmup.query(unknown, settings) == "SELECT mx_image_info(X'')"


@pytest.mark.parametrize("statement", [
    "SELECT path, MX_CLASSIFY (content).label FROM images",  # the default model
    "SELECT mx_image_info(content) FROM images",  # no model
])
def test_the_first_statement_calling_an_mx_function_starts_the_workers_once(
        spark, digits, mx_conf, caplog, statement):
    from mxsql.registry.warmup import WorkerWarmup

    settings = mx_conf(digits_demo.model_conf(digits[0]))
    warmup = WorkerWarmup(spark)
    assert warmup.before("SELECT 1", settings) is None
    assert warmup.before("SELECT 'mx_classify(' AS text", settings) is not None  # cheap
    warmup = WorkerWarmup(spark)
    with caplog.at_level("DEBUG", logger="mxsql.warmup"):
        thread = warmup.before(statement, settings)
        assert thread is not None
        thread.join(timeout=600)
    assert not thread.is_alive()
    failed = [r for r in caplog.records if r.name == "mxsql.warmup"]
    assert not failed, caplog.text  # the warm-up job ran without an error
    assert warmup.before("SELECT mx_top_k(content, 5) FROM images", settings) is None


def test_the_warm_up_loads_a_model_in_at_most_eight_workers():
    from types import SimpleNamespace

    from mxsql.registry.warmup import WorkerWarmup

    settings = parse_settings(digits_demo.model_conf("/models/digits"))
    statement = "SELECT mx_classify(content) FROM t"
    for master, slots, used in (("local[32]", 32, 8), ("local[2]", 2, 2),
                                ("spark://host:7077", 64, None)):
        context = SimpleNamespace(master=master, defaultParallelism=slots)
        query = WorkerWarmup(SimpleNamespace(sparkContext=context)).query(statement, settings)
        if used is None:  # a cluster: the daemon only
            assert query == "SELECT mx_image_info(X'')"
        else:
            assert query.endswith(f"'default') FROM range(0, {used}, 1, {used})")
