"""The workers' log: the ``mxsql`` logger on stderr, which Spark keeps in each executor's log.

``MXSQL_LOG_LEVEL`` (DEBUG, INFO, WARNING, ERROR; default INFO) in the workers' environment
sets the level: DEBUG adds one line per batch the network runs on. On a cluster, give it
to the executors with ``spark.executorEnv.MXSQL_LOG_LEVEL``.

The "loaded model" line is a contract with whoever reads these logs (the benchmark counts
model loads with it, the tests check that a worker loads a model once): it is written by
:func:`loaded_model_line` and read by :func:`parse_loaded_models`, nowhere else.
"""

import logging
import os
import re
import sys
from typing import List, NamedTuple

from mxsql.udfs.errors import ConfigError

__all__ = ["logger", "ModelLoad", "loaded_model_line", "parse_loaded_models"]

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


class ModelLoad(NamedTuple):
    """One "loaded model" line: which model, from where, how long it took, in which process."""

    model: str
    uri: str
    seconds: float
    pid: int


# A model's name is a key segment (no quote); a local path may hold spaces.
_LOADED_MODEL = re.compile(r"loaded model '([^']+)' from (.+?) in ([\d.]+) s \(pid (\d+)\)")


def loaded_model_line(model: str, uri: str, seconds: float, pid: int) -> str:
    """The message a process logs once it has loaded ``model`` from ``uri``."""
    return f"loaded model '{model}' from {uri} in {seconds:.2f} s (pid {pid})"


def parse_loaded_models(text: str) -> List[ModelLoad]:
    """Every "loaded model" line in ``text`` (a log, any prefix before each line), in order."""
    return [ModelLoad(m.group(1), m.group(2), float(m.group(3)), int(m.group(4)))
            for m in _LOADED_MODEL.finditer(text)]
