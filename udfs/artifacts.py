"""Model artifacts from local paths, HTTP(S) or S3 into a per-machine disk cache.

Remote files are downloaded once per machine: a file lock makes concurrent workers on
one host wait for the first download, which lands by atomic rename.
"""

import fcntl
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from typing import Optional

from mxsql.udfs.config import S3Settings
from mxsql.udfs.errors import ModelLoadError

__all__ = ["fetch", "sha256_of", "s3_client", "split_s3_uri"]

_CHUNK = 1 << 20


def sha256_of(path: str) -> str:
    """Hex SHA-256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def split_s3_uri(uri: str):
    """(bucket, key) of an ``s3://bucket/key`` URI."""
    parsed = urllib.parse.urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def s3_client(s3: S3Settings):
    """A boto3 S3 client from the default credential chain and the given settings."""
    import boto3

    session = boto3.session.Session(profile_name=s3.profile, region_name=s3.region)
    return session.client("s3", endpoint_url=s3.endpoint)


def _local_path(uri: str) -> Optional[str]:
    if uri.startswith("file://"):
        return urllib.parse.unquote(urllib.parse.urlparse(uri).path)
    if "://" not in uri:
        return os.path.abspath(os.path.expanduser(uri))
    return None


def _download(uri: str, dest: str, s3: S3Settings) -> None:
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme in ("http", "https"):
        with urllib.request.urlopen(uri, timeout=60) as response, open(dest, "wb") as out:
            shutil.copyfileobj(response, out, _CHUNK)
    elif scheme in ("s3", "s3a", "s3n"):
        bucket, key = split_s3_uri(uri)
        s3_client(s3).download_file(bucket, key, dest)
    else:
        raise ValueError(f"unsupported scheme '{scheme}://' (use a path, file://, http(s):// or s3://)")


def _describe(error: Exception) -> str:
    """A short reason for a failed download; never includes credentials."""
    response = getattr(error, "response", None)
    if isinstance(response, dict) and "Error" in response:
        err = response["Error"]
        return f"{err.get('Code', 'error')}: {err.get('Message', '')}".strip(": ")
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    return f"{type(error).__name__}: {error}"


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
    before it is used; a cached copy that does not match is fetched again.
    """
    local = _local_path(uri)
    if local is not None:
        if not os.path.isfile(local):
            raise ModelLoadError(f"{key}: file not found: {local}")
        _verify(local, sha256, checksum_key, uri)
        return local

    name = hashlib.sha256(uri.encode()).hexdigest()[:16] + "-" + os.path.basename(
        urllib.parse.urlparse(uri).path)
    os.makedirs(cache_dir, exist_ok=True)
    target = os.path.join(cache_dir, name)
    with open(target + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.isfile(target) and (sha256 is None or sha256_of(target) == sha256):
            return target
        fd, partial = tempfile.mkstemp(dir=cache_dir, prefix=".partial-")
        os.close(fd)
        try:
            _download(uri, partial, s3)
            _verify(partial, sha256, checksum_key, uri)
            os.replace(partial, target)
        except ModelLoadError:
            raise
        except Exception as e:
            raise ModelLoadError(f"{key}: cannot fetch {uri}: {_describe(e)}") from None
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
    return target


def _verify(path: str, sha256: Optional[str], key: Optional[str], uri: str) -> None:
    if sha256 is None:
        return
    actual = sha256_of(path)
    if actual != sha256:
        raise ModelLoadError(
            f"{key}: checksum mismatch for {uri}: expected sha256 {sha256}, got {actual}; "
            "fix the checksum setting or the file"
        )
