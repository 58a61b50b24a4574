"""A SET in the ``mxsql`` shell does what it does in Spark's ``bin/spark-sql``.

Each expected stdout below is what ``bin/spark-sql`` (pyspark 4.3.0) printed for the same
statements on this machine; running spark-sql here would cost a JVM start per test.
"""

import io

import pytest

from mxsql.registry.shell import EXIT_FAILURE, Shell
from mxsql.udfs.config import global_keys

PRODUCT = "SELECT CAST(1 AS DECIMAL(38,18)) * CAST(1 AS DECIMAL(38,18))"
HAVING = "SELECT 1 AS a FROM VALUES (1), (2) AS t(x) HAVING x > 1"


@pytest.fixture
def session_shell(spark):
    """Makes a Shell on the shared session; every setting its statements change is undone."""
    before = dict(spark.conf.getAll)
    shells = []

    def make(**options):
        shells.append(Shell(spark, out=io.StringIO(), err=io.StringIO(), **options))
        return shells[-1]

    yield make
    for sh in shells:
        sh.close()
    for key, value in spark.conf.getAll.items():
        if before.get(key) != value:
            if key in before:
                spark.conf.set(key, before[key])
            else:
                spark.conf.unset(key)


def test_set_ansi_off_makes_division_by_zero_null(session_shell):
    shell = session_shell()
    assert shell.run_text("SET spark.sql.ansi.enabled=false; SELECT 1/0") == 0
    assert shell.out.getvalue() == "spark.sql.ansi.enabled\tfalse\nNULL\n"


def test_set_allow_precision_loss_off_keeps_the_scale(session_shell):
    shell = session_shell()
    status = shell.run_text(
        f"{PRODUCT}; SET spark.sql.decimalOperations.allowPrecisionLoss=false; {PRODUCT}")
    assert status == 0
    assert shell.out.getvalue() == (
        "1.000000\nspark.sql.decimalOperations.allowPrecisionLoss\tfalse\n"
        "1.000000000000000000000000000000000000\n"
    )


def test_set_having_without_group_by_as_where(session_shell):
    shell = session_shell()
    assert shell.run_statement(HAVING) == EXIT_FAILURE
    assert "[UNRESOLVED_COLUMN.WITH_SUGGESTION]" in shell.err.getvalue()
    status = shell.run_text(
        f"SET spark.sql.legacy.parser.havingWithoutGroupByAsWhere=true; {HAVING}")
    assert status == 0
    assert shell.out.getvalue() == "spark.sql.legacy.parser.havingWithoutGroupByAsWhere\ttrue\n1\n"


def test_set_double_quoted_identifiers(session_shell):
    shell = session_shell()
    query = 'SELECT "a" FROM VALUES (1) AS t(a)'
    assert shell.run_text(f"{query}; SET spark.sql.ansi.doubleQuotedIdentifiers=true; {query}") == 0
    assert shell.out.getvalue() == "a\nspark.sql.ansi.doubleQuotedIdentifiers\ttrue\n1\n"


def test_set_hive_print_header_prints_no_header(session_shell):
    shell = session_shell()
    assert shell.run_text("SET hive.cli.print.header=true; SELECT 1 AS x") == 0
    assert shell.out.getvalue() == "hive.cli.print.header\ttrue\n1\n"


def test_hive_print_header_given_at_start_prints_the_header(session_shell):
    shell = session_shell(hive_conf={"hive.cli.print.header": "true"})
    assert shell.run_statement("SELECT 1 AS x") == 0
    assert shell.out.getvalue() == "x\n1\n"


def test_set_errors_ignore_does_not_go_on_after_a_failure(session_shell):
    shell = session_shell()
    status = shell.run_text("SET hive.cli.errors.ignore=true; SELECT nosuch(1); SELECT 2")
    assert status == EXIT_FAILURE
    assert shell.out.getvalue() == "hive.cli.errors.ignore\ttrue\n"


def test_set_of_an_mxsql_key_shows_the_value_in_effect(session_shell, spark):
    assert spark.conf.get("spark.mxsql.batchSize", None) is None, "the test needs it unset"
    shell = session_shell()
    assert shell.run_statement("SET spark.mxsql.batchSize") == 0
    default = global_keys()["spark.mxsql.batchSize"].default
    assert shell.out.getvalue() == f"spark.mxsql.batchSize\t{default}\n"
