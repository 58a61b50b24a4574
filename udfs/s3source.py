"""``mxsql_s3``: S3 objects as binaryFile rows, and query results to S3 as Parquet, via boto3.

Spark's ``s3a://`` needs hadoop-aws jars that the pip package lacks; this Python data
source needs only boto3. Each query lists the prefix on the driver (paginated,
filtered like binaryFile) and splits the keys into partitions; each task GETs its
objects a bounded number at a time. Writing puts each task's Parquet part
under ``_temporary/``; the driver's commit moves the parts into place and writes
``_SUCCESS`` last, and a failed job removes its temporaries, so readers never see a
half-written result as a finished one.

The session's ``spark.mxsql.*`` settings travel in the registered class (see
``data_source``), because the planner and the tasks run in Python processes that
have no session to ask.
"""

import json
import os
import random
import re
import tempfile
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Tuple

import pyarrow as pa
from pyspark.sql.datasource import (
    DataSource,
    DataSourceArrowWriter,
    DataSourceReader,
    InputPartition,
    WriterCommitMessage,
)
from pyspark.sql.types import (
    BinaryType, LongType, StringType, StructField, StructType, TimestampType,
)

from mxsql.udfs import artifacts, logs
from mxsql.udfs.config import (
    S3Settings, Settings, nonempty_text, optional_text, positive_int,
)
from mxsql.udfs.errors import ConfigError, RowError, S3Error

__all__ = ["NAME", "SCHEMA", "OPTIONS", "Option", "S3DataSource", "S3Partition", "data_source"]

NAME = "mxsql_s3"

SCHEMA = StructType([
    StructField("path", StringType(), True),
    StructField("modificationTime", TimestampType(), True),
    StructField("length", LongType(), True),
    StructField("content", BinaryType(), True),
])

_log = logs.logger("mxsql.s3")

_BATCH_ROWS = 64
_BATCH_BYTES = 64 << 20
_ROW_WARNINGS = 5  # per task; the rest are counted in one summary line
_VANISHED_TRIES = 3
_STREAM_ERRORS = ("ResponseStreamingError", "IncompleteReadError", "ReadTimeoutError",
                  "ConnectionClosedError", "ProtocolError")


# --------------------------------------------------------------------------- options

def _boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError("must be true or false")
    return lowered == "true"


_BYTE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
               "g": 1 << 30, "gb": 1 << 30}


