"""Each mx function checks its arguments where Spark analyses the statement.

A wrong call fails in ``spark.sql(...)`` itself (analysis), before any row is read, with a
real ``AnalysisException`` that says how to call the function; NULL literals stand for
left-out optional arguments.
"""

import pytest
from pyspark.errors import AnalysisException

from mxsql.registry.callbacks import JavaThrow, analysis_error, scala_function
from mxsql.registry.catalog import FUNCTIONS, session_functions

CHECK_FAILED = "DATATYPE_MISMATCH.TYPE_CHECK_FAILURE_WITH_HINT"
CLASSIFY = "mx_classify(content BINARY [, model STRING [, path STRING]])"
TOP_K = "mx_top_k(content BINARY, k INT [, model STRING [, path STRING]])"


def _refusal(spark, query: str) -> AnalysisException:
    with pytest.raises(AnalysisException) as caught:
        spark.sql(query)  # analysis only: no action runs
    assert caught.value.getCondition() == CHECK_FAILED
    return caught.value


def test_signatures_are_the_documented_call_forms():
    assert [fn.signature for fn in FUNCTIONS] == [
        CLASSIFY, TOP_K, "mx_image_info(content BINARY)",
    ]


def test_top_k_without_k_is_refused_naming_the_call_form(spark, digits_table):
    error = _refusal(spark, "SELECT mx_top_k(content) FROM digits")
    assert f"mx_top_k takes 2 to 4 arguments, got 1; call it as {TOP_K}" in str(error)


def test_classify_without_arguments_is_refused(spark):
    error = _refusal(spark, "SELECT mx_classify()")
    assert f"mx_classify takes 1 to 3 arguments, got 0; call it as {CLASSIFY}" in str(error)


def test_a_string_column_as_content_is_refused(spark, digits_table):
    error = _refusal(spark, "SELECT mx_classify(path) FROM digits")
    assert f"argument 1 (content) must be BINARY, got STRING; call it as {CLASSIFY}" \
        in str(error)


def test_a_string_as_k_is_refused(spark, digits_table):
    error = _refusal(spark, "SELECT mx_top_k(content, 'five') FROM digits")
    assert "argument 2 (k) must be INT, got STRING" in str(error)


def test_too_many_arguments_are_refused(spark, digits_table):
    error = _refusal(spark, "SELECT mx_image_info(content, 'x') FROM digits")
    assert "mx_image_info takes 1 argument, got 2; call it as mx_image_info(content BINARY)" \
        in str(error)


def test_a_wrong_call_is_refused_on_an_empty_table(spark, digits_table):
    _refusal(spark, "SELECT mx_top_k(content) FROM digits WHERE false")


def test_null_literals_stand_for_left_out_arguments(spark, digits_table):
    row = spark.sql(
        "SELECT mx_classify(content).label AS plain, mx_classify(content, NULL, NULL).label "
        "AS nulls, mx_top_k(content, NULL) AS no_k FROM digits ORDER BY path LIMIT 1"
    ).first()
    assert row.plain is not None and row.nulls == row.plain
    assert row.no_k is None


def test_any_integer_type_is_a_k(spark, digits_table):
    row = spark.sql(
        "SELECT size(mx_top_k(content, 3L)) AS big, size(mx_top_k(content, CAST(2 AS TINYINT))) "
        "AS tiny FROM digits ORDER BY path LIMIT 1"
    ).first()
    assert (row.big, row.tiny) == (3, 2)


def test_describe_function_shows_the_call_form(spark):
    text = "\n".join(r[0] for r in spark.sql("DESCRIBE FUNCTION mx_top_k").collect())
    assert f"Usage: {TOP_K} - The k most probable classes" in text


def test_checked_functions_reach_a_later_session_through_extensions(spark, digits):
    """What the Thrift server does for sessions per connection (FACTS.md)."""
    jvm = spark._jvm
    extensions = spark._jsparkSession.extensions()
    for name, info, builder in session_functions(spark):
        extensions.injectFunction(jvm.scala.Tuple3(
            jvm.org.apache.spark.sql.catalyst.FunctionIdentifier.apply(name), info, builder))
    later = spark.newSession()
    png = open(digits[1][0], "rb").read().hex()
    assert later.sql(f"SELECT mx_image_info(X'{png}').format AS f").first().f == "PNG"
    _refusal(later, "SELECT mx_image_info()")


def test_a_scala_function_returns_the_python_result(spark):
    double = scala_function(spark, lambda x: x * 2)
    assert double.apply(21) == 42


def test_a_scala_function_throws_the_java_exception_unwrapped(spark):
    def refuse(_):
        raise JavaThrow(analysis_error(spark, CHECK_FAILED, {
            "sqlExpr": '"f()"', "msg": "no", "hint": ""}))

    # PySpark turns the Java AnalysisException into its own; a wrapped one would not be.
    with pytest.raises(AnalysisException) as caught:
        scala_function(spark, refuse).apply(1)
    assert caught.value.getCondition() == CHECK_FAILED
