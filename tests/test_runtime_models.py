"""A model added or changed with SET at run time, and the policy that bounds it.

``spark.mxsql.runtimeModels`` and ``spark.mxsql.model.allowedUris`` are the operator's:
the shell and a PySpark session allow runtime models from the folders of the models
configured at start (or allowedUris), mxsql-thriftserver only when its operator says so.
Workers keep a loaded model while its spec and files are unchanged, and never serve a
stale one.
"""

import io
import logging
import os
import shutil

import pytest
from pyspark.errors import PythonException

from demo import digits as digits_demo
from mxsql.registry.serverrules import set_problem
from mxsql.udfs import fingerprint, models
from mxsql.udfs.config import (
    ALLOWED_URIS_KEY, RUNTIME_MODELS_KEY, model_key, parse_settings,
)
from mxsql.udfs.errors import ConfigError
from mxsql.udfs.logs import parse_loaded_models
from tests import servers

UPPER = [name.upper() for name in digits_demo.NAMES]


def _copy_digits(prefix: str, folder: str, *, labels=digits_demo.NAMES) -> str:
    """A copy of the digits checkpoint as ``folder/rt``, labels in ``folder/rt-synset.txt``."""
    os.makedirs(folder, exist_ok=True)
    for suffix in ("-symbol.json", "-0000.params"):
        shutil.copyfile(prefix + suffix, os.path.join(folder, "rt" + suffix))
    _write_labels(os.path.join(folder, "rt-synset.txt"), labels)
    return os.path.join(folder, "rt")


def _write_labels(path: str, labels) -> None:
    """Write ``path`` anew (a new inode, as a copy over it or a fetch would)."""
    with open(path + ".new", "w") as f:
        f.write("".join(f"{label}\n" for label in labels))
    os.replace(path + ".new", path)


def _runtime_conf(name: str, prefix: str) -> dict:
    return {**digits_demo.model_conf(prefix, name),
            model_key(name, "labels"): prefix + "-synset.txt"}


# --- the policy, as the driver and the workers apply it ----------------------------------

@pytest.fixture
def registered(tmp_path):
    """Settings registered with one model under tmp_path/start (allowedUris unset)."""
    return parse_settings({model_key("default", "uri"): str(tmp_path / "start" / "m")})


@pytest.mark.parametrize("key", [RUNTIME_MODELS_KEY, ALLOWED_URIS_KEY])
def test_policy_keys_cannot_be_set_in_a_session(registered, key):
    with pytest.raises(ConfigError, match=f"{key} cannot be changed with SET: it is the "
                                          "operator's policy"):
        registered.with_session_overrides({key: "/"})
    assert set_problem(key, "/", registered).startswith(
        f"mxsql-thriftserver forbids SET {key} in a connection")


def test_runtime_models_off_refuses_a_model_key_naming_the_setting(tmp_path):
    settings = parse_settings({RUNTIME_MODELS_KEY: "false",
                               model_key("default", "uri"): str(tmp_path / "m")})
    key = model_key("new", "uri")
    with pytest.raises(ConfigError, match=f"{key} cannot be changed with SET: runtime models "
                                          f"are off here \\({RUNTIME_MODELS_KEY}=false"):
        settings.with_session_overrides({key: str(tmp_path / "new")})
    assert f"({RUNTIME_MODELS_KEY}=false" in set_problem(key, str(tmp_path / "n"), settings)


def test_default_allowed_uris_are_the_start_models_folders(registered, tmp_path):
    start = tmp_path / "start"
    changed = registered.with_session_overrides(
        {model_key("new", "uri"): f"file://{start}/sub/new"})
    assert changed.model("new").uri == f"file://{start}/sub/new"
    assert changed.allowed_uris == registered.allowed_uris == (f"file://{start}",)
    assert set_problem(model_key("new", "uri"), f"{start}/new", registered) is None


@pytest.mark.parametrize("uri", [
    "{start}/../secret/m",  # .. out of the folder
    "file://{start}/../secret/m",
    "{start}-evil/m",  # a sibling whose name starts like the folder
    "{start}/link/m",  # a symbolic link out of it
    "file://otherhost{start}/m",
    "s3://bucket/models/m",
    "relative/m",
])
def test_a_uri_outside_allowed_uris_is_refused_after_normalising(registered, tmp_path, uri):
    start = tmp_path / "start"
    (tmp_path / "secret").mkdir()
    start.mkdir()
    os.symlink(tmp_path / "secret", start / "link")
    uri = uri.format(start=start)
    key = model_key("new", "uri")
    with pytest.raises(ConfigError, match=f"{key}: .*{ALLOWED_URIS_KEY}"):
        registered.with_session_overrides({key: uri})
    problem = set_problem(key, uri, registered)
    assert problem.startswith(f"mxsql-thriftserver forbids SET {key} in a connection: ")
    assert ALLOWED_URIS_KEY in problem