def _byte_size(value: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", value)
    unit = match.group(2).lower() if match else None
    if unit not in _BYTE_UNITS:
        raise ValueError("must be a size in bytes such as 134217728, 128m or 1g")
    number = int(match.group(1)) * _BYTE_UNITS[unit]
    if number <= 0:
        raise ValueError("must be more than 0 bytes")
    return number


def _column_name(value: str) -> str:
    name = nonempty_text(value)
    if name.lower() in {f.name.lower() for f in SCHEMA.fields}:
        raise ValueError("must differ from binaryFile's columns")
    return name


def _glob_regex(pattern: str) -> "re.Pattern":
    """A file-name glob as Hadoop's GlobFilter reads it: ``* ? [abc] [!abc] {a,b} \\x``."""
    out, i, depth = [], 0, 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 1
        elif ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1:i + 2] in ("!", "^") else i + 1)
            if end < 0:
                raise ValueError(f"unclosed '[' in glob {pattern!r}")
            body = pattern[i + 1:end]
            if body[:1] in ("!", "^"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        elif ch == "{":
            out.append("(?:")
            depth += 1
        elif ch == "}" and depth:
            out.append(")")
            depth -= 1
        elif ch == "," and depth:
            out.append("|")
        else:
            out.append(re.escape(ch))
        i += 1
    if depth:
        raise ValueError(f"unclosed '{{' in glob {pattern!r}")
    return re.compile("".join(out), re.DOTALL)


def _glob(value: str) -> "re.Pattern":
    return _glob_regex(nonempty_text(value))


@dataclass(frozen=True)
class Option:
    """One option of the data source; Spark hands its name over lower-cased."""

    name: str
    default: Optional[str]
    parse: Callable[[str], object]
    doc: str
    read: bool = True
    write: bool = True


OPTIONS: Tuple[Option, ...] = (
    Option("path", None, nonempty_text,
           "s3://BUCKET/PREFIX/ to read every object under, or one object's key; for "
           "writing, the prefix the Parquet parts go under."),
    Option("pathGlobFilter", None, _glob,
           "Only read objects whose file name (after the last '/') matches this glob, as "
           "binaryFile's option: * ? [abc] {png,jpg}.", write=False),
    Option("recursiveFileLookup", "true", _boolean,
           "true: every key under the prefix; false: only keys directly under it.",
           write=False),
    Option("maxKeysPerPartition", "1000", positive_int,
           "At most this many objects per Spark partition (task).", write=False),
    Option("maxBytesPerPartition", "128m", _byte_size,
           "At most this many bytes of objects per partition (a larger object gets its own).",
           write=False),
    Option("maxConcurrentRequests", "16", positive_int,
           "GET requests in flight at once in each task.", write=False),
    Option("maxAttempts", "5", positive_int,
           "Tries per request, with exponential backoff, for throttling, server errors and "
           "dropped connections."),
    Option("errorColumn", None, _column_name,
           "Add a nullable STRING column of this name with the reason a row's content is "
           "NULL; unset = binaryFile's schema exactly.", write=False),
    Option("endpoint", None, optional_text,
           "S3 endpoint URL; unset = spark.mxsql.s3.endpoint."),
    Option("region", None, optional_text, "AWS region; unset = spark.mxsql.s3.region."),
    Option("profile", None, optional_text, "AWS profile; unset = spark.mxsql.s3.profile."),
)
_BY_LOWER = {o.name.lower(): o for o in OPTIONS}
_PERSISTENT = (
    f"A persistent CREATE TABLE ... USING {NAME} cannot work: Spark 4.3 stores it in the "
    "metastore but hands a Python data source none of its OPTIONS when it is read. Use "
    f"CREATE TEMPORARY VIEW name USING {NAME} OPTIONS (path 's3://BUCKET/PREFIX/', ...) "
    "in each session"
)


def _parse_options(options, *, writing: bool) -> Dict[str, object]:
    """Parsed option values by their documented names; ConfigError names a bad option.

    Values are never echoed: a mistaken option could hold a secret.
    """
    import difflib

    values: Dict[str, object] = {}
    given = {str(k).lower(): str(v) for k, v in dict(options).items()}
    for lower in given:
        option = _BY_LOWER.get(lower)
        if option is None:
            close = difflib.get_close_matches(lower, list(_BY_LOWER), n=1, cutoff=0.6)
            hint = f"; did you mean '{_BY_LOWER[close[0]].name}'?" if close else ""
            raise ConfigError(
                f"{NAME}: unknown option '{lower}'{hint} (known: "
                + ", ".join(o.name for o in OPTIONS) + "). Credentials are never options: "
                "they come from boto3's default chain or spark.mxsql.s3.profile"
            )
        if not (option.write if writing else option.read):
            raise ConfigError(f"{NAME}: option '{option.name}' applies to reading only")
    for option in OPTIONS:
        text = given.get(option.name.lower(), option.default)
        try:
            values[option.name] = None if text is None else option.parse(text)
        except ValueError as e:
            reason = str(e) if "must" in str(e) or "glob" in str(e) else "is not valid"
            raise ConfigError(f"{NAME}: option '{option.name}' {reason}") from None
    if values["path"] is None:
        raise ConfigError(
            f"{NAME} needs a path: .load('s3://BUCKET/PREFIX/') or OPTIONS (path "
            f"'s3://BUCKET/PREFIX/'). {_PERSISTENT}"
        )
    return values


@dataclass(frozen=True)
class _Target:
    """Where a read or write goes, and how to reach it."""

    path: str
    bucket: str
    key: str  # as given: a prefix, or one object's key
    s3: S3Settings
    max_attempts: int

    @property
    def directory(self) -> str:
        """The key prefix that ends in '/' (empty for the bucket's root)."""
        return self.key if not self.key or self.key.endswith("/") else self.key + "/"

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def client(self, connections: int = 10):
        return artifacts.s3_client(self.s3, max_attempts=self.max_attempts,
                                   max_connections=connections)


def _target(values: Dict[str, object], settings: Settings) -> _Target:
    path = str(values["path"])
    try:
        bucket, key = artifacts.split_s3_uri(path)
    except ValueError:
        raise ConfigError(
            f"{NAME}: path {path!r} is not an S3 URI: expected s3://BUCKET/PREFIX/"
        ) from None
    s3 = S3Settings(
        endpoint=values["endpoint"] or settings.s3.endpoint,
        region=values["region"] or settings.s3.region,
        profile=values["profile"] or settings.s3.profile,
    )
    return _Target(path, bucket, key, s3, int(values["maxAttempts"]))


# --------------------------------------------------------------------------- reading

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


def _list(target: _Target, *, recursive: bool, glob: Optional["re.Pattern"]) -> List[_Listed]:
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
            + artifacts.s3_reason(e, target.bucket, directory or None, target.s3)
        ) from None
    if not anything:
        raise S3Error(
            f"{NAME}: path not found: no object under s3://{target.bucket}/{directory} "
            "(S3 keys are case-sensitive; check the path option)"
        )
    return found


