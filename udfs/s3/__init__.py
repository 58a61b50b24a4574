"""S3 through boto3: clients and S3's errors in words (``client``, used by model artifacts
too), and the ``mxsql_s3`` data source (``source``, with its options in ``options``, its
reader in ``reader`` and its writer in ``writer``).

Nothing is imported here: ``client`` must stay importable without pyspark, so import the
module you need, e.g. ``from mxsql.udfs.s3.source import data_source``.
"""

__all__ = ["client", "options", "reader", "source", "writer"]
