"""The SQL functions mxsql offers, and ``register_all`` that puts them in a session."""

from dataclasses import dataclass
from typing import Callable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import pyarrow as pa

from mxsql.registry.callbacks import JavaThrow, analysis_error, scala_function
from mxsql.registry.config import declare_keys, settings_from_session
from mxsql.udfs import functions, tables
from mxsql.udfs.config import Settings
from mxsql.udfs.s3 import source as s3source

__all__ = ["Parameter", "SqlFunction", "FUNCTIONS", "register_all", "register_data_source",
           "session_functions"]


class Parameter(NamedTuple):
    """One argument of an SQL function: its name, SQL type, and whether it may be left out
    (optional arguments come last; a call leaves out a suffix of them)."""

    name: str
    sql_type: str  # BINARY, STRING or INT
    optional: bool = False


# Spark's type names (DataType.simpleString, before any " collate ...") each SQL type
# of a parameter accepts; a NULL literal (void) fits any of them.
_ACCEPTED = {
    "BINARY": ("binary",),
    "STRING": ("string",),
    "INT": ("tinyint", "smallint", "int", "bigint"),
}
_NULL = "void"


@dataclass(frozen=True)
class SqlFunction:
    """One SQL function: its name, parameters, result type and the worker body behind it."""

    name: str
    parameters: Tuple[Parameter, ...]
    returns: pa.DataType
    doc: str
    body: Callable

    @property
    def signature(self) -> str:
        """How to call it: ``mx_classify(content BINARY [, model STRING [, path STRING]])``."""
        required = [p for p in self.parameters if not p.optional]
        optional = [p for p in self.parameters if p.optional]
        text = ", ".join(f"{p.name} {p.sql_type}" for p in required)
        for p in optional:
            text += f" [, {p.name} {p.sql_type}"
        return f"{self.name}({text}{']' * len(optional)})"

    def argument_problem(self, types: Sequence[str]) -> Optional[str]:
        """What is wrong with a call whose arguments have Spark's ``types`` (``simpleString``
        names such as ``binary``, ``void`` for a NULL literal), or None when it fits."""
        least = sum(not p.optional for p in self.parameters)
        most = len(self.parameters)
        if not least <= len(types) <= most:
            takes = f"{least} to {most} arguments" if least < most else (
                f"{most} argument" + ("s" if most != 1 else ""))
            return f"{self.name} takes {takes}, got {len(types)}"
        for index, (parameter, given) in enumerate(zip(self.parameters, types), start=1):
            base = given.split(" ", 1)[0]
            if base != _NULL and base not in _ACCEPTED[parameter.sql_type]:
                return (f"argument {index} ({parameter.name}) must be {parameter.sql_type}, "
                        f"got {given.upper()}")
        return None


_CONTENT = Parameter("content", "BINARY")
_MODEL = Parameter("model", "STRING", optional=True)
_PATH = Parameter("path", "STRING", optional=True)

FUNCTIONS: Tuple[SqlFunction, ...] = (
    SqlFunction(
        "mx_classify", (_CONTENT, _MODEL, _PATH), functions.CLASS_TYPE,
        "Top-1 class of an image: STRUCT<label, probability, class_index>; NULL when the "
        "image cannot be decoded. model names a configured model (default 'default'); "
        "path only makes onError=fail messages name the file.",
        functions.classify,
    ),
    SqlFunction(
        "mx_top_k", (_CONTENT, Parameter("k", "INT"), _MODEL, _PATH), functions.TOP_K_TYPE,
        "The k most probable classes, best first: ARRAY<STRUCT<label, probability, "
        "class_index>>; NULL when the image cannot be decoded or k is NULL. model and "
        "path as for mx_classify.",
        functions.top_k,
    ),
    SqlFunction(
        "mx_image_info", (_CONTENT,), functions.INFO_TYPE,
        "Format, width, height and mode of an image without running a model, and in "
        "error the reason it cannot be decoded (NULL when it can).",
        functions.image_info,
    ),
)


def _arrow_udf(fn: SqlFunction, settings: Settings):
    from pyspark.sql.functions import arrow_udf
    from pyspark.sql.pandas.types import from_arrow_type

    body = fn.body  # a function of an importable module: pickled by reference

    def run(batches: Iterator[pa.Array]) -> Iterator[pa.Array]:
        return body(settings, batches)

    run.__name__ = fn.name
    run.__doc__ = fn.doc
    return arrow_udf(run, from_arrow_type(fn.returns))


