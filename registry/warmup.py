"""Python workers started while the first statement that needs them is being planned.

A run's first statement that calls an mx function waits, once Spark has parsed,
analysed and planned it (for a CTAS: booted the metastore and listed the files), for
Spark to start the Python worker daemon: a new interpreter that imports numpy,
pyarrow, pandas, Pillow, mxsql and MXNet (``mxsql.udfs.daemon``) before it forks the
first worker. The shell starts that daemon when such a statement begins, with a
one-row job of its own in the background, so that the two overlap; the worker the job
used returns to Spark's pool, where the statement's first task finds it.
"""

import logging
import re
import threading
from typing import Optional

from mxsql.registry.catalog import FUNCTIONS

__all__ = ["WorkerWarmup"]

_log = logging.getLogger("mxsql.warmup")
# One row through the cheapest mx function: it starts the daemon and forks a worker
# that has imported everything, and loads no model.
_QUERY = "SELECT mx_image_info(X'')"


class WorkerWarmup:
    """Starts the Python workers of ``spark`` once, ahead of the first statement that
    calls an mx function; never fails or delays a statement."""

    def __init__(self, spark):
        self._spark = spark
        self._started = False
        names = "|".join(re.escape(fn.name) for fn in FUNCTIONS)
        self._calls = re.compile(rf"\b(?:{names})\s*\(", re.IGNORECASE)

    def before(self, statement: str) -> Optional[threading.Thread]:
        """Start the warm-up if ``statement`` calls an mx function and none ran yet;
        the thread that runs it, or None."""
        if self._started or not self._calls.search(statement):
            return None
        self._started = True
        thread = threading.Thread(target=self._run, name="mxsql-warmup", daemon=True)
        thread.start()
        return thread

    def _run(self) -> None:
        try:
            self._spark.sparkContext.setJobDescription("mxsql: start the Python workers")
            self._spark.sql(_QUERY).collect()
        except Exception as e:  # noqa: BLE001 - only time is at stake
            # A statement that meets the same problem reports it itself.
            _log.debug("the Python worker warm-up failed: %s", e)
