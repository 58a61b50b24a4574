"""Python functions that Spark's JVM calls as ``scala.Function1``, able to throw Java errors.

Spark takes hooks as Scala functions: a SQL function's builder (``Seq[Expression] =>
Expression``), an injected check rule (``LogicalPlan => Unit``), the builders handed to
``SparkSessionExtensions``. A Python object can implement ``scala.Function1`` through
py4j's callback server, but an exception it raises reaches Spark as a ``Py4JException``
holding the Python traceback, and a Java exception it hands back is wrapped in an
``UndeclaredThrowableException`` whenever it is checked (``AnalysisException`` is),
because py4j answers through a ``java.lang.reflect.Proxy``.

``scala_function`` avoids both: the JVM object is a tiny class compiled once per JVM
with Janino (the compiler Spark ships for its own code generation), whose ``apply``
calls the Python function and either returns its result or throws, as it is, the Java
exception the Python function raised as ``JavaThrow``. A Spark client then sees a real
``AnalysisException`` (PySpark's ``AnalysisException``, a JDBC error with its SQLSTATE).
"""

import threading
from typing import Callable, Dict, Mapping

__all__ = ["JavaThrow", "scala_function", "analysis_error"]

_CLASS_NAME = "MxsqlScalaFunction"
# Try.get() rethrows a Failure's exception, checked or not: Scala declares no checked
# exceptions, so Janino accepts it where a plain `throw` of an AnalysisException would
# need a `throws` clause that Function1.apply does not have.
_SOURCE = """
public class MxsqlScalaFunction extends scala.runtime.AbstractFunction1 {
    private java.util.function.Function body;

    public MxsqlScalaFunction withBody(java.util.function.Function body) {
        this.body = body;
        return this;
    }

    public Object apply(Object argument) {
        return ((scala.util.Try) body.apply(argument)).get();
    }
}
"""
_classes: Dict[int, object] = {}
_lock = threading.Lock()


class JavaThrow(Exception):
    """Raise inside a ``scala_function`` body to throw ``throwable`` (a Java
    ``Throwable`` object) in the JVM, unwrapped."""

    def __init__(self, throwable):
        super().__init__(str(throwable.getMessage()))
        self.throwable = throwable


class _Body:
    """The ``java.util.function.Function`` the compiled class calls: a ``scala.util.Try``
    of the Python function's result."""

    class Java:
        implements = ["java.util.function.Function"]

    def __init__(self, jvm, fn: Callable):
        self._jvm = jvm
        self._fn = fn

    def apply(self, argument):
        try:
            return self._jvm.scala.util.Success(self._fn(argument))
        except JavaThrow as e:
            return self._jvm.scala.util.Failure(e.throwable)


def _function_class(spark):
    gateway = spark.sparkContext._gateway
    with _lock:
        cls = _classes.get(id(gateway))
        if cls is None:
            jvm = spark._jvm
            compiler = jvm.org.codehaus.janino.SimpleCompiler()
            loader = jvm.org.apache.spark.util.Utils.getContextOrSparkClassLoader()
            compiler.setParentClassLoader(loader)
            compiler.cook(_SOURCE)
            cls = compiler.getClassLoader().loadClass(_CLASS_NAME)
            _classes[id(gateway)] = cls
    return cls


def scala_function(spark, fn: Callable):
    """A JVM ``scala.Function1`` whose ``apply(x)`` returns ``fn(x)``.

    ``fn`` runs in this Python process (py4j's callback server), on whichever JVM
    thread calls it, so it must be thread-safe and this process must outlive the JVM's
    use of it. To refuse, ``fn`` raises ``JavaThrow(java_exception)``: the JVM throws
    that exception as it is. Any other Python exception is a bug and reaches the JVM as
    a ``Py4JException`` with the traceback.

    Examples
    --------
    >>> rule = scala_function(spark, lambda plan: None)  # doctest: +SKIP
    >>> spark._jsparkSession.extensions().injectCheckRule(
    ...     scala_function(spark, lambda session: rule))  # doctest: +SKIP
    """
    gateway = spark.sparkContext._gateway
    cls = _function_class(spark)
    no_types = gateway.new_array(spark._jvm.java.lang.Class, 0)
    no_args = gateway.new_array(spark._jvm.java.lang.Object, 0)
    return cls.getConstructor(no_types).newInstance(no_args).withBody(_Body(spark._jvm, fn))


def analysis_error(spark, condition: str, parameters: Mapping[str, str]):
    """A Java ``AnalysisException`` of Spark's error ``condition`` (e.g.
    ``DATATYPE_MISMATCH.TYPE_CHECK_FAILURE_WITH_HINT``) with its message parameters,
    ready for ``JavaThrow``."""
    jvm = spark._jvm
    return jvm.org.apache.spark.sql.AnalysisException(
        condition, jvm.PythonUtils.toScalaMap(dict(parameters))
    )
