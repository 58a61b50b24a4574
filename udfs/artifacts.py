"""Model artifacts from local paths, HTTP(S) or S3 into a per-machine disk cache.

Remote files are downloaded once per machine: a file lock makes concurrent workers on
one host wait for the first download, which lands by atomic rename. An S3 copy is kept
while the object's ETag is unchanged, so a model replaced in S3 is fetched again.
"""

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Iterator, Optional

from mxsql.udfs import logs
from mxsql.udfs.config import PREFIX, S3Settings
from mxsql.udfs.errors import ModelLoadError
from mxsql.udfs.s3.client import S3_SCHEMES, missing_reason, s3_client, split_s3_uri

__all__ = ["cache_lock", "fetch", "sha256_of"]

_CHUNK = 1 << 20
_log = logs.logger()


def sha256_of(path: str) -> str:
    """Hex SHA-256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


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
    # The cause is dropped: its text and traceback hold the full URL, whose query string
    # may carry a signed URL's credentials (the message shows the URL without it).
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
        raise _FetchFailed(missing_reason(e, bucket, key, s3)) from e


def _download_s3(uri: str, dest: str, s3: S3Settings) -> None:
    bucket, key = split_s3_uri(uri)
    try:
        s3_client(s3).download_file(bucket, key, dest)
    except Exception as e:
        raise _FetchFailed(missing_reason(e, bucket, key, s3)) from e


def _cache_name(uri: str, s3: S3Settings) -> str:
    # The same s3:// URI on another endpoint is another object.
    scope = f"{s3.endpoint or ''}|{uri}" if urllib.parse.urlparse(uri).scheme in S3_SCHEMES else uri
    digest = hashlib.sha256(scope.encode()).hexdigest()[:16]
    return digest + "-" + os.path.basename(urllib.parse.urlparse(uri).path)


@contextlib.contextmanager
def cache_lock(cache_dir: str, target: str, *, needed_for: str) -> Iterator[None]:
    """Hold this machine's lock on ``target``, a file in ``cache_dir``, creating the folder.

    Workers on one host share the cache: the first to take the lock writes ``target``
    and the others wait for it. ``needed_for`` says, in the ModelLoadError for an
    unwritable ``cacheDir``, what the file is for.
    """
    try:
        os.makedirs(cache_dir, exist_ok=True)
        # Any user's workers may share the cache: open the lock without truncating it.
        lock_fd = os.open(target + ".lock", os.O_RDONLY | os.O_CREAT, 0o666)
    except OSError as e:
        raise ModelLoadError(
            f"{PREFIX}cacheDir: cannot create or lock files in {cache_dir} ({e.strerror}), "
            f"needed for {needed_for}: set {PREFIX}cacheDir to a writable local directory"
        ) from e
    with os.fdopen(lock_fd) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


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
            raise ModelLoadError(f"{key}: {e}") from e
    cache_dir = os.path.expanduser(cache_dir)
    target = os.path.join(cache_dir, _cache_name(uri, s3))
    etag_file = target + ".etag"
    with cache_lock(cache_dir, target, needed_for=_shown(uri)):
        try:
            etag = _s3_etag(uri, s3) if scheme in S3_SCHEMES else None
        except _FetchFailed as e:
            raise ModelLoadError(f"{key}: cannot fetch {_shown(uri)}: {e}") from e
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
            raise ModelLoadError(f"{key}: cannot fetch {_shown(uri)}: {e}") from e
        finally:
            _remove(partial)
    return target


def local_or_cached(uri: str, cache_dir: str, s3: S3Settings) -> Optional[str]:
    """Path of ``uri`` if it is a local file, or of its cached copy if one exists; None else."""
    local = _local_path(uri)
    if local is not None:
        return local if os.path.isfile(local) else None
    target = os.path.join(os.path.expanduser(cache_dir), _cache_name(uri, s3))
    return target if os.path.isfile(target) else None


def shown(uri: str) -> str:
    """``uri`` as it may be shown: without user info or query (they may hold a credential)."""
    return _shown(uri)


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