def _single_object(client, target: _Target, glob) -> List[_Listed]:
    """The path names one object, as binaryFile reads a single file."""
    try:
        head = client.head_object(Bucket=target.bucket, Key=target.key)
    except Exception as e:
        if getattr(e, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            raise S3Error(
                f"{NAME}: path not found: no object at {target.path} and none under "
                f"s3://{target.bucket}/{target.directory} (S3 keys are case-sensitive)"
            ) from None
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


def _status(error: Exception) -> Tuple[str, Optional[int]]:
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return "", None
    return (str(response.get("Error", {}).get("Code", "")),
            response.get("ResponseMetadata", {}).get("HTTPStatusCode"))


def _get(client, target: _Target, bucket: str, obj: _Listed) -> _Fetched:
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
            code, status = _status(e)
            if code in ("NoSuchKey", "404") or status == 404:
                if attempt < _VANISHED_TRIES:
                    _backoff(attempt)
                    continue
                return _Fetched(obj, None, obj.modified,
                                f"s3://{bucket}/{obj.key} vanished between listing and reading "
                                f"({code or status})")
            if status == 403:
                return _Fetched(obj, None, obj.modified,
                                artifacts.s3_reason(e, bucket, obj.key, target.s3))
            if type(e).__name__ in _STREAM_ERRORS and attempt < target.max_attempts:
                _backoff(attempt)
                continue
            raise S3Error(
                f"{NAME}: cannot read s3://{bucket}/{obj.key} in {target.max_attempts} tries "
                f"(option maxAttempts): {artifacts.s3_reason(e, bucket, obj.key, target.s3)}"
            ) from None


def _fetch_in_order(client, target: _Target, partition: S3Partition,
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


class _Reader(DataSourceReader):
    """Lists on the driver when the query is planned; GETs in the tasks."""

    def __init__(self, target: _Target, values: Dict[str, object], settings: Settings,
                 schema: StructType):
        self.target = target
        self.recursive = bool(values["recursiveFileLookup"])
        self.glob = values["pathGlobFilter"]
        self.max_keys = int(values["maxKeysPerPartition"])
        self.max_bytes = int(values["maxBytesPerPartition"])
        self.concurrency = int(values["maxConcurrentRequests"])
        self.error_column = values["errorColumn"]
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
                f"{NAME}: {fetched.reason} (spark.mxsql.onError=fail; set it to null to get "
                "a row with NULL content instead)"
            )
        if count <= _ROW_WARNINGS:
            _log.warning("%s; its row has NULL content (spark.mxsql.onError=null)",
                         fetched.reason)

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


# --------------------------------------------------------------------------- writing

@dataclass
class _Part(WriterCommitMessage):
    """A task's Parquet part, uploaded under the job's temporary prefix."""

    partition: int
    temporary: Optional[str]  # None: the task had no rows
    rows: int


class _Writer(DataSourceArrowWriter):
    """Each task uploads one temporary part; commit() publishes them, abort() removes them."""

    def __init__(self, target: _Target, schema: StructType, overwrite: bool):
        self.target = target
        self.schema = schema
        self.overwrite = overwrite
        self.job = uuid.uuid4().hex

    @property
    def _temporary(self) -> str:
        return f"{self.target.directory}_temporary/{self.job}/"

    def write(self, iterator: Iterator[pa.RecordBatch]) -> _Part:
        import pyarrow.parquet as pq
        from pyspark import TaskContext

        context = TaskContext.get()
        partition, attempt = context.partitionId(), context.attemptNumber()
        rows = 0
        with tempfile.TemporaryDirectory(prefix="mxsql-s3-") as folder:
            local = os.path.join(folder, "part.parquet")
            writer = None
            try:
                for batch in iterator:
                    if batch.num_rows == 0:
                        continue
                    if writer is None:
                        writer = pq.ParquetWriter(local, batch.schema)
                    writer.write_batch(batch)
                    rows += batch.num_rows
            finally:
                if writer is not None:
                    writer.close()
            if writer is None:
                return _Part(partition, None, 0)
            key = f"{self._temporary}part-{partition:05d}-{attempt}.parquet"
            try:
                self.target.client().upload_file(local, self.target.bucket, key)
            except Exception as e:
                raise S3Error(f"{NAME}: cannot upload {self.target.uri(key)}: "
                              + artifacts.s3_reason(e, self.target.bucket, key, self.target.s3)
                              ) from None
        return _Part(partition, key, rows)

    def commit(self, messages: List[Optional[_Part]]) -> None:
        """Publish the parts: drop the old ``_SUCCESS`` (and, overwriting, the old output),
        copy each part to its final key, remove the temporaries, write ``_SUCCESS`` last."""
        target, client = self.target, self.target.client()
        parts = sorted((m for m in messages if m is not None and m.temporary),
                       key=lambda m: m.partition)
        success = target.directory + "_SUCCESS"
        try:
            _delete(client, target.bucket, [success])
            if self.overwrite:
                _delete(client, target.bucket, [
                    k for k in _keys(client, target.bucket, target.directory)
                    if not k.startswith(target.directory + "_temporary/")
                ])
            files = []
            for part in parts:
                final = f"{target.directory}part-{part.partition:05d}-{self.job}.parquet"
                client.copy({"Bucket": target.bucket, "Key": part.temporary}, target.bucket,
                            final)
                files.append(final)
            if not parts:
                files.append(self._empty_part(client))
            _delete(client, target.bucket, _keys(client, target.bucket, self._temporary))
            rows = sum(p.rows for p in parts)
            manifest = {"job": self.job, "rows": rows,
                        "files": [f[len(target.directory):] for f in files]}
            client.put_object(Bucket=target.bucket, Key=success,
                              Body=json.dumps(manifest).encode())
        except S3Error:
            raise
        except Exception as e:
            raise S3Error(f"{NAME}: cannot commit the write to {target.path}: "
                          + artifacts.s3_reason(e, target.bucket, target.directory, target.s3)
                          ) from None
        _log.info("wrote %d rows in %d Parquet files to %s", rows, len(files), target.path)

    def _empty_part(self, client) -> str:
        """A job without rows still leaves one file that carries the schema."""
        import pyarrow.parquet as pq
        from pyspark.sql.pandas.types import to_arrow_schema

        key = f"{self.target.directory}part-00000-{self.job}.parquet"
        with tempfile.TemporaryDirectory(prefix="mxsql-s3-") as folder:
            local = os.path.join(folder, "part.parquet")
            pq.write_table(to_arrow_schema(self.schema, timezone="UTC").empty_table(), local)
            client.upload_file(local, self.target.bucket, key)
        return key

    def abort(self, messages: List[Optional[_Part]]) -> None:
        """Remove every temporary part of this job; published output stays as it was."""
        target, client = self.target, self.target.client()
        try:
            _delete(client, target.bucket, _keys(client, target.bucket, self._temporary))
        except S3Error:
            raise
        except Exception as e:
            raise S3Error(f"{NAME}: the write to {target.path} failed, and so did removing "
                          f"its temporary files under {target.uri(self._temporary)}: "
                          + artifacts.s3_reason(e, target.bucket, self._temporary, target.s3)
                          ) from None
        _log.warning("the write to %s failed: its temporary files are removed and the "
                     "output is as it was before", target.path)


def _keys(client, bucket: str, prefix: str) -> List[str]:
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", ()))
    return keys


def _delete(client, bucket: str, keys: Iterable[str]) -> None:
    keys = list(keys)
    for start in range(0, len(keys), 1000):
        chunk = [{"Key": k} for k in keys[start:start + 1000]]
        response = client.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})
        errors = response.get("Errors") or []
        if errors:
            first = errors[0]
            raise S3Error(f"{NAME}: cannot delete s3://{bucket}/{first.get('Key')}: "
                          f"{first.get('Code')} {first.get('Message', '')}".rstrip())


