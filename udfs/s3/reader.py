"""Reading ``mxsql_s3``: list on the driver, split into partitions, GET in the tasks.

The listing is paginated and filtered as binaryFile filters files; each task GETs its
objects a bounded number at a time, in listing order, and turns them into Arrow batches
with binaryFile's columns.
"""

import random
import re
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Iterator, List, NamedTuple, Optional

import pyarrow as pa
from pyspark.sql.datasource import DataSourceReader, InputPartition
from pyspark.sql.types import StructType

from mxsql.udfs import logs
from mxsql.udfs.config import PREFIX, Settings
from mxsql.udfs.errors import RowError, S3Error
from mxsql.udfs.s3.client import error_status, s3_reason
from mxsql.udfs.s3.options import NAME, S3Options, Target

__all__ = ["S3Partition", "S3Reader"]

_log = logs.logger("mxsql.s3")

_BATCH_ROWS = 64
_BATCH_BYTES = 64 << 20
_ROW_WARNINGS = 5  # per task; the rest are counted in one summary line
_VANISHED_TRIES = 3
_STREAM_ERRORS = ("ResponseStreamingError", "IncompleteReadError", "ReadTimeoutError",
                  "ConnectionClosedError", "ProtocolError")
_ON_ERROR = PREFIX + "onError"


class _Listed(NamedTuple):
    key: str
    size: int
    modified: datetime


@dataclass
class S3Partition(InputPartition):
    """The objects one task reads, in listing order."""

    bucket: str
    objects: List[_Listed]


def _hidden(relative: str) -> bool:
    """Spark's rule for files it skips: a path part starting with '.' or '_' (not k=v)."""
    return any(
        part.startswith(".") or (part.startswith("_") and "=" not in part)
        or part.endswith("._COPYING_")
        for part in relative.split("/")
    )


def _list(target: Target, *, recursive: bool, glob: Optional["re.Pattern"]) -> List[_Listed]:
    """Every visible object under the target, paginated; S3Error names what failed."""
    client = target.client()
    directory = target.directory
    kwargs = {"Bucket": target.bucket, "Prefix": directory}
    if not recursive:
        kwargs["Delimiter"] = "/"
    found, anything = [], False
    try:
        for page in client.get_paginator("list_objects_v2").paginate(**kwargs):
            anything = anything or bool(page.get("Contents") or page.get("CommonPrefixes"))
            for obj in page.get("Contents", ()):
                relative = obj["Key"][len(directory):]
                name = relative.rpartition("/")[2]
                if (not name or obj["Size"] == 0 or _hidden(relative)
                        or (glob is not None and not glob.fullmatch(name))):
                    continue
                found.append(_Listed(obj["Key"], obj["Size"], obj["LastModified"]))
        if not anything and target.key and not target.key.endswith("/"):
            return _single_object(client, target, glob)
    except S3Error:
        raise
    except Exception as e:
        raise S3Error(
            f"{NAME}: cannot list s3://{target.bucket}/{directory}: "
            + s3_reason(e, target.bucket, directory or None, target.s3)
        ) from e
    if not anything:
        raise S3Error(
            f"{NAME}: path not found: no object under s3://{target.bucket}/{directory} "
            "(S3 keys are case-sensitive; check the path option)"
        )
    return found


def _single_object(client, target: Target, glob) -> List[_Listed]:
    """The path names one object, as binaryFile reads a single file."""
    try:
        head = client.head_object(Bucket=target.bucket, Key=target.key)
    except Exception as e:
        if error_status(e)[1] == 404:
            raise S3Error(
                f"{NAME}: path not found: no object at {target.path} and none under "
                f"s3://{target.bucket}/{target.directory} (S3 keys are case-sensitive)"
            ) from e
        raise
    name = target.key.rpartition("/")[2]
    if head["ContentLength"] == 0 or (glob is not None and not glob.fullmatch(name)):
        return []
    return [_Listed(target.key, head["ContentLength"], head["LastModified"])]


def _split(bucket: str, objects: List[_Listed], max_keys: int, max_bytes: int) -> List[S3Partition]:
    """Consecutive runs of at most ``max_keys`` objects and ``max_bytes`` bytes."""
    partitions, current, size = [], [], 0
    for obj in objects:
        if current and (len(current) >= max_keys or size + obj.size > max_bytes):
            partitions.append(S3Partition(bucket, current))
            current, size = [], 0
        current.append(obj)
        size += obj.size
    if current:
        partitions.append(S3Partition(bucket, current))
    return partitions


def _backoff(attempt: int) -> None:
    """Full-jitter exponential backoff: about 0.1 s, 0.2 s, 0.4 s ... at most 5 s."""
    time.sleep(random.uniform(0.5, 1.0) * min(5.0, 0.1 * 2 ** (attempt - 1)))


class _Fetched(NamedTuple):
    obj: _Listed
    content: Optional[bytes]
    modified: datetime
    reason: Optional[str]  # why content is NULL


