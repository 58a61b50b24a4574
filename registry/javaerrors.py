"""The Java exception behind a Python one, as py4j and PySpark hand it over."""

from typing import Optional

__all__ = ["java_exception", "root_cause_text"]


def java_exception(error: BaseException) -> Optional[object]:
    """The Java throwable (a py4j ``JavaObject``) behind ``error``, or None.

    py4j's ``Py4JJavaError`` holds it as its public ``java_exception``. PySpark turns most
    of them into its own classes (``AnalysisException``, ``PythonException``...), which it
    raises ``from None`` and which keep the Java exception only in the private ``_origin``:
    PySpark 4.3 has no public form of it, so it is read there.
    """
    java = getattr(error, "java_exception", None)
    if java is None:
        java = getattr(error, "_origin", None)
    return java


def root_cause_text(error: BaseException) -> str:
    """The innermost Java cause's ``toString()`` when a Java exception is behind ``error``,
    else ``str(error)``: what a log line needs to say why the JVM failed."""
    java = java_exception(error)
    if java is None:
        return str(error)
    while java.getCause() is not None:
        java = java.getCause()
    return str(java.toString())