@pytest.mark.parametrize("allowed, uri, ok", [
    ("s3://Bucket/models/", "s3a://bucket/models/m", True),
    ("s3a://bucket/models", "S3://BUCKET/models/sub/m", True),
    ("s3://bucket/models", "s3://bucket/models/../other/m", False),
    ("s3://bucket/models", "s3://bucket/models/%2e%2e/other/m", False),
    ("s3://bucket/models", "s3://bucket/modelsx/m", False),
    ("https://models.example.com/team/", "HTTPS://Models.Example.com:443/team/m", True),
    ("https://models.example.com/team/", "https://models.example.com@evil.example/team/m",
     False),
    ("https://models.example.com/team/", "http://models.example.com/team/m", False),
])
def test_allowed_uris_compare_scheme_host_and_path_normalised(allowed, uri, ok):
    settings = parse_settings({ALLOWED_URIS_KEY: allowed})
    assert (settings.uri_problem(uri) is None) == ok


def test_a_refused_uri_never_shows_a_credential(registered):
    key = model_key("new", "uri")
    uri = "https://user:password@models.example.com/m?X-Amz-Signature=s3cr3t"
    with pytest.raises(ConfigError) as refused:
        registered.with_session_overrides({key: uri})
    for message in (str(refused.value), set_problem(key, uri, registered)):
        assert "https://models.example.com/m" in message
        assert "password" not in message and "s3cr3t" not in message


def test_the_server_turns_runtime_models_off_unless_its_operator_turns_them_on():
    from mxsql.registry.thriftserver import server_conf

    assert server_conf()[RUNTIME_MODELS_KEY] == "false"
    assert server_conf(conf=[f"{RUNTIME_MODELS_KEY}=true"])[RUNTIME_MODELS_KEY] == "true"
    assert RUNTIME_MODELS_KEY not in server_conf(base={RUNTIME_MODELS_KEY: "true"})


def test_a_malformed_allowed_uris_entry_names_the_key():
    with pytest.raises(ConfigError, match=f"{ALLOWED_URIS_KEY}='models': must be a comma "
                                          "list of absolute folders"):
        parse_settings({ALLOWED_URIS_KEY: "models"})


# --- the workers' cache ------------------------------------------------------------------

