"""Python workers started, and their models loaded, while the first statement that needs
them is being planned.

A run's first statement that calls an mx function waits, once Spark has parsed,
analysed and planned it (for a CTAS: booted the metastore and listed the files), for
Spark to start the Python worker daemon: a new interpreter that imports numpy,
pyarrow, pandas, Pillow, mxsql and MXNet (``mxsql.udfs.daemon``) before it forks the
first worker; then each worker loads its model and prepares the network for its first
batches. The shell starts that work when such a statement begins, with a small job of
its own in the background, so that the two overlap. When every call in the statement
names its model by a literal (or leaves it out: ``default``) and those models are
configured, the job classifies a 1x1 image with each of them in as many tasks as a
local session runs at once (up to 8), so every worker it starts has the model loaded;
otherwise (or on a cluster) it runs one row through ``mx_image_info``, which starts the
daemon only. The workers return to Spark's pool, where the statement's tasks find them.
"""

import logging
import re
import threading
from typing import List, Optional, Set

from mxsql.registry.catalog import FUNCTIONS
from mxsql.udfs.config import Settings

__all__ = ["WorkerWarmup", "models_called"]

_log = logging.getLogger("mxsql.warmup")
# The cheapest mx call: it starts the daemon and forks a worker, and loads no model.
_INFO_QUERY = "SELECT mx_image_info(X'')"
# A 1x1 grey PNG (Pillow's, optimised): the smallest image a model classifies.
_PIXEL = ("89504E470D0A1A0A0000000D49484452000000010000000108000000003A7E9B550000000A49444154"
          "78DA6368000000820081DA45083B0000000049454E44AE426082")
_NAME = re.compile(r"'(\w+)'|\"(\w+)\"")
# Workers the warm-up loads a model in, at most: on a large machine a small query uses
# few of its task slots, and each loaded worker holds a network's memory.
_MOST_WORKERS = 8
# Where each function that takes a model has its ``model`` argument.
_MODEL_ARGUMENT = {fn.name: [p.name for p in fn.parameters].index("model")
                   for fn in FUNCTIONS if any(p.name == "model" for p in fn.parameters)}
_CALLS = re.compile(rf"\b({'|'.join(re.escape(fn.name) for fn in FUNCTIONS)})\s*\(",
                    re.IGNORECASE)


def models_called(statement: str) -> Optional[Set[str]]:
    """The models the mx calls in ``statement`` use (``default`` where a call names none),
    or None when a call names its model otherwise than by a literal."""
    names = set()
    for call in _CALLS.finditer(statement):
        index = _MODEL_ARGUMENT.get(call.group(1).lower())
        if index is None:
            continue
        arguments = _arguments(statement, call.end())
        if arguments is None:
            return None
        if len(arguments) <= index:
            names.add("default")
            continue
        literal = _NAME.fullmatch(arguments[index])
        if literal is None:
            return None
        names.add(literal.group(1) or literal.group(2))
    return names


def _arguments(text: str, start: int) -> Optional[List[str]]:
    """The top-level arguments of the call whose ``(`` ends at ``start``; None when the
    text ends first. Quotes are skipped whole; a wrong guess only costs the warm-up."""
    arguments, depth, quote, begin = [], 0, None, start
    for position in range(start, len(text)):
        char = text[position]
        if quote is not None:
            if char == quote:
                quote = None
        elif char in "'\"`":
            quote = char
        elif char == "(":
            depth += 1
        elif char == "," and depth == 0:
            arguments.append(text[begin:position].strip())
            begin = position + 1
        elif char == ")":
            if depth == 0:
                last = text[begin:position].strip()
                return arguments + [last] if arguments or last else []
            depth -= 1
    return None


class WorkerWarmup:
    """Starts the Python workers of ``spark`` once, ahead of the first statement that
    calls an mx function; never fails or delays a statement."""

    def __init__(self, spark):
        self._spark = spark
        self._started = False

    def query(self, statement: str, settings: Settings) -> str:
        """The warm-up job for ``statement``: each model it calls classifies a 1x1 image
        in every task slot, or, when they are not all known, one ``mx_image_info`` row."""
        context = self._spark.sparkContext
        names = models_called(statement)
        # On a cluster the tasks would not reach every executor's workers: start one.
        if not context.master.startswith("local") or not names or \
                not names <= {spec.name for spec in settings.models}:
            return _INFO_QUERY
        slots = min(context.defaultParallelism, _MOST_WORKERS)
        return " UNION ALL ".join(
            f"SELECT mx_classify(X'{_PIXEL}', '{name}') FROM range(0, {slots}, 1, {slots})"
            for name in sorted(names))

    def before(self, statement: str, settings: Settings) -> Optional[threading.Thread]:
        """Start the warm-up if ``statement`` calls an mx function and none ran yet;
        the thread that runs it, or None."""
        if self._started or not _CALLS.search(statement):
            return None
        self._started = True
        thread = threading.Thread(target=self._run, args=(self.query(statement, settings),),
                                  name="mxsql-warmup", daemon=True)
        thread.start()
        return thread

    def _run(self, query: str) -> None:
        try:
            self._spark.sparkContext.setJobDescription("mxsql: start the Python workers")
            self._spark.sql(query).collect()
        except Exception as e:  # noqa: BLE001 - only time is at stake
            # A statement that meets the same problem reports it itself.
            _log.debug("the Python worker warm-up failed: %s", e)
