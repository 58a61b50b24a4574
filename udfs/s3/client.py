"""S3 through boto3 for model artifacts and the ``mxsql_s3`` source: one client per settings
and process, and what S3's errors mean in words.

Both users of S3 build their clients and read S3's error codes and HTTP statuses here, so
a refused credential or a missing bucket reads the same wherever it happens.
"""

import os
import threading
import urllib.parse
from typing import Dict, Optional, Tuple

from mxsql.udfs.config import PREFIX, S3Settings

__all__ = ["S3_SCHEMES", "split_s3_uri", "s3_client", "error_status", "s3_reason",
           "missing_reason"]

S3_SCHEMES = ("s3", "s3a", "s3n")
_REFUSED_CREDENTIALS = frozenset({
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
    "TokenRefreshRequired",
})
_clients: Dict[tuple, object] = {}
_clients_lock = threading.Lock()


def split_s3_uri(uri: str) -> Tuple[str, str]:
    """(bucket, key) of an ``s3://bucket/key`` URI (``s3a://`` and ``s3n://`` too)."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme not in S3_SCHEMES or not parsed.netloc:
        raise ValueError(f"{uri!r} is not an S3 URI: expected s3://BUCKET/KEY")
    return parsed.netloc, parsed.path.lstrip("/")


def s3_client(s3: S3Settings, *, max_attempts: int = 5, max_connections: int = 10):
    """A boto3 S3 client from the default credential chain and the given settings.

    Throttling (SlowDown, 503), server errors and dropped connections are retried by
    botocore's standard mode with exponential backoff, ``max_attempts`` tries in all.
    With an endpoint (MinIO and other S3-compatible stores) buckets are addressed by
    path, which those stores expect. Clients are thread-safe and kept per process.
    """
    cache_key = (os.getpid(), s3, max_attempts, max_connections)
    client = _clients.get(cache_key)
    if client is not None:
        return client
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        max_pool_connections=max_connections,
        connect_timeout=10,
        read_timeout=60,
        s3={"addressing_style": "path"} if s3.endpoint else None,
    )
    with _clients_lock:
        client = _clients.get(cache_key)
        if client is None:
            session = boto3.session.Session(profile_name=s3.profile, region_name=s3.region)
            client = session.client("s3", endpoint_url=s3.endpoint, config=config)
            _clients[cache_key] = client
    return client


def error_status(error: Exception) -> Tuple[str, Optional[int]]:
    """(S3 error code, HTTP status) of a botocore error; ("", None) for any other error."""
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return "", None
    return (str(response.get("Error", {}).get("Code", "")),
            response.get("ResponseMetadata", {}).get("HTTPStatusCode"))


def s3_reason(error: Exception, bucket: str, key: Optional[str] = None,
              s3: Optional[S3Settings] = None) -> str:
    """Why an S3 call on ``bucket``/``key`` failed, in words; never includes a credential."""
    where = f"s3://{bucket}/{key}" if key is not None else f"s3://{bucket}/"
    response = getattr(error, "response", None)
    if isinstance(response, dict) and "Error" in response:
        code, status = error_status(error)
        if code == "NoSuchBucket":
            return _no_such_bucket(bucket)
        if code in ("NoSuchKey", "404", "NotFound"):
            return f"no such key: {where}"
        if code in _REFUSED_CREDENTIALS:
            return (f"the S3 credentials were refused ({code}) reading {where}: check the "
                    f"credentials of {_credential_source(s3)}")
        if code in ("403", "Forbidden"):  # a HEAD's error has no body to say which
            return (f"access denied to {where} (HTTP 403): the credentials of "
                    f"{_credential_source(s3)} were refused or lack permission for it")
        if code in ("AccessDenied", "AllAccessDisabled") or status == 403:
            return (f"access denied to {where}: the credentials of {_credential_source(s3)} "
                    "lack permission for it")
        message = str(response["Error"].get("Message", "")).strip()
        return f"{code or status} {message} ({where})".replace("  ", " ")
    name = type(error).__name__
    if name == "NoCredentialsError":
        return (f"no AWS credentials found to read {where}: set them in the environment, a "
                f"profile ({PREFIX}s3.profile) or an instance role")
    if name == "ProfileNotFound":
        return f"{error} ({PREFIX}s3.profile or the profile option), reading {where}"
    return f"{name}: {error} ({where})"


def missing_reason(error: Exception, bucket: str, key: str, s3: S3Settings) -> str:
    """``s3_reason`` for a HEAD or GET of one object, telling a missing bucket from a missing
    key: a HEAD's 404 carries no body, so the bucket is asked whether it exists."""
    if error_status(error)[1] == 404:
        try:
            s3_client(s3).head_bucket(Bucket=bucket)
        except Exception as bucket_error:
            if error_status(bucket_error)[1] == 404:
                return _no_such_bucket(bucket)
    return s3_reason(error, bucket, key, s3)


def _no_such_bucket(bucket: str) -> str:
    """The reason for a missing bucket."""
    return f"no such bucket '{bucket}' (check the bucket name, the endpoint and the region)"


def _credential_source(s3: Optional[S3Settings]) -> str:
    if s3 is not None and s3.profile:
        return f"profile '{s3.profile}'"
    return "boto3's default chain (environment, profile, instance role)"