# --------------------------------------------------------------------------- the source

class S3DataSource(DataSource):
    """``mxsql_s3``: read S3 objects with binaryFile's schema; write Parquet to S3.

    Reading skips what binaryFile skips: empty objects and names starting with '.' or
    '_'. An object that vanishes between listing and reading, or that S3 refuses to
    serve, is a row error under ``spark.mxsql.onError``: ``fail`` fails the task naming
    s3://BUCKET/KEY; ``null`` keeps the row (the listing's length and time) with NULL
    content, logs the reason as a warning, and puts it in the ``errorColumn`` column
    when that option names one. A missing bucket, a refused listing or a request that
    fails past ``maxAttempts`` fails the query. Writing takes mode ``overwrite`` or
    ``append`` (Spark refuses the others for Python data sources); the output is
    complete when ``_SUCCESS`` exists, and that file lists its parts.

    Examples
    --------
    >>> spark.read.format("mxsql_s3").option("pathGlobFilter", "*.png") \\
    ...     .load("s3://bucket/images/")  # doctest: +SKIP
    >>> spark.sql("CREATE TEMPORARY VIEW imgs USING mxsql_s3 "
    ...           "OPTIONS (path 's3://bucket/images/', pathGlobFilter '*.png')")  # doctest: +SKIP
    >>> predictions.write.format("mxsql_s3").mode("overwrite") \\
    ...     .save("s3://bucket/predictions/")  # doctest: +SKIP
    """

    settings = Settings()  # the session's, in the class ``data_source`` makes

    @classmethod
    def name(cls) -> str:
        return NAME

    def schema(self) -> StructType:
        if "provider" in self.options:  # Spark's table properties: a CREATE TABLE
            raise ConfigError(_PERSISTENT)
        error_column = _parse_options(self.options, writing=False)["errorColumn"]
        if not error_column:
            return SCHEMA
        return StructType(SCHEMA.fields + [StructField(error_column, StringType(), True)])

    def reader(self, schema: StructType) -> _Reader:
        values = _parse_options(self.options, writing=False)
        expected = self.schema()
        if [(f.name.lower(), f.dataType) for f in schema.fields] != \
                [(f.name.lower(), f.dataType) for f in expected.fields]:
            raise ConfigError(
                f"{NAME} reads objects as ({expected.simpleString()[7:-1]}); this table "
                f"declares ({schema.simpleString()[7:-1]}), which it can only be written to. "
                "Drop the declared columns to read it"
            )
        return _Reader(_target(values, self.settings), values, self.settings, expected)

    def writer(self, schema: StructType, overwrite: bool) -> _Writer:
        values = _parse_options(self.options, writing=True)
        target = _target(values, self.settings)
        if not target.directory:
            # Overwrite deletes what is under the prefix: never a whole bucket.
            raise S3Error(f"{NAME}: cannot write to the root of bucket '{target.bucket}': give "
                          f"a prefix, e.g. path 's3://{target.bucket}/predictions/'")
        return _Writer(target, schema, overwrite)


def data_source(settings: Settings) -> type:
    """The ``mxsql_s3`` class to register in a session, carrying its ``settings``.

    The class is made here, not imported, so that Spark pickles it by value with the
    session's S3 endpoint, region, profile and onError policy inside.
    """

    class SessionS3DataSource(S3DataSource):
        pass

    SessionS3DataSource.settings = settings
    return SessionS3DataSource
