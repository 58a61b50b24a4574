"""Model fingerprints: what a model's outputs depend on, as a short digest (no Spark)."""

import functools
import hashlib
import http.server
import os
import threading

import pytest

from mxsql.udfs import artifacts, fingerprint
from mxsql.udfs.config import parse_settings
from mxsql.udfs.errors import ModelLoadError


def _write(path, data: bytes):
    with open(path, "wb") as f:
        f.write(data)


@pytest.fixture
def checkpoint(tmp_path):
    """A checkpoint's three files (content only: nothing here loads a network)."""
    prefix = str(tmp_path / "m")
    _write(prefix + "-symbol.json", b'{"nodes": []}')
    _write(prefix + "-0000.params", b"params-0")
    _write(prefix + "-0003.params", b"params-3")
    _write(str(tmp_path / "synset.txt"), b"a\nb\n")
    return prefix


def _settings(prefix, cache, **keys):
    conf = {"spark.mxsql.model.m.uri": prefix, "spark.mxsql.cacheDir": str(cache)}
    conf.update({f"spark.mxsql.model.m.{k}": v for k, v in keys.items()})
    settings = parse_settings(conf)
    return settings.model("m"), settings


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fingerprint(prefix, cache, **keys):
    spec, settings = _settings(prefix, cache, **keys)
    return fingerprint.model_fingerprint(spec, settings)


def test_checksums_of_local_files(checkpoint, tmp_path):
    spec, settings = _settings(checkpoint, tmp_path / "cache")
    assert fingerprint.artifact_checksums(spec, settings) == (
        _sha(b'{"nodes": []}'), _sha(b"params-0"), _sha(b"a\nb\n"))


def test_configured_checksum_is_taken_as_given(checkpoint, tmp_path):
    given = "ab" * 32
    spec, settings = _settings(checkpoint, tmp_path / "cache", **{"sha256.params": given})
    assert fingerprint.artifact_checksums(spec, settings)[1] == given


def test_unchanged_file_is_not_hashed_again(checkpoint, tmp_path, monkeypatch):
    spec, settings = _settings(checkpoint, tmp_path / "cache")
    fingerprint.artifact_checksums(spec, settings)
    hashed = []
    real = artifacts.sha256_of
    monkeypatch.setattr(artifacts, "sha256_of", lambda p: hashed.append(p) or real(p))
    fingerprint.artifact_checksums(spec, settings)
    assert hashed == []
    _write(checkpoint + "-0000.params", b"params-0, retrained")
    assert fingerprint.artifact_checksums(spec, settings)[1] == _sha(b"params-0, retrained")
    assert hashed == [os.path.realpath(checkpoint + "-0000.params")]


def test_missing_file_names_the_key(tmp_path):
    spec, settings = _settings(str(tmp_path / "absent"), tmp_path / "cache")
    with pytest.raises(ModelLoadError, match=r"spark\.mxsql\.model\.m\.uri: file not found"):
        fingerprint.model_fingerprint(spec, settings)


def test_fingerprint_is_short_hex_and_stable(checkpoint, tmp_path):
    first = _fingerprint(checkpoint, tmp_path / "cache", mean="1,2,3")
    assert len(first) == 16 and int(first, 16) >= 0
    assert first == _fingerprint(checkpoint, tmp_path / "cache", mean="1.0, 2, 3")


@pytest.mark.parametrize("key, value", [
    ("mean", "1,2,3"), ("std", "2,2,2"), ("inputSize", "32"), ("channels", "1"),
    ("resize", "center-crop"), ("output", "logits"), ("precision", "int8"),
])
def test_settings_that_change_outputs_change_it(checkpoint, tmp_path, key, value):
    base = {"calibration": "/cal/a"}  # int8 needs it; fp32 ignores it
    assert _fingerprint(checkpoint, tmp_path, **base) != _fingerprint(
        checkpoint, tmp_path, **base, **{key: value})


def test_int8_calibration_changes_it(checkpoint, tmp_path):
    base = _fingerprint(checkpoint, tmp_path, precision="int8", calibration="/cal/a")
    assert base != _fingerprint(checkpoint, tmp_path, precision="int8", calibration="/cal/b")
    assert base != _fingerprint(checkpoint, tmp_path, precision="int8", calibration="/cal/a",
                                calibrationImages="8")


def test_each_artifact_changes_it(checkpoint, tmp_path):
    before = _fingerprint(checkpoint, tmp_path)
    for path in (checkpoint + "-symbol.json", checkpoint + "-0000.params",
                 os.path.join(os.path.dirname(checkpoint), "synset.txt")):
        with open(path, "ab") as f:
            f.write(b" ")
        after = _fingerprint(checkpoint, tmp_path)
        assert after != before, path
        before = after


def test_what_does_not_change_outputs_keeps_it(checkpoint, tmp_path):
    base = _fingerprint(checkpoint, tmp_path)
    assert base == _fingerprint(checkpoint, tmp_path, engine="onnxruntime")
    assert base == _fingerprint(checkpoint, tmp_path, calibration="/cal/a")  # fp32: unused
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for name in ("m-symbol.json", "m-0000.params", "synset.txt"):
        os.link(tmp_path / name, moved / name)
    assert base == _fingerprint(str(moved / "m"), tmp_path)


def test_epoch_counts_through_its_params_file(checkpoint, tmp_path):
    assert _fingerprint(checkpoint, tmp_path) != _fingerprint(checkpoint, tmp_path, epoch="3")


@pytest.fixture
def http_checkpoint(checkpoint):
    """The checkpoint's folder over real HTTP on loopback, counting GETs."""
    gets = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            gets.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0),
        functools.partial(Handler, directory=os.path.dirname(checkpoint)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/m", gets
    server.shutdown()
    server.server_close()


def test_remote_files_are_fetched_into_the_cache_once(checkpoint, http_checkpoint, tmp_path):
    uri, gets = http_checkpoint
    remote = _fingerprint(uri, tmp_path / "cache", labels=uri.rsplit("/", 1)[0] + "/synset.txt")
    assert remote == _fingerprint(checkpoint, tmp_path / "cache")
    assert sorted(gets) == ["/m-0000.params", "/m-symbol.json", "/synset.txt"]
    _fingerprint(uri, tmp_path / "cache", labels=uri.rsplit("/", 1)[0] + "/synset.txt")
    assert len(gets) == 3