def _get(client, target: Target, bucket: str, obj: _Listed) -> _Fetched:
    """One object's bytes; a vanished or forbidden object is a row error, not a failure.

    botocore retries the request itself; a body cut off while streaming is retried
    here, and so is a missing key (a listing may run ahead of a store's replication).
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            response = client.get_object(Bucket=bucket, Key=obj.key)
            return _Fetched(obj, response["Body"].read(), response.get("LastModified",
                            obj.modified), None)
        except Exception as e:
            code, status = error_status(e)
            if code in ("NoSuchKey", "404") or status == 404:
                if attempt < _VANISHED_TRIES:
                    _backoff(attempt)
                    continue
                return _Fetched(obj, None, obj.modified,
                                f"s3://{bucket}/{obj.key} vanished between listing and reading "
                                f"({code or status})")
            if status == 403:
                return _Fetched(obj, None, obj.modified,
                                s3_reason(e, bucket, obj.key, target.s3))
            if type(e).__name__ in _STREAM_ERRORS and attempt < target.max_attempts:
                _backoff(attempt)
                continue
            raise S3Error(
                f"{NAME}: cannot read s3://{bucket}/{obj.key} in {target.max_attempts} tries "
                f"(option maxAttempts): {s3_reason(e, bucket, obj.key, target.s3)}"
            ) from e


def _fetch_in_order(client, target: Target, partition: S3Partition,
                    concurrency: int) -> Iterator[_Fetched]:
    """GET the partition's objects with at most ``concurrency`` requests in flight, in order."""
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="mxsql-s3")
    pending = iter(partition.objects)
    window = deque()
    try:
        for obj in islice(pending, concurrency):
            window.append(pool.submit(_get, client, target, partition.bucket, obj))
        while window:
            fetched = window.popleft().result()
            for obj in islice(pending, 1):
                window.append(pool.submit(_get, client, target, partition.bucket, obj))
            yield fetched
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class S3Reader(DataSourceReader):
    """Lists on the driver when the query is planned; GETs in the tasks."""

    def __init__(self, target: Target, options: S3Options, settings: Settings,
                 schema: StructType):
        self.target = target
        self.recursive = options.recursive_file_lookup
        self.glob = options.path_glob_filter
        self.max_keys = options.max_keys_per_partition
        self.max_bytes = options.max_bytes_per_partition
        self.concurrency = options.max_concurrent_requests
        self.error_column = options.error_column
        self.settings = settings
        self.schema = schema

    def partitions(self) -> List[S3Partition]:
        started = time.monotonic()
        objects = _list(self.target, recursive=self.recursive, glob=self.glob)
        partitions = _split(self.target.bucket, objects, self.max_keys, self.max_bytes)
        _log.info("listed %d objects under %s in %.2f s: %d partitions", len(objects),
                  self.target.path, time.monotonic() - started, len(partitions))
        return partitions

    def read(self, partition: S3Partition) -> Iterator[pa.RecordBatch]:
        from pyspark.sql.pandas.types import to_arrow_schema

        if partition is None or not getattr(partition, "objects", None):
            return  # Spark's single empty partition for an empty listing
        on_error = self.settings.for_task().on_error
        schema = to_arrow_schema(self.schema, timezone="UTC")
        client = self.target.client(self.concurrency)
        rows: List[_Fetched] = []
        size, failed = 0, 0
        for fetched in _fetch_in_order(client, self.target, partition, self.concurrency):
            if fetched.reason is not None:
                failed += 1
                self._row_error(fetched, on_error, failed)
            rows.append(fetched)
            size += len(fetched.content or b"")
            if len(rows) >= _BATCH_ROWS or size >= _BATCH_BYTES:
                yield self._batch(rows, schema)
                rows, size = [], 0
        if rows:
            yield self._batch(rows, schema)
        if failed > _ROW_WARNINGS:
            _log.warning("%d objects of this task (%d more than shown) have NULL content",
                         failed, failed - _ROW_WARNINGS)

    def _row_error(self, fetched: _Fetched, on_error: str, count: int) -> None:
        if on_error == "fail":
            raise RowError(
                f"{NAME}: {fetched.reason} ({_ON_ERROR}=fail; set it to null to get "
                "a row with NULL content instead)"
            )
        if count <= _ROW_WARNINGS:
            _log.warning("%s; its row has NULL content (%s=null)", fetched.reason, _ON_ERROR)

    def _batch(self, rows: List[_Fetched], schema: pa.Schema) -> pa.RecordBatch:
        bucket = self.target.bucket
        columns = [
            pa.array([f"s3://{bucket}/{r.obj.key}" for r in rows], pa.string()),
            pa.array([r.modified for r in rows], pa.timestamp("us", tz="UTC")),
            pa.array([len(r.content) if r.content is not None else r.obj.size for r in rows],
                     pa.int64()),
            pa.array([r.content for r in rows], pa.binary()),
        ]
        if self.error_column:
            columns.append(pa.array([r.reason for r in rows], pa.string()))
        return pa.RecordBatch.from_arrays(columns, schema=schema)
