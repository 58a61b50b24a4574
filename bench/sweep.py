"""The settings that matter, one at a time around what spark-defaults.conf ships.

Each point runs path (2) in a fresh driver: on a subset of the CIFAR-shaped workload, or
for the split size on the photos, whose 300 MB a split size cuts into different numbers of
tasks on a few cores.
"""

from typing import Dict, List, Tuple

__all__ = ["POINTS"]

_RECORDS = "spark.sql.execution.arrow.maxRecordsPerBatch"
_SPLIT = "spark.sql.files.maxPartitionBytes"

# (workload, setting, value shown, Spark conf for the point); an empty conf is the shipped
# default.
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
    ("cifar", "mxsql.batchSize", "8", {"spark.mxsql.batchSize": "8"}),
    ("cifar", "mxsql.batchSize", "16", {"spark.mxsql.batchSize": "16"}),
    ("cifar", "mxsql.batchSize", "32 (default)", {}),
    ("cifar", "mxsql.batchSize", "64", {"spark.mxsql.batchSize": "64"}),
    ("photos", "files.maxPartitionBytes", "1 GB", {_SPLIT: str(1 << 30)}),
    ("photos", "files.maxPartitionBytes", "256 MB", {_SPLIT: str(256 << 20)}),
    ("photos", "files.maxPartitionBytes", "128 MB (Spark's default)", {_SPLIT: str(128 << 20)}),
    ("photos", "files.maxPartitionBytes", "32 MB", {_SPLIT: str(32 << 20)}),
    ("photos", "files.maxPartitionBytes", "8 MB", {_SPLIT: str(8 << 20)}),
]
