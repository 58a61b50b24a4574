"""The SQL functions mxsql offers, and ``register_all`` that puts them in a session."""

from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Tuple

import pyarrow as pa

from mxsql.registry.config import settings_from_session
from mxsql.udfs import functions, s3source
from mxsql.udfs.config import Settings

__all__ = ["SqlFunction", "FUNCTIONS", "register_all"]


@dataclass(frozen=True)
class SqlFunction:
    """One SQL function: its name, call forms, result type and the worker body behind it."""

    name: str
    signature: str
    returns: pa.DataType
    doc: str
    body: Callable


FUNCTIONS: Tuple[SqlFunction, ...] = (
    SqlFunction(
        "mx_classify", "mx_classify(content [, model [, path]])", functions.CLASS_TYPE,
        "Top-1 class of an image: STRUCT<label, probability, class_index>; NULL when the "
        "image cannot be decoded. model names a configured model (default 'default'); "
        "path only makes onError=fail messages name the file.",
        functions.classify,
    ),
    SqlFunction(
        "mx_top_k", "mx_top_k(content, k [, model [, path]])", functions.TOP_K_TYPE,
        "The k most probable classes, best first: ARRAY<STRUCT<label, probability, "
        "class_index>>; NULL when the image cannot be decoded or k is NULL.",
        functions.top_k,
    ),
    SqlFunction(
        "mx_image_info", "mx_image_info(content)", functions.INFO_TYPE,
        "Format, width, height and mode of an image without running a model, and in "
        "error the reason it cannot be decoded (NULL when it can).",
        functions.image_info,
    ),
)


def _arrow_udf(fn: SqlFunction, settings: Settings):
    from pyspark.sql.functions import arrow_udf
    from pyspark.sql.pandas.types import from_arrow_type

    body = fn.body  # a function of an importable module: pickled by reference

    def run(batches: Iterator[pa.Array]) -> Iterator[pa.Array]:
        return body(settings, batches)

    run.__name__ = fn.name
    run.__doc__ = fn.doc
    return arrow_udf(run, from_arrow_type(fn.returns))


def register_all(spark, *, settings: Optional[Settings] = None,
                 fixed_by_server: bool = False) -> Settings:
    """Register every mx function in ``spark`` and return the settings they captured.

    Cheap: it validates the ``spark.mxsql.*`` keys (raising ConfigError naming a bad
    key) but loads no model and imports no MXNet; models load in the workers on first
    use. Call it again after changing model settings to re-capture them. It also
    registers the ``mxsql_s3`` data source with the session's S3 settings, which its
    ``endpoint`` and ``profile`` options may not change when ``fixed_by_server``.

    Examples
    --------
    >>> from mxsql.registry import register_all
    >>> register_all(spark)  # doctest: +SKIP
    >>> spark.sql("SELECT path, mx_classify(content).label FROM images")  # doctest: +SKIP
    """
    if settings is None:
        settings = settings_from_session(spark)
    for fn in FUNCTIONS:
        spark.udf.register(fn.name, _arrow_udf(fn, settings))
    spark.dataSource.register(s3source.data_source(settings, fixed_by_server=fixed_by_server))
    return settings
