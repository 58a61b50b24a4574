"""The settings that matter, one at a time around what spark-defaults.conf ships.

Each point runs path (2) on a subset of the CIFAR-shaped workload in a fresh driver.
"""

from typing import Dict, List, Tuple

__all__ = ["POINTS"]

_RECORDS = "spark.sql.execution.arrow.maxRecordsPerBatch"
_SPLIT = "spark.sql.files.maxPartitionBytes"

# (setting, value shown, Spark conf for the point); an empty conf is the shipped default.
POINTS: List[Tuple[str, str, Dict[str, str]]] = [
    ("tasks x MXNet threads", "2 tasks x 1 (spark.task.cpus=1)", {"spark.task.cpus": "1"}),
    ("tasks x MXNet threads", "1 task x 2 (spark.task.cpus=2)", {"spark.task.cpus": "2"}),
    ("tasks x MXNet threads", "2 tasks x 2 (executorEnv.OMP_NUM_THREADS=2)",
     {"spark.task.cpus": "1", "spark.executorEnv.OMP_NUM_THREADS": "2"}),
    ("arrow.maxRecordsPerBatch", "16", {_RECORDS: "16"}),
    ("arrow.maxRecordsPerBatch", "64", {_RECORDS: "64"}),
    ("arrow.maxRecordsPerBatch", "256", {_RECORDS: "256"}),
    ("mxsql.batchSize", "8", {"spark.mxsql.batchSize": "8"}),
    ("mxsql.batchSize", "16", {"spark.mxsql.batchSize": "16"}),
    ("mxsql.batchSize", "32 (default)", {}),
    ("mxsql.batchSize", "64", {"spark.mxsql.batchSize": "64"}),
    ("files.maxPartitionBytes", "256 MB", {_SPLIT: str(256 << 20)}),
    ("files.maxPartitionBytes", "128 MB (Spark's default)", {_SPLIT: str(128 << 20)}),
    ("files.maxPartitionBytes", "32 MB", {_SPLIT: str(32 << 20)}),
    ("files.maxPartitionBytes", "8 MB", {_SPLIT: str(8 << 20)}),
]
