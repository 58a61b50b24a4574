"""Model files over real HTTP on loopback: fetched once per machine, verified, errors named."""

import functools
import http.server
import os
import subprocess
import sys
import threading
import time

import pytest

from demo import digits as digits_demo
from mxsql.udfs.artifacts import fetch, sha256_of
from mxsql.udfs.config import S3Settings
from mxsql.udfs.errors import ModelLoadError


class _Handler(http.server.SimpleHTTPRequestHandler):
    gets = []
    delay = 0.0

    def do_GET(self):
        type(self).gets.append(self.path)
        time.sleep(self.delay)  # keeps a download in flight while other workers ask
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def model_server(digits):
    folder = os.path.dirname(digits[0])
    handler = type("Handler", (_Handler,), {"gets": [], "delay": 0.0})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=folder))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def _fetch(uri, cache, **kw):
    return fetch(uri, key="spark.mxsql.model.web.uri", cache_dir=str(cache), s3=S3Settings(), **kw)


def test_http_file_is_downloaded_once_then_served_from_the_cache(model_server, tmp_path):
    base, handler = model_server
    handler.gets.clear()
    first = _fetch(f"{base}/digits-symbol.json", tmp_path)
    second = _fetch(f"{base}/digits-symbol.json", tmp_path)
    assert first == second and os.path.isfile(first)
    assert handler.gets == ["/digits-symbol.json"]


def test_concurrent_workers_on_one_host_download_once(model_server, tmp_path):
    base, handler = model_server
    handler.gets.clear()
    handler.delay = 0.5
    code = (
        "import sys\n"
        "from mxsql.udfs.artifacts import fetch\n"
        "from mxsql.udfs.config import S3Settings\n"
        "print(fetch(sys.argv[1], key='k', cache_dir=sys.argv[2], s3=S3Settings()))\n"
    )
    uri = f"{base}/digits-0000.params"
    try:
        procs = [subprocess.Popen([sys.executable, "-c", code, uri, str(tmp_path)],
                                  stdout=subprocess.PIPE, text=True) for _ in range(4)]
        paths = {p.communicate(timeout=60)[0].strip() for p in procs}
    finally:
        handler.delay = 0.0
    assert all(p.returncode == 0 for p in procs)
    assert len(paths) == 1
    assert handler.gets == ["/digits-0000.params"]


def test_http_404_names_the_key_and_the_status(model_server, tmp_path):
    base, _ = model_server
    with pytest.raises(ModelLoadError, match=r"spark.mxsql.model.web.uri: cannot fetch .*/nothing-symbol.json: HTTP 404"):
        _fetch(f"{base}/nothing-symbol.json", tmp_path)


def test_http_error_keeps_no_cause_that_could_show_a_signed_urls_query(model_server, tmp_path):
    base, _ = model_server
    with pytest.raises(ModelLoadError) as error:
        _fetch(f"{base}/nothing-symbol.json?X-Amz-Signature=secret", tmp_path)
    assert "secret" not in str(error.value)
    cause = error.value.__cause__
    assert cause is not None and cause.__cause__ is None and cause.__suppress_context__


def test_checksum_mismatch_leaves_nothing_in_the_cache(model_server, tmp_path):
    base, _ = model_server
    with pytest.raises(ModelLoadError, match=r"spark.mxsql.model.web.sha256.symbol: checksum mismatch"):
        _fetch(f"{base}/digits-symbol.json", tmp_path, sha256="0" * 64,
               checksum_key="spark.mxsql.model.web.sha256.symbol")
    assert [n for n in os.listdir(tmp_path) if not n.endswith(".lock")] == []


def test_model_over_http_classifies_in_sql(spark, mx_conf, model_server, digits, digits_table):
    base, _ = model_server
    prefix = digits[0]
    mx_conf({**digits_demo.model_conf(f"{base}/digits", "web"),
             "spark.mxsql.model.web.sha256.params": sha256_of(prefix + "-0000.params")})
    rows = spark.sql("""
        SELECT count(*) n, count_if(mx_classify(content, 'web').label = mx_classify(content).label) same
        FROM digits""").first()
    assert rows.n == 360 and rows.same == 360


def test_unwritable_cache_dir_names_the_key(model_server, tmp_path):
    base, _ = model_server
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ModelLoadError, match=r"spark.mxsql.cacheDir: cannot create or lock files in .*a-file"):
        _fetch(f"{base}/digits-symbol.json", blocker / "cache")


def test_unwritable_cache_dir_keeps_the_os_error_as_its_cause(model_server, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ModelLoadError) as error:
        _fetch(f"{model_server[0]}/digits-symbol.json", blocker / "cache")
    assert isinstance(error.value.__cause__, OSError)


def test_cache_lock_is_shared_by_users_and_not_truncated(model_server, tmp_path):
    base, _ = model_server
    path = _fetch(f"{base}/digits-symbol.json", tmp_path)
    assert os.stat(path + ".lock").st_mode & 0o666 == 0o666 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
