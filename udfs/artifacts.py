"""Model artifacts from local paths, HTTP(S) or S3 into a per-machine disk cache.

Remote files are downloaded once per machine: a file lock makes concurrent workers on
one host wait for the first download, which lands by atomic rename. An S3 copy is kept
while the object's ETag is unchanged, so a model replaced in S3 is fetched again.
"""

import fcntl
import hashlib
import os
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Dict, Optional, Tuple

from mxsql.udfs import logs
from mxsql.udfs.config import PREFIX, S3Settings
from mxsql.udfs.errors import ModelLoadError

__all__ = [
    "S3_SCHEMES", "fetch", "s3_client", "s3_reason", "sha256_of", "split_s3_uri",
]

_CHUNK = 1 << 20
_REFUSED_CREDENTIALS = frozenset({
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
    "TokenRefreshRequired",
})
S3_SCHEMES = ("s3", "s3a", "s3n")
_clients: Dict[tuple, object] = {}
_clients_lock = threading.Lock()
_log = logs.logger()


def sha256_of(path: str) -> str:
    """Hex SHA-256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


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


def s3_reason(error: Exception, bucket: str, key: Optional[str] = None,
              s3: Optional[S3Settings] = None) -> str:
    """Why an S3 call on ``bucket``/``key`` failed, in words; never includes a credential."""
    where = f"s3://{bucket}/{key}" if key is not None else f"s3://{bucket}/"
    response = getattr(error, "response", None)
    if isinstance(response, dict) and "Error" in response:
        code = str(response["Error"].get("Code", ""))
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
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
                "profile (spark.mxsql.s3.profile) or an instance role")
    if name == "ProfileNotFound":
        return f"{error} (spark.mxsql.s3.profile or the profile option), reading {where}"
    return f"{name}: {error} ({where})"


def _no_such_bucket(bucket: str) -> str:
    """The reason for a missing bucket."""
    return f"no such bucket '{bucket}' (check the bucket name, the endpoint and the region)"


def _credential_source(s3: Optional[S3Settings]) -> str:
    if s3 is not None and s3.profile:
        return f"profile '{s3.profile}'"
    return "boto3's default chain (environment, profile, instance role)"


def _local_path(uri: str) -> Optional[str]:
    if uri.startswith("file://"):
        return urllib.parse.unquote(urllib.parse.urlparse(uri).path)
    if "://" not in uri:
        return os.path.abspath(os.path.expanduser(uri))
    return None


def _download_http(uri: str, dest: str) -> None:
    try:
        with urllib.request.urlopen(uri, timeout=60) as response, open(dest, "wb") as out:
            shutil.copyfileobj(response, out, _CHUNK)
    except urllib.error.HTTPError as e:
        raise _FetchFailed(f"HTTP {e.code} {e.reason}") from None
    except Exception as e:
        raise _FetchFailed(f"{type(e).__name__}: {e}") from None


class _FetchFailed(Exception):
    """A download failed; the message is the reason, safe to show."""


def _s3_etag(uri: str, s3: S3Settings) -> str:
    bucket, key = split_s3_uri(uri)
    try:
        return s3_client(s3).head_object(Bucket=bucket, Key=key)["ETag"]
    except Exception as e:
        raise _FetchFailed(_s3_missing_reason(e, bucket, key, s3)) from None


def _s3_missing_reason(error: Exception, bucket: str, key: str, s3: S3Settings) -> str:
    """A HEAD's 404 carries no body: ask the bucket whether it is the bucket that is missing."""
    if _status(error) == 404:
        try:
            s3_client(s3).head_bucket(Bucket=bucket)
        except Exception as bucket_error:
            if _status(bucket_error) == 404:
                return _no_such_bucket(bucket)
    return s3_reason(error, bucket, key, s3)


def _status(error: Exception) -> Optional[int]:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None


def _download_s3(uri: str, dest: str, s3: S3Settings) -> None:
    bucket, key = split_s3_uri(uri)
    try:
        s3_client(s3).download_file(bucket, key, dest)
    except Exception as e:
        raise _FetchFailed(_s3_missing_reason(e, bucket, key, s3)) from None


