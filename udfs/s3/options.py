"""The ``mxsql_s3`` source's name, schema and options, and where a read or write goes.

Options are entries of the config module's key table (``OPTIONS``), parsed with its
parsers into an ``S3Options`` record, and never echoed in errors: a mistaken option
could hold a secret.
"""

import re
from dataclasses import dataclass
from typing import Tuple

from pyspark.sql.types import (
    BinaryType, LongType, StringType, StructField, StructType, TimestampType,
)

from mxsql.udfs.config import (
    S3_KEYS, S3_PREFIX, InvalidValue, Key, S3Settings, Settings, boolean, did_you_mean,
    nonempty_text, optional_text, parse_keys, positive_int, record,
)
from mxsql.udfs.errors import ConfigError
from mxsql.udfs.s3.client import s3_client, split_s3_uri

__all__ = [
    "NAME", "SCHEMA", "PERSISTENT", "OPTIONS", "S3Options", "parse_options",
    "check_server_policy", "Target",
]

NAME = "mxsql_s3"

SCHEMA = StructType([
    StructField("path", StringType(), True),
    StructField("modificationTime", TimestampType(), True),
    StructField("length", LongType(), True),
    StructField("content", BinaryType(), True),
])

PERSISTENT = (
    f"A persistent CREATE TABLE ... USING {NAME} cannot work: Spark 4.3 stores it in the "
    "metastore but hands a Python data source none of its OPTIONS when it is read. Use "
    f"CREATE TEMPORARY VIEW name USING {NAME} OPTIONS (path 's3://BUCKET/PREFIX/', ...) "
    "in each session"
)


_BYTE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
               "g": 1 << 30, "gb": 1 << 30}


