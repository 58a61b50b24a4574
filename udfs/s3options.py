"""The ``mxsql_s3`` source's name, schema and options, and where a read or write goes.

Options are parsed with the config module's parsers and never echoed in errors: a
mistaken option could hold a secret.
"""

import difflib
import re
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

from pyspark.sql.types import (
    BinaryType, LongType, StringType, StructField, StructType, TimestampType,
)

from mxsql.udfs.config import (
    PREFIX, S3Settings, Settings, nonempty_text, optional_text, positive_int,
)
from mxsql.udfs.errors import ConfigError
from mxsql.udfs.s3client import s3_client, split_s3_uri

__all__ = [
    "NAME", "SCHEMA", "PERSISTENT", "Option", "OPTIONS", "parse_options", "check_server_policy",
    "Target",
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
    fixed_by_server: bool = False  # under mxsql-thriftserver: only the server's own value


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
           f"S3 endpoint URL; unset = {PREFIX}s3.endpoint. Under mxsql-thriftserver only "
           "that value is allowed.", fixed_by_server=True),
    Option("region", None, optional_text, f"AWS region; unset = {PREFIX}s3.region."),
    Option("profile", None, optional_text,
           f"AWS profile; unset = {PREFIX}s3.profile. Under mxsql-thriftserver only that "
           "value is allowed.", fixed_by_server=True),
)
_BY_LOWER = {o.name.lower(): o for o in OPTIONS}


def parse_options(options, *, writing: bool) -> Dict[str, object]:
    """Parsed option values by their documented names; ConfigError names a bad option.

    Values are never echoed: a mistaken option could hold a secret.
    """
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
                f"they come from boto3's default chain or {PREFIX}s3.profile"
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
            f"'s3://BUCKET/PREFIX/'). {PERSISTENT}"
        )
    return values


def check_server_policy(values: Dict[str, object], s3: S3Settings) -> None:
    """Refuse an ``endpoint`` or ``profile`` option that differs from the server's setting.

    Every JDBC user of mxsql-thriftserver runs as the server, with its host's credentials:
    another profile would use other credentials of that host, another endpoint would send
    the server's credentials elsewhere. Values are not echoed (see ``parse_options``).
    """
    for option in OPTIONS:
        given = values[option.name]
        if option.fixed_by_server and given is not None and given != getattr(s3, option.name):
            key = f"{PREFIX}s3.{option.name}"
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
    def of(cls, values: Dict[str, object], settings: Settings) -> "Target":
        """The target of parsed options; unset S3 options fall back to the session's."""
        path = str(values["path"])
        try:
            bucket, key = split_s3_uri(path)
        except ValueError:
            raise ConfigError(
                f"{NAME}: path {path!r} is not an S3 URI: expected s3://BUCKET/PREFIX/"
            ) from None
        s3 = S3Settings(
            endpoint=values["endpoint"] or settings.s3.endpoint,
            region=values["region"] or settings.s3.region,
            profile=values["profile"] or settings.s3.profile,
        )
        return cls(path, bucket, key, s3, int(values["maxAttempts"]))

    @property
    def directory(self) -> str:
        """The key prefix that ends in '/' (empty for the bucket's root)."""
        return self.key if not self.key or self.key.endswith("/") else self.key + "/"

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def client(self, connections: int = 10):
        return s3_client(self.s3, max_attempts=self.max_attempts, max_connections=connections)
