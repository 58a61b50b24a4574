"""Start-up work: ``register_all`` leaves the ``mxsql_s3`` data source registered (Spark's
first registration in a JVM waits for a Python process that looks for installed data
sources) and fails when that registration fails, while the shell registers it only for
the first statement that names it; the shell starts the Python workers while the first
statement that calls an mx function is planned (``mxsql.registry.warmup``)."""

import io

import pytest

from mxsql.registry import catalog
from mxsql.registry.shell import Shell


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


def test_the_first_statement_calling_an_mx_function_starts_the_workers_once(spark, caplog):
    from mxsql.registry.warmup import WorkerWarmup

    warmup = WorkerWarmup(spark)
    assert warmup.before("SELECT 1") is None
    assert warmup.before("SELECT 'mx_classify(' AS text") is not None  # cheap to be wrong
    warmup = WorkerWarmup(spark)
    with caplog.at_level("DEBUG", logger="mxsql.warmup"):
        thread = warmup.before("SELECT path, MX_CLASSIFY (content).label FROM images")
        assert thread is not None
        thread.join(timeout=600)
    assert not thread.is_alive()
    failed = [r for r in caplog.records if r.name == "mxsql.warmup"]
    assert not failed, caplog.text  # the warm-up job ran without an error
    assert warmup.before("SELECT mx_top_k(content, 5) FROM images") is None
