"""Writing ``mxsql_s3``: each task uploads one Parquet part under ``_temporary/``; the
driver's commit moves the parts into place and writes ``_SUCCESS`` last, and a failed job
removes its temporaries, so readers never see a half-written result as a finished one.
"""

import json
import os
import tempfile
import uuid
from dataclasses import dataclass
from typing import Iterable, Iterator, List, Optional

import pyarrow as pa
from pyspark.sql.datasource import DataSourceArrowWriter, WriterCommitMessage
from pyspark.sql.types import StructType

from mxsql.udfs import logs
from mxsql.udfs.errors import S3Error
from mxsql.udfs.s3.client import s3_reason
from mxsql.udfs.s3.options import NAME, Target

__all__ = ["S3Writer"]

_log = logs.logger("mxsql.s3")


@dataclass
class _Part(WriterCommitMessage):
    """A task's Parquet part, uploaded under the job's temporary prefix."""

    partition: int
    temporary: Optional[str]  # None: the task had no rows
    rows: int


class S3Writer(DataSourceArrowWriter):
    """Each task uploads one temporary part; commit() publishes them, abort() removes them."""

    def __init__(self, target: Target, schema: StructType, overwrite: bool):
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
                              + s3_reason(e, self.target.bucket, key, self.target.s3)
                              ) from e
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
                          + s3_reason(e, target.bucket, target.directory, target.s3)
                          ) from e
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
                          + s3_reason(e, target.bucket, self._temporary, target.s3)
                          ) from e
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
