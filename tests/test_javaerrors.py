"""The Java exception behind a Python one, from py4j's and PySpark's exception classes."""

from py4j.protocol import Py4JJavaError
from pyspark.errors import AnalysisException

from mxsql.registry.javaerrors import java_exception, root_cause_text


def _raise_nested(spark):
    """A Py4JJavaError whose Java exception has two causes below it."""
    jvm = spark._jvm
    inner = jvm.java.lang.IllegalStateException("the innermost reason")
    outer = jvm.java.lang.RuntimeException("outer", inner)
    jvm.java.util.concurrent.CompletableFuture.failedFuture(outer).get()


def test_py4j_error_gives_its_java_exception_and_the_innermost_cause(spark):
    try:
        _raise_nested(spark)
    except Py4JJavaError as e:
        assert java_exception(e) is e.java_exception
        assert root_cause_text(e) == "java.lang.IllegalStateException: the innermost reason"
    else:
        raise AssertionError("the future did not fail")


def test_pyspark_error_gives_the_java_exception_it_converted(spark):
    try:
        spark.sql("SELECT * FROM no_such_table_for_javaerrors")
    except AnalysisException as e:
        java = java_exception(e)
        assert java is not None
        assert java.getCondition() == "TABLE_OR_VIEW_NOT_FOUND"
        assert "no_such_table_for_javaerrors" in root_cause_text(e)
    else:
        raise AssertionError("the table exists")


def test_a_python_error_has_no_java_exception():
    error = ValueError("plain")
    assert java_exception(error) is None
    assert root_cause_text(error) == "plain"
