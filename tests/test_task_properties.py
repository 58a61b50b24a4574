"""A session's ``SET spark.mxsql.…`` reaches a Python task through PySpark's private
``TaskContext._localProperties``, which ``Settings.for_task`` reads (PySpark has no public
way to list local properties). Should a PySpark upgrade rename it, ``for_task`` would quietly
see no SET at all; this test fails loudly instead.
"""

import pyarrow as pa

from mxsql.registry.config import settings_from_session
from mxsql.udfs.config import PREFIX

_KEY = PREFIX + "batchSize"
_SET_VALUE = "7"
_PROBE_SCHEMA = "has_attribute BOOLEAN, is_mapping BOOLEAN, value STRING, batch_size BIGINT"


def _probe(settings):
    """A mapInArrow body that reports, from inside the task, what the task context holds."""

    def probe(batches):
        from pyspark import TaskContext

        for _ in batches:
            pass
        context = TaskContext.get()
        has_attribute = hasattr(context, "_localProperties")
        props = getattr(context, "_localProperties", None)
        is_mapping = hasattr(props, "get")
        yield pa.RecordBatch.from_pylist([{
            "has_attribute": has_attribute,
            "is_mapping": is_mapping,
            "value": props.get(_KEY) if is_mapping else None,
            "batch_size": settings.for_task().batch_size,
        }])

    return probe


def test_set_value_reaches_the_task_through_local_properties(spark):
    settings = settings_from_session(spark)
    previous = spark.conf.get(_KEY, None)
    assert previous != _SET_VALUE
    spark.sql(f"SET {_KEY}={_SET_VALUE}")
    try:
        rows = (spark.range(1, numPartitions=1)
                .mapInArrow(_probe(settings), _PROBE_SCHEMA).collect())
    finally:
        if previous is None:
            spark.conf.unset(_KEY)
        else:
            spark.conf.set(_KEY, previous)
    (row,) = rows
    assert row.has_attribute, (
        "pyspark.TaskContext has no _localProperties any more: Settings.for_task in "
        "udfs/config.py must read a task's local properties another way")
    assert row.is_mapping, "TaskContext._localProperties is no longer a mapping"
    assert row.value == _SET_VALUE
    assert row.batch_size == int(_SET_VALUE)