def register_all(spark, *, settings: Optional[Settings] = None,
                 fixed_by_server: bool = False, data_source: bool = True) -> Settings:
    """Register every mx function in ``spark`` and return the settings they captured.

    Cheap: it validates the ``spark.mxsql.*`` keys (raising ConfigError naming a bad
    key) but loads no model and imports no MXNet; models load in the workers on first
    use. Each function checks the number and types of its arguments when Spark analyses
    a call (an AnalysisException showing ``SqlFunction.signature``), through a builder
    this Python process answers (``mxsql.registry.callbacks``), so the process must
    outlive the session. Call it again after changing model settings to re-capture
    them. It also registers the ``mxsql_s3`` data source (``register_data_source``)
    unless ``data_source`` is false.

    Examples
    --------
    >>> from mxsql.registry import register_all
    >>> register_all(spark)  # doctest: +SKIP
    >>> spark.sql("SELECT path, mx_classify(content).label FROM images")  # doctest: +SKIP
    """
    if settings is None:
        settings = settings_from_session(spark)
    declare_keys(spark)
    for fn in FUNCTIONS:
        spark.udf.register(fn.name, _arrow_udf(fn, settings))
        _check_arguments(spark, fn)
    if data_source:
        register_data_source(spark, settings, fixed_by_server=fixed_by_server)
    _register_tables(spark, settings)
    return settings


def register_data_source(spark, settings: Settings, *, fixed_by_server: bool = False) -> None:
    """Register the ``mxsql_s3`` data source with the session's S3 settings, which its
    ``endpoint`` and ``profile`` options may not change when ``fixed_by_server``.

    Spark's first registration in a JVM waits for a Python process that looks for
    installed data sources (seconds), so the shell calls this only for a statement that
    names ``mxsql_s3``.
    """
    spark.dataSource.register(s3source.data_source(settings, fixed_by_server=fixed_by_server))


def _register_tables(spark, settings: Settings) -> None:
    """``mx_models()`` and ``mx_labels([model])``: Python UDTFs over ``settings``."""
    from pyspark.sql.functions import udtf

    models, labels = tables.udtfs(settings)
    spark.udtf.register("mx_models", udtf(models, returnType=tables.MODELS_SCHEMA))
    spark.udtf.register("mx_labels", udtf(labels, returnType=tables.LABELS_SCHEMA))


def session_functions(spark) -> List[Tuple[str, object, object]]:
    """``(name, ExpressionInfo, builder)`` of every mx function as ``register_all`` left
    it in ``spark`` (Java objects; the builder checks the arguments).

    This is what ``SparkSessionExtensions.injectFunction`` takes, with
    ``FunctionIdentifier.apply(name)``, to reach the sessions ``newSession()`` makes
    later (FACTS.md, "Functions in every session").
    """
    registry = spark._jsparkSession.sessionState().functionRegistry()
    found = []
    for fn in FUNCTIONS:
        identifier = _session_identifier(spark, fn.name)
        found.append((fn.name, registry.lookupFunction(identifier).get(),
                      registry.lookupFunctionBuilder(identifier).get()))
    return found


def _session_identifier(spark, name: str):
    # Temporary functions live under system.session; the registry wants all 3 parts.
    jvm = spark._jvm
    return jvm.org.apache.spark.sql.catalyst.FunctionIdentifier.apply(
        name, jvm.scala.Some("session"), jvm.scala.Some("system"))


def _check_arguments(spark, fn: SqlFunction) -> None:
    """Register ``fn`` again with a builder that checks its arguments where Spark analyses
    the statement (before any row is read) and documents it for ``DESCRIBE FUNCTION``."""
    jvm = spark._jvm
    registry = spark._jsparkSession.sessionState().functionRegistry()
    identifier = _session_identifier(spark, fn.name)
    udf_builder = registry.lookupFunctionBuilder(identifier).get()
    udf_info = registry.lookupFunction(identifier).get()
    info = jvm.org.apache.spark.sql.catalyst.expressions.ExpressionInfo(
        udf_info.getClassName(), udf_info.getDb(), fn.name, f"{fn.signature} - {fn.doc}",
        "", "", "", "", "", "", udf_info.getSource())
    builder = scala_function(spark, lambda arguments: _build(spark, fn, udf_builder, arguments))
    registry.dropFunction(identifier)  # else Spark warns that the function was replaced
    registry.registerFunction(identifier, info, builder)


_TYPES = {"BINARY": "BinaryType", "STRING": "StringType", "INT": "IntegerType"}


def _build(spark, fn: SqlFunction, udf_builder, arguments):
    """The UDF's expression for ``arguments`` (a Scala Seq of resolved expressions), or an
    AnalysisException that says how to call ``fn``; NULL literals get the parameter's type."""
    jvm = spark._jvm
    given = [arguments.apply(i) for i in range(arguments.size())]
    types = [e.dataType().simpleString() for e in given]
    problem = fn.argument_problem(types)
    if problem is not None:
        call = f"{fn.name}({', '.join(e.sql() for e in given)})"
        raise JavaThrow(analysis_error(spark, "DATATYPE_MISMATCH.TYPE_CHECK_FAILURE_WITH_HINT", {
            "sqlExpr": f'"{call}"', "msg": problem, "hint": f"; call it as {fn.signature}",
        }))
    typed = jvm.java.util.ArrayList()
    for parameter, expression, type_name in zip(fn.parameters, given, types):
        if type_name == _NULL:
            data_types = jvm.org.apache.spark.sql.types.DataTypes
            data_type = getattr(data_types, _TYPES[parameter.sql_type])
            literal = jvm.org.apache.spark.sql.catalyst.expressions.Literal
            expression = literal.create(None, data_type)
        typed.add(expression)
    return udf_builder.apply(jvm.PythonUtils.toSeq(typed))
