"""The settings that matter, one at a time around what spark-defaults.conf ships.

Each point runs path (2) in a fresh driver: on a subset of the CIFAR-shaped workload, or
for the split size on the photos, whose 300 MB a split size cuts into different numbers of
tasks on a few cores.
"""

from typing import Dict, List, Tuple

from mxsql.udfs.config import GLOBAL_KEYS, PREFIX

__all__ = ["POINTS", "MXSQL_DEFAULTS"]

_RECORDS = "spark.sql.execution.arrow.maxRecordsPerBatch"
_SPLIT = "spark.sql.files.maxPartitionBytes"
_BATCH = PREFIX + "batchSize"

# What a spark.mxsql key is when no conf sets it: its default in the key table.
MXSQL_DEFAULTS: Dict[str, str] = {PREFIX + k.name: k.default for k in GLOBAL_KEYS
                                  if k.default is not None}


def _batch_size(value: int) -> Tuple[str, str, str, Dict[str, str]]:
    """The point that runs spark.mxsql.batchSize at ``value``, labelled as the key table's
    default when it is."""
    shown = str(value) + (" (default)" if str(value) == MXSQL_DEFAULTS[_BATCH] else "")
    return ("cifar", "mxsql.batchSize", shown, {_BATCH: str(value)})


# (workload, setting, value shown, Spark conf for the point), over the shipped settings.
POINTS: List[Tuple[str, str, str, Dict[str, str]]] = [
    ("cifar", "tasks x MXNet threads", "2 tasks x 1 (spark.task.cpus=1)",
     {"spark.task.cpus": "1"}),
    ("cifar", "tasks x MXNet threads", "1 task x 2 (spark.task.cpus=2)",
     {"spark.task.cpus": "2"}),
    ("cifar", "tasks x MXNet threads", "2 tasks x 2 (executorEnv.OMP_NUM_THREADS=2)",
     {"spark.task.cpus": "1", "spark.executorEnv.OMP_NUM_THREADS": "2"}),
    ("cifar", "arrow.maxRecordsPerBatch", "16", {_RECORDS: "16"}),
    ("cifar", "arrow.maxRecordsPerBatch", "64", {_RECORDS: "64"}),
    ("cifar", "arrow.maxRecordsPerBatch", "256", {_RECORDS: "256"}),
    *(_batch_size(value) for value in (8, 16, 32, 64)),
    ("photos", "files.maxPartitionBytes", "1 GB", {_SPLIT: str(1 << 30)}),
    ("photos", "files.maxPartitionBytes", "256 MB", {_SPLIT: str(256 << 20)}),
    ("photos", "files.maxPartitionBytes", "128 MB (Spark's default)", {_SPLIT: str(128 << 20)}),
    ("photos", "files.maxPartitionBytes", "32 MB", {_SPLIT: str(32 << 20)}),
    ("photos", "files.maxPartitionBytes", "8 MB", {_SPLIT: str(8 << 20)}),
]
