"""Every session the Thrift server makes, one per JDBC connection, gets the mx functions
and the server's rules.

Spark's Thrift server calls ``newSession()`` for each connection. A session's state is
built from the ``SparkSessionExtensions`` of the session it came from, so what is injected
there before the server starts reaches every connection from its first statement
(FACTS.md, "Functions in every session"): the mx functions (as ``register_all`` left them,
argument checks included), refusing builders in place of ``reflect``, ``java_method`` and
``try_reflect``, and a check rule with the server's rules. The rule's builder, called
once per new session, also registers the ``mxsql_s3`` data source there.
"""

from mxsql.registry.catalog import session_functions
from mxsql.registry.serverrules import REFUSED_FUNCTIONS, ServerRules

__all__ = ["prepare_sessions"]

_S3_SOURCE = "mxsql_s3"


def prepare_sessions(spark, rules: ServerRules) -> None:
    """Make every session created from ``spark`` from now on a JDBC session: the mx
    functions, the refused functions and ``rules``' check rule in each.

    Call it after ``register_all(spark)`` and before the server starts; sessions that
    already exist (``spark`` itself) are not changed.
    """
    from pyspark.java_gateway import ensure_callback_server_started

    from mxsql.registry.callbacks import scala_function

    # The Thrift server's own threads call the Python functions: they need the callback
    # server listening (calls made while Python waits on the JVM do without it).
    ensure_callback_server_started(spark.sparkContext._gateway)
    jvm = spark._jvm
    extensions = spark._jsparkSession.extensions()
    identifier = jvm.org.apache.spark.sql.catalyst.FunctionIdentifier
    for name, info, builder in session_functions(spark):
        extensions.injectFunction(jvm.scala.Tuple3(identifier.apply(name), info, builder))
    tables = spark._jsparkSession.sessionState().tableFunctionRegistry()
    for name in ("mx_models", "mx_labels"):
        table = identifier.apply(name, jvm.scala.Some("session"), jvm.scala.Some("system"))
        extensions.injectTableFunction(jvm.scala.Tuple3(
            identifier.apply(name), tables.lookupFunction(table).get(),
            tables.lookupFunctionBuilder(table).get()))
    builtin = jvm.org.apache.spark.sql.catalyst.analysis.FunctionRegistry.builtin()
    for name in REFUSED_FUNCTIONS:
        info = builtin.lookupFunction(identifier.apply(name)).get()
        extensions.injectFunction(
            jvm.scala.Tuple3(identifier.apply(name), info, rules.refuse_function(name)))
    s3_source = spark._jsparkSession.sessionState().dataSourceManager() \
        .lookupDataSource(_S3_SOURCE)

    def new_session(session):
        sources = session.sessionState().dataSourceManager()
        if not sources.dataSourceExists(_S3_SOURCE):
            sources.registerDataSource(_S3_SOURCE, s3_source)
        return scala_function(spark, rules.session_check(session))

    extensions.injectCheckRule(scala_function(spark, new_session))
    extensions.injectHintResolutionRule(scala_function(spark, rules.file_query_rule))
