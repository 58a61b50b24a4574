"""The workers' log: the ``mxsql`` logger on stderr, which Spark keeps in each executor's log.

``MXSQL_LOG_LEVEL`` (DEBUG, INFO, WARNING, ERROR; default INFO) in the workers' environment
sets the level: DEBUG adds one line per batch the network runs on. On a cluster, give it
to the executors with ``spark.executorEnv.MXSQL_LOG_LEVEL``.
"""

import logging
import os
import sys

from mxsql.udfs.errors import ConfigError

__all__ = ["logger"]

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def logger(name: str = "mxsql") -> logging.Logger:
    """The ``mxsql`` logger, or one of its children, set up once per process."""
    root = logging.getLogger("mxsql")
    if not root.handlers:
        level = os.environ.get("MXSQL_LOG_LEVEL", "INFO").strip().upper()
        if level not in _LEVELS:
            raise ConfigError(
                f"MXSQL_LOG_LEVEL={level!r}: must be one of {', '.join(_LEVELS)}")
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(level)
        root.propagate = False
    return logging.getLogger(name)