@pytest.fixture
def loads():
    """The "loaded model" lines the mxsql logger writes during the test."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("mxsql")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield lambda: parse_loaded_models(stream.getvalue())
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def copied(digits, tmp_path):
    """(settings, prefix) of a copy of the digits model named 'rt'; none cached."""
    prefix = _copy_digits(digits[0], str(tmp_path / "m"))
    settings = parse_settings({**_runtime_conf("rt", prefix),
                               "spark.mxsql.cacheDir": str(tmp_path / "cache")})
    yield settings, prefix
    for key in [k for k in models._cache if k[0] == "rt"]:
        del models._cache[key]


def test_an_unchanged_model_is_loaded_once_and_not_hashed_again(copied, loads, monkeypatch):
    settings, _ = copied
    first = models.get_model(settings.model("rt"), settings)
    hashed = []
    monkeypatch.setattr(fingerprint, "file_sha256", lambda path: hashed.append(path))
    assert models.get_model(settings.model("rt"), settings) is first
    assert len(loads()) == 1 and hashed == []


def test_a_file_rewritten_with_the_same_content_is_not_reloaded(copied, loads):
    settings, prefix = copied
    first = models.get_model(settings.model("rt"), settings)
    _write_labels(prefix + "-synset.txt", digits_demo.NAMES)
    assert models.get_model(settings.model("rt"), settings) is first
    assert len(loads()) == 1


def test_a_file_changed_at_the_same_uri_is_never_served_stale(copied, loads, digits):
    import mxnet as mx
    import numpy as np

    from mxsql.udfs.images import load_pixels

    settings, prefix = copied
    spec = settings.model("rt")
    assert models.get_model(spec, settings).labels == list(digits_demo.NAMES)
    _write_labels(prefix + "-synset.txt", UPPER)
    model = models.get_model(spec, settings)
    assert model.labels == UPPER
    with open(digits[1][0], "rb") as f:
        pixels = np.stack([load_pixels(f.read(), input_size=spec.input_size,
                                       channels=spec.channels, resize=spec.resize,
                                       max_pixels=settings.max_image_pixels)])
    other = (int(model.predict(pixels, 8).argmax()) + 1) % 10
    params = mx.nd.load(spec.params_uri)
    params["arg:fc2_bias"][other] += 100  # rewritten in place: same path, size and inode
    mx.nd.save(spec.params_uri, params)
    assert models.get_model(spec, settings).predict(pixels, 8).argmax() == other
    assert len(loads()) == 3


def test_a_changed_spec_replaces_the_model_held_under_its_name(copied, loads):
    settings, prefix = copied
    first = models.get_model(settings.model("rt"), settings)
    changed = settings.with_session_overrides({model_key("rt", "std"): "128"})
    second = models.get_model(changed.model("rt"), changed)
    assert second is not first
    assert [e.model for k, e in models._cache.items() if k[0] == "rt"] == [second]
    assert len(loads()) == 2


# --- in a session: spark.sql and the mxsql shell -----------------------------------------

@pytest.fixture
def runtime_dir(spark, mx_conf, digits, tmp_path):
    """A folder the shared session allows (as its operator would), holding a digits copy."""
    mx_conf({ALLOWED_URIS_KEY: str(tmp_path)})
    return _copy_digits(digits[0], str(tmp_path / "rt"), labels=UPPER)


@pytest.fixture
def session_set(spark):
    """SET statements in the shared session, undone (unset) after the test."""
    keys = []

    def run(conf):
        for key, value in conf.items():
            keys.append(key)
            spark.sql(f"SET {key}={value}")

    yield run
    for key in keys:
        spark.conf.unset(key)


def _labels(spark, sql):
    return [r[0] for r in spark.sql(sql).collect()]


def test_a_model_set_in_a_session_works_in_the_next_statement(spark, digits, runtime_dir,
                                                              session_set):
    # Whole scans of a few images, one mx function a query: a LIMIT would stop (and so
    # restart) the workers.
    spark.read.format("binaryFile").load(digits[1][:40]).createOrReplaceTempView("few")
    session_set(_runtime_conf("rt", runtime_dir))
    rows = spark.sql("SELECT path, mx_top_k(content, 2, 'rt') t FROM few").collect()
    right = sum(r.t[0].label == digits_demo.label_of(r.path).upper() for r in rows)
    assert rows and right >= 0.9 * len(rows)
    assert _labels(spark, "SELECT label FROM mx_labels('rt')") == UPPER
    listed = {r.name: r for r in spark.sql("SELECT * FROM mx_models()").collect()}
    assert listed["rt"].uri == runtime_dir and listed["rt"].num_labels == 10

    other = os.path.dirname(runtime_dir) + "/rt-other.txt"
    _write_labels(other, ["x"] * 10)
    session_set({model_key("rt", "labels"): other})  # a changed spec
    query = "SELECT mx_classify(content, 'rt').label FROM few"
    assert set(_labels(spark, query)) == {"x"}
    _write_labels(other, ["y"] * 10)  # the same URI, new content
    assert set(_labels(spark, query)) == {"y"}


def test_a_worker_refuses_a_uri_outside_allowed_uris_that_no_driver_checked(
        spark, digits_table, runtime_dir, tmp_path_factory):
    outside = str(tmp_path_factory.mktemp("outside") / "m")
    key = model_key("sneaky", "uri")
    spark.conf.set(key, outside)  # a PySpark session has no SET rule: only the worker checks
    try:
        with pytest.raises(PythonException, match=f"ConfigError: {key}: {outside}-symbol.json "
                                                  f"is outside {ALLOWED_URIS_KEY}"):
            spark.sql("SELECT mx_classify(content) FROM digits LIMIT 1").collect()
    finally:
        spark.conf.unset(key)


@pytest.fixture
def shell(spark, runtime_dir):
    from mxsql.registry import register_all
    from mxsql.registry.shell import Shell

    before = dict(spark.conf.getAll)
    sh = Shell(spark, out=io.StringIO(), err=io.StringIO())
    yield sh
    sh.close()
    for key in set(spark.conf.getAll) - set(before):
        spark.conf.unset(key)
    register_all(spark)


def test_the_shell_takes_a_model_by_set_and_refuses_one_outside_allowed_uris(
        spark, shell, runtime_dir, digits, tmp_path_factory):
    png = open(digits[1][0], "rb").read().hex()
    sets = "; ".join(f"SET {k}={v}" for k, v in _runtime_conf("rt", runtime_dir).items())
    assert shell.run_text(f"{sets}; SELECT mx_classify(X'{png}', 'rt').label") == 0, \
        shell.err.getvalue()
    assert shell.out.getvalue().splitlines()[-1] in UPPER

    outside = str(tmp_path_factory.mktemp("outside") / "m")
    key = model_key("rt", "uri")
    assert shell.run_statement(f"SET {key}={outside}") == 1
    assert f"{key}: {outside}-symbol.json is outside {ALLOWED_URIS_KEY}" in shell.err.getvalue()
    assert spark.conf.get(key) == runtime_dir  # the refused SET is undone
    assert shell.run_statement(f"SET {RUNTIME_MODELS_KEY}=false") == 1
    assert f"{RUNTIME_MODELS_KEY} cannot be changed with SET" in shell.err.getvalue()
    assert shell.run_statement(f"SELECT mx_classify(X'{png}', 'rt').label") == 0


# --- mxsql-thriftserver, from beeline -----------------------------------------------------

def _server(tmp_path_factory, digits, extra):
    root = tmp_path_factory.mktemp("server")
    args = ["--master", "local[1]", "--port", "0", "--conf", "spark.ui.enabled=false",
            "--conf", f"spark.mxsql.cacheDir={root / 'cache'}", *extra]
    for key, value in digits_demo.model_conf(digits[0]).items():
        args += ["--conf", f"{key}={value}"]
    return servers.ThriftServerProcess(args, log_path=str(root / "server.log"),
                                       env={"MXSQL_HOME": str(root / "home")}, deadline=300)


@pytest.fixture(scope="module")
def models_folder(digits, tmp_path_factory):
    return _copy_digits(digits[0], str(tmp_path_factory.mktemp("team-models") / "rt"),
                        labels=UPPER)


@pytest.fixture(scope="module")
def runtime_server(digits, models_folder, tmp_path_factory):
    extra = ["--conf", f"{RUNTIME_MODELS_KEY}=true",
             "--conf", f"{ALLOWED_URIS_KEY}={os.path.dirname(os.path.dirname(models_folder))}"]
    with _server(tmp_path_factory, digits, extra) as s:
        yield s


def _error_line(stderr: str) -> str:
    return next(line for line in stderr.splitlines() if line.startswith("Error: "))


@pytest.mark.slow
def test_a_default_server_refuses_a_model_set_naming_runtime_models(
        digits, models_folder, tmp_path_factory):
    key = model_key("rt", "uri")
    with _server(tmp_path_factory, digits, []) as server:
        code, out, err = servers.beeline(server.url, f"SET {key}={models_folder}; SELECT 1;")
        line = _error_line(err)
        assert f"forbids SET {key} in a connection: runtime models are off " \
               f"({RUNTIME_MODELS_KEY}=false" in line, err[-2000:]


@pytest.mark.slow
def test_a_runtime_model_is_used_in_its_connection_only(runtime_server, models_folder, digits):
    from pyhive import hive

    png = open(digits[1][0], "rb").read().hex()
    query = f"SELECT mx_classify(X'{png}', 'rt').label, mx_classify(X'{png}').label"
    other = hive.connect(host=runtime_server.host, port=runtime_server.port, auth="NONE",
                         username="other")
    try:
        sets = " ".join(f"SET {k}={v};" for k, v in _runtime_conf("rt", models_folder).items())
        code, out, err = servers.beeline(
            runtime_server.url, f"{sets} {query}; SELECT count(*) FROM mx_labels('rt');")
        assert code == 0, err[-3000:]
        *_, labels, count = out.strip().splitlines()
        runtime_label, default_label = labels.split("\t")
        assert runtime_label == default_label.upper() and count == "10"
        cursor = other.cursor()
        with pytest.raises(hive.OperationalError) as failed:
            cursor.execute(query)
        assert "unknown model 'rt'" in failed.value.args[0].status.errorMessage
    finally:
        other.close()


@pytest.mark.slow
def test_a_server_refuses_a_uri_outside_allowed_uris_naming_the_setting(
        runtime_server, tmp_path_factory):
    key = model_key("rt", "uri")
    outside = str(tmp_path_factory.mktemp("elsewhere") / "m")
    code, out, err = servers.beeline(
        runtime_server.url, f"SET {key}={outside}; SELECT mx_classify(X'00', 'rt');")
    assert code != 0
    line = _error_line(err)
    assert f"forbids SET {key} in a connection: {outside} is outside " \
           f"{ALLOWED_URIS_KEY}" in line, err[-2000:]


def test_a_load_error_never_shows_the_files_content(tmp_path, registered):
    folder = tmp_path / "start"
    folder.mkdir()
    (folder / "m-symbol.json").write_text("root:x:0:0:SECRETLINE\n")
    (folder / "m-0000.params").write_bytes(b"SECRETPARAMS")
    (folder / "synset.txt").write_text("SECRETLABEL\n")
    with pytest.raises(Exception) as failed:
        models.get_model(registered.model("default"), registered)
    assert "is not an MXNet symbol file" in str(failed.value)
    assert "SECRET" not in str(failed.value) and "oot:x" not in str(failed.value)
