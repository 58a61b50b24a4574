"""The workers' log: the ``mxsql`` logger on stderr, which Spark keeps in each executor's log.

``MXSQL_LOG_LEVEL`` (DEBUG, INFO, WARNING, ERROR; default INFO) in the workers' environment
sets the level: DEBUG adds one line per batch the network runs on. On a cluster, give it
to the executors with ``spark.executorEnv.MXSQL_LOG_LEVEL``.

The "loaded model" line is a contract with whoever reads these logs (the benchmark counts
model loads with it, the tests check that a worker loads a model once): it is written by
:func:`loaded_model_line` and read by :func:`parse_loaded_models`, nowhere else.

The "classified" line says which files went through the network: one line per batch a
model runs on, at DEBUG (off at the default INFO: a line per batch with its paths would
flood a production log), written only when the call was given the files' paths (the last
argument of ``mx_classify``/``mx_top_k``, as ``sql/backfill.sql`` passes them). It is
written by :func:`classified_line` and read by :func:`parse_classified`.
"""

import json
import logging
import os
import re
import sys
from typing import List, NamedTuple, Sequence, Tuple

from mxsql.udfs.errors import ConfigError

__all__ = ["logger", "ModelLoad", "loaded_model_line", "parse_loaded_models",
           "Classified", "classified_line", "parse_classified"]

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


class Classified(NamedTuple):
    """One "classified" line: the files one batch of one model sent through the network."""

    model: str
    pid: int
    paths: Tuple[str, ...]


# The paths are a JSON list at the end of the line: any character a path holds reads back.
_CLASSIFIED = re.compile(r"model '([^']+)' classified (\d+) images \(pid (\d+)\): (\[.*\])$",
                         re.MULTILINE)


def classified_line(model: str, pid: int, paths: Sequence[str]) -> str:
    """The message a worker logs when ``model`` runs on the images at ``paths``."""
    return (f"model '{model}' classified {len(paths)} images (pid {pid}): "
            + json.dumps(list(paths), ensure_ascii=True))


def parse_classified(text: str) -> List[Classified]:
    """Every "classified" line in ``text`` (a log, any prefix before each line), in order."""
    found = []
    for m in _CLASSIFIED.finditer(text):
        try:
            paths = tuple(json.loads(m.group(4)))
        except ValueError:  # a line cut off mid-write (a killed worker) is not one
            continue
        if len(paths) == int(m.group(2)):
            found.append(Classified(m.group(1), int(m.group(3)), paths))
    return found
