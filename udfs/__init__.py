"""Code that runs in Spark's Python workers: decoding, model loading and the UDF bodies.

Nothing here imports driver code (``mxsql.registry``), py4j or MXNet at import time.
"""

from mxsql.udfs.config import ModelSpec, Settings, parse_settings
from mxsql.udfs.errors import (
    ArgumentError, ConfigError, InferenceError, ModelLoadError, MxsqlError, RowError, S3Error,
)

__all__ = [
    "ModelSpec", "Settings", "parse_settings",
    "MxsqlError", "ConfigError", "ArgumentError", "ModelLoadError", "InferenceError",
    "RowError", "S3Error",
]