def _byte_size(value: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", value)
    unit = match.group(2).lower() if match else None
    if unit not in _BYTE_UNITS:
        raise InvalidValue("must be a size in bytes such as 134217728, 128m or 1g")
    number = int(match.group(1)) * _BYTE_UNITS[unit]
    if number <= 0:
        raise InvalidValue("must be more than 0 bytes")
    return number


def _column_name(value: str) -> str:
    name = nonempty_text(value)
    if name.lower() in {f.name.lower() for f in SCHEMA.fields}:
        raise InvalidValue("must differ from binaryFile's columns")
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
                raise InvalidValue("must be a glob whose every '[' is closed")
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
        raise InvalidValue("must be a glob whose every '{' is closed")
    return re.compile("".join(out), re.DOTALL)


def _glob(value: str) -> "re.Pattern":
    return _glob_regex(nonempty_text(value))


# Spark hands option names over lower-cased; the documented spelling is the entry's name.
OPTIONS: Tuple[Key, ...] = (
    Key("path", "path", nonempty_text, None,
        "s3://BUCKET/PREFIX/ to read every object under, or one object's key; for "
        "writing, the prefix the Parquet parts go under.",
        required=True),
    Key("pathGlobFilter", "path_glob_filter", _glob, None,
        "Only read objects whose file name (after the last '/') matches this glob, as "
        "binaryFile's option: * ? [abc] {png,jpg}.",
        reading_only=True),
    Key("recursiveFileLookup", "recursive_file_lookup", boolean, "true",
        "true: every key under the prefix; false: only keys directly under it.",
        reading_only=True),
    Key("maxKeysPerPartition", "max_keys_per_partition", positive_int, "1000",
        "At most this many objects per Spark partition (task).", reading_only=True),
    Key("maxBytesPerPartition", "max_bytes_per_partition", _byte_size, "128m",
        "At most this many bytes of objects per partition (a larger object gets its own).",
        reading_only=True),
    Key("maxConcurrentRequests", "max_concurrent_requests", positive_int, "16",
        "GET requests in flight at once in each task.", reading_only=True),
    Key("maxAttempts", "max_attempts", positive_int, "5",
        "Tries per request, with exponential backoff, for throttling, server errors and "
        "dropped connections."),
    Key("errorColumn", "error_column", _column_name, None,
        "Add a nullable STRING column of this name with the reason a row's content is "
        "NULL; unset = binaryFile's schema exactly.",
        reading_only=True),
    # The options named as S3_KEYS fields override the session's spark.mxsql.s3.* keys.
    Key("endpoint", "endpoint", optional_text, None,
        f"S3 endpoint URL; unset = {S3_PREFIX}endpoint. On mxsql-thriftserver only that "
        "value is allowed.",
        fixed_by_server=True),
    Key("region", "region", optional_text, None, f"AWS region; unset = {S3_PREFIX}region."),
    Key("profile", "profile", optional_text, None,
        f"AWS profile; unset = {S3_PREFIX}profile. On mxsql-thriftserver only that value "
        "is allowed.",
        fixed_by_server=True),
)
_BY_LOWER = {o.name.lower(): o for o in OPTIONS}


class _S3Options:
    """The parsed options of one ``mxsql_s3`` read or write."""


S3Options = record("S3Options", OPTIONS, _S3Options)


def parse_options(options, *, writing: bool) -> S3Options:
    """The parsed options of a read or write; ConfigError names a bad option.

    Values are never echoed: a mistaken option could hold a secret.
    """
    given = {str(k).lower(): str(v) for k, v in dict(options).items()}
    for lower in given:
        option = _BY_LOWER.get(lower)
        if option is None:
            raise ConfigError(
                f"{NAME}: unknown option '{lower}'"
                + did_you_mean(lower, [o.name for o in OPTIONS]) + " (known: "
                + ", ".join(o.name for o in OPTIONS) + "). Credentials are never options: "
                f"they come from boto3's default chain or {S3_PREFIX}profile"
            )
        if writing and option.reading_only:
            raise ConfigError(f"{NAME}: option '{option.name}' applies to reading only")
    if "path" not in given:
        raise ConfigError(
            f"{NAME} needs a path: .load('s3://BUCKET/PREFIX/') or OPTIONS (path "
            f"'s3://BUCKET/PREFIX/'). {PERSISTENT}"
        )
    return S3Options(**parse_keys(OPTIONS, given, lambda o: o.name.lower(),
                                  label=lambda o: f"{NAME}: option '{o.name}'"))


def check_server_policy(options: S3Options, s3: S3Settings) -> None:
    """Refuse an ``endpoint`` or ``profile`` option that differs from the server's setting.

    Every JDBC user of mxsql-thriftserver runs as the server, with its host's credentials:
    another profile would use other credentials of that host, another endpoint would send
    the server's credentials elsewhere. Values are not echoed (see ``parse_options``).
    """
    for option in OPTIONS:
        given = getattr(options, option.field)
        if option.fixed_by_server and given is not None and given != getattr(s3, option.field):
            key = S3_PREFIX + option.name
            raise ConfigError(
                f"{NAME}: option '{option.name}' is fixed by the server: on mxsql-thriftserver "
                f"leave it out or give the server's own {key}, not another value. The "
                f"operator changes it by restarting the server with --conf {key}=..."
            )


@dataclass(frozen=True)
class Target:
    """Where a read or write goes, and how to reach it."""

    path: str
    bucket: str
    key: str  # as given: a prefix, or one object's key
    s3: S3Settings
    max_attempts: int

    @classmethod
    def of(cls, options: S3Options, settings: Settings) -> "Target":
        """The target of parsed options; unset S3 options fall back to the session's."""
        path = options.path
        try:
            bucket, key = split_s3_uri(path)
        except ValueError as e:
            raise ConfigError(
                f"{NAME}: path {path!r} is not an S3 URI: expected s3://BUCKET/PREFIX/"
            ) from e
        s3 = S3Settings(**{
            k.field: getattr(options, k.field) or getattr(settings.s3, k.field) for k in S3_KEYS
        })
        return cls(path, bucket, key, s3, options.max_attempts)

    @property
    def directory(self) -> str:
        """The key prefix that ends in '/' (empty for the bucket's root)."""
        return self.key if not self.key or self.key.endswith("/") else self.key + "/"

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def client(self, connections: int = 10):
        return s3_client(self.s3, max_attempts=self.max_attempts, max_connections=connections)