def _cache_name(uri: str, s3: S3Settings) -> str:
    # The same s3:// URI on another endpoint is another object.
    scope = f"{s3.endpoint or ''}|{uri}" if urllib.parse.urlparse(uri).scheme in S3_SCHEMES else uri
    digest = hashlib.sha256(scope.encode()).hexdigest()[:16]
    return digest + "-" + os.path.basename(urllib.parse.urlparse(uri).path)


def _read_text(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def fetch(
    uri: str,
    *,
    key: str,
    cache_dir: str,
    s3: S3Settings,
    sha256: Optional[str] = None,
    checksum_key: Optional[str] = None,
) -> str:
    """Local path of the artifact at ``uri``, downloading it into ``cache_dir`` if remote.

    ``key`` is the configuration key the URI came from and ``checksum_key`` the one
    ``sha256`` came from, for error messages. With ``sha256`` the file is verified
    before it is used; a cached copy that does not match is fetched again. An S3
    artifact is checked with one HEAD request: the cached copy is used while the
    object's ETag is the one it was downloaded with.
    """
    local = _local_path(uri)
    if local is not None:
        if not os.path.isfile(local):
            raise ModelLoadError(f"{key}: file not found: {local}")
        _verify(local, sha256, checksum_key, uri)
        return local

    scheme = urllib.parse.urlparse(uri).scheme
    if scheme not in S3_SCHEMES + ("http", "https"):
        raise ModelLoadError(
            f"{key}: unsupported scheme '{scheme}://' in {_shown(uri)} "
            "(use a path, file://, http(s):// or s3://)"
        )
    if scheme in S3_SCHEMES:
        try:
            split_s3_uri(uri)
        except ValueError as e:
            raise ModelLoadError(f"{key}: {e}") from None
    cache_dir = os.path.expanduser(cache_dir)
    target = os.path.join(cache_dir, _cache_name(uri, s3))
    try:
        os.makedirs(cache_dir, exist_ok=True)
        # Any user's workers may share the cache: open the lock without truncating it.
        lock_fd = os.open(target + ".lock", os.O_RDONLY | os.O_CREAT, 0o666)
    except OSError as e:
        raise ModelLoadError(
            f"{PREFIX}cacheDir: cannot create or lock files in {cache_dir} ({e.strerror}), "
            f"needed for {_shown(uri)}: set {PREFIX}cacheDir to a writable local directory"
        ) from None
    etag_file = target + ".etag"
    with os.fdopen(lock_fd) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            etag = _s3_etag(uri, s3) if scheme in S3_SCHEMES else None
        except _FetchFailed as e:
            raise ModelLoadError(f"{key}: cannot fetch {_shown(uri)}: {e}") from None
        if (os.path.isfile(target) and (etag is None or _read_text(etag_file) == etag)
                and (sha256 is None or sha256_of(target) == sha256)):
            return target
        fd, partial = tempfile.mkstemp(dir=cache_dir, prefix=".partial-")
        os.close(fd)
        started = time.monotonic()
        try:
            if etag is None:
                _download_http(uri, partial)
            else:
                _download_s3(uri, partial, s3)
            _verify(partial, sha256, checksum_key, uri)
            os.replace(partial, target)
            _log.info("fetched %s into %s (%d bytes) in %.2f s (pid %d)", _shown(uri), target,
                      os.path.getsize(target), time.monotonic() - started, os.getpid())
            if etag is None:
                _remove(etag_file)
            else:
                with open(etag_file, "w", encoding="utf-8") as f:
                    f.write(etag)
        except _FetchFailed as e:
            raise ModelLoadError(f"{key}: cannot fetch {_shown(uri)}: {e}") from None
        finally:
            _remove(partial)
    return target


def _shown(uri: str) -> str:
    """``uri`` without user info or query, which may hold a credential (a presigned URL)."""
    parts = urllib.parse.urlsplit(uri)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2], query="", fragment="").geturl()


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _verify(path: str, sha256: Optional[str], key: Optional[str], uri: str) -> None:
    if sha256 is None:
        return
    actual = sha256_of(path)
    if actual != sha256:
        raise ModelLoadError(
            f"{key}: checksum mismatch for {_shown(uri)}: expected sha256 {sha256}, got {actual}; "
            "fix the checksum setting or the file"
        )
