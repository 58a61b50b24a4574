"""The errors mxsql raises, in a small hierarchy users can catch."""

__all__ = [
    "MxsqlError", "ConfigError", "ArgumentError", "ModelLoadError", "InferenceError",
    "RowError", "S3Error", "CatalogInUseError",
]


class MxsqlError(Exception):
    """Base class of every error mxsql raises on purpose."""


class ConfigError(MxsqlError, ValueError):
    """A ``spark.mxsql.*`` setting is unknown, malformed, or not allowed to change."""


class ArgumentError(MxsqlError, ValueError):
    """A SQL function was called with an argument it cannot take (``mx_top_k`` with k < 1)."""


class ModelLoadError(MxsqlError):
    """A model's artifacts cannot be fetched, verified or loaded."""


class InferenceError(MxsqlError):
    """The network failed on input that decoded fine (the model, not the image, refused it)."""


class RowError(MxsqlError):
    """One input row could not be classified and ``spark.mxsql.onError=fail``."""


class S3Error(MxsqlError):
    """S3 refused or lacks what a query needs: a bucket, a listing, an object, a commit."""


class CatalogInUseError(MxsqlError):
    """The embedded metastore under ``$MXSQL_HOME`` is open in another process."""
