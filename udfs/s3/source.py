"""``mxsql_s3``: S3 objects as binaryFile rows, and query results to S3 as Parquet, via boto3.

Spark's ``s3a://`` needs hadoop-aws jars that the pip package lacks; this Python data
source needs only boto3. Each query lists the prefix on the driver (paginated,
filtered like binaryFile) and splits the keys into partitions; each task GETs its
objects a bounded number at a time (``reader``). Writing puts each task's Parquet
part under ``_temporary/`` and the driver's commit publishes them (``writer``).
Options, the schema and the target live in ``options``; boto3 clients and S3's
errors in ``client``.

The session's ``spark.mxsql.*`` settings travel in the registered class (see
``data_source``), because the planner and the tasks run in Python processes that
have no session to ask.
"""

from pyspark.sql.datasource import DataSource
from pyspark.sql.types import StringType, StructField, StructType

from mxsql.udfs.config import Settings
from mxsql.udfs.errors import ConfigError, S3Error
from mxsql.udfs.s3.options import (
    NAME, PERSISTENT, SCHEMA, S3Options, Target, check_server_policy, parse_options,
)
from mxsql.udfs.s3.reader import S3Reader
from mxsql.udfs.s3.writer import S3Writer

__all__ = ["S3DataSource", "data_source"]


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
    complete when ``_SUCCESS`` exists, and that file lists its parts. Under
    mxsql-thriftserver an ``endpoint`` or ``profile`` option that differs from the
    server's ``spark.mxsql.s3.*`` is refused.

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
    fixed_by_server = False  # True: endpoint and profile options are the server's policy

    @classmethod
    def name(cls) -> str:
        return NAME

    def _options(self, *, writing: bool) -> S3Options:
        options = parse_options(self.options, writing=writing)
        if self.fixed_by_server:
            check_server_policy(options, self.settings.s3)
        return options

    def schema(self) -> StructType:
        if "provider" in self.options:  # Spark's table properties: a CREATE TABLE
            raise ConfigError(PERSISTENT)
        error_column = self._options(writing=False).error_column
        if not error_column:
            return SCHEMA
        return StructType(SCHEMA.fields + [StructField(error_column, StringType(), True)])

    def reader(self, schema: StructType) -> S3Reader:
        options = self._options(writing=False)
        expected = self.schema()
        if [(f.name.lower(), f.dataType) for f in schema.fields] != \
                [(f.name.lower(), f.dataType) for f in expected.fields]:
            raise ConfigError(
                f"{NAME} reads objects as ({expected.simpleString()[7:-1]}); this table "
                f"declares ({schema.simpleString()[7:-1]}), which it can only be written to. "
                "Drop the declared columns to read it"
            )
        return S3Reader(Target.of(options, self.settings), options, self.settings, expected)

    def writer(self, schema: StructType, overwrite: bool) -> S3Writer:
        target = Target.of(self._options(writing=True), self.settings)
        if not target.directory:
            # Overwrite deletes what is under the prefix: never a whole bucket.
            raise S3Error(f"{NAME}: cannot write to the root of bucket '{target.bucket}': give "
                          f"a prefix, e.g. path 's3://{target.bucket}/predictions/'")
        return S3Writer(target, schema, overwrite)


def data_source(settings: Settings, *, fixed_by_server: bool = False) -> type:
    """The ``mxsql_s3`` class to register in a session, carrying its ``settings``.

    The class is made here, not imported, so that Spark pickles it by value with the
    session's S3 endpoint, region, profile and onError policy inside. With
    ``fixed_by_server`` (mxsql-thriftserver), an ``endpoint`` or ``profile`` option may
    only repeat ``settings``: no SQL statement can change a registered class.
    """

    class SessionS3DataSource(S3DataSource):
        pass

    SessionS3DataSource.settings = settings
    SessionS3DataSource.fixed_by_server = fixed_by_server
    return SessionS3DataSource
