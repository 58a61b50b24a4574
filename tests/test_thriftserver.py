"""mxsql-thriftserver: Spark's Thrift server with the mx functions, for BI tools.

The server runs in its own process (static settings of its own) with a
home of its own (its own Derby metastore), is reached with Spark's bundled beeline and
with PyHive, and is stopped by the test that started it. Its stderr carries the Python
workers' stderr (local mode): the tests read model loads and, with MXSQL_LOG_LEVEL=DEBUG,
every batch the network runs on, from there.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections import Counter

import psutil
import pytest

from demo import digits as digits_demo
from mxsql.registry.serverrules import ALLOWED_PATHS_KEY
from mxsql.registry.thriftserver import AUTH_KEY, HOST_KEY, PORT_KEY, server_conf
from mxsql.udfs.errors import ConfigError
from mxsql.udfs.logs import parse_loaded_models
from tests import servers
from tests.s3server import FAKE_CREDENTIALS, MotoServer

_BATCH_ROWS = 64  # spark.sql.execution.arrow.maxRecordsPerBatch the server runs with
_RUNS_ON = re.compile(r"DEBUG mxsql: model 'default' runs on (\d+) rows \(pid (\d+)\)")
_HADOOP_HOST = "spark.hadoop." + HOST_KEY
_HADOOP_PORT = "spark.hadoop." + PORT_KEY
_BUCKET = "mxsql-thrift"


# --- the command line, without a server ----------------------------------------------

def test_binds_loopback_unless_told_otherwise():
    assert server_conf()[_HADOOP_HOST] == "127.0.0.1"


def test_host_and_port_are_shorthands_for_spark_hiveconf_settings():
    login = f"{AUTH_KEY}=LDAP"
    shorthand = server_conf(host="0.0.0.0", port=10001, hiveconf=[login])
    hiveconf = server_conf(hiveconf=[f"{HOST_KEY}=0.0.0.0", f"{PORT_KEY}=10001", login])
    assert shorthand == hiveconf
    assert shorthand[_HADOOP_HOST] == "0.0.0.0" and shorthand[_HADOOP_PORT] == "10001"


def test_host_from_the_properties_file_is_kept():
    conf = server_conf(base={_HADOOP_HOST: "10.1.2.3", "spark.hadoop." + AUTH_KEY: "LDAP"})
    assert _HADOOP_HOST not in conf  # the file's value stays in force under --conf


def test_port_that_contradicts_hiveconf_is_rejected():
    with pytest.raises(ConfigError, match=f"--port 10001 contradicts {PORT_KEY}=10002"):
        server_conf(hiveconf=[f"{PORT_KEY}=10002"], port=10001)


def test_a_session_per_connection_unless_the_operator_asks_for_one():
    assert "spark.sql.hive.thriftServer.singleSession" not in server_conf()  # Spark: false
    single = server_conf(conf=["spark.sql.hive.thriftServer.singleSession=true"])
    assert single["spark.sql.hive.thriftServer.singleSession"] == "true"


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", ""])
def test_address_beyond_loopback_without_login_is_refused_naming_the_fixes(host):
    with pytest.raises(ConfigError, match=f"{HOST_KEY}={host} with {AUTH_KEY}=NONE: .*"
                                          f"set {AUTH_KEY}=LDAP.*--host 127.0.0.1"):
        server_conf(host=host)
    with pytest.raises(ConfigError, match=f"{AUTH_KEY}=NOSASL"):
        server_conf(hiveconf=[f"{HOST_KEY}={host}", f"{AUTH_KEY}=NOSASL"])


def test_address_beyond_loopback_with_ldap_login_is_accepted():
    conf = server_conf(host="0.0.0.0", hiveconf=[f"{AUTH_KEY}=LDAP"])
    assert conf[_HADOOP_HOST] == "0.0.0.0"
    assert server_conf(base={_HADOOP_HOST: "::1"})  # loopback in IPv6


def test_clean_errors_are_server_defaults_an_operator_may_override():
    assert server_conf()["spark.sql.hive.thriftServer.async"] == "false"
    assert "spark.sql.hive.thriftServer.async" not in server_conf(
        base={"spark.sql.hive.thriftServer.async": "true"})


def test_malformed_setting_is_rejected_naming_the_option():
    with pytest.raises(ConfigError,
                       match="--hiveconf expects KEY=VALUE, got 'hive.server2.thrift.port'"):
        server_conf(hiveconf=["hive.server2.thrift.port"])


# --- one server for the JDBC tests -----------------------------------------------------

@pytest.fixture(scope="module")
def digit_folder(digits):
    return os.path.dirname(os.path.dirname(digits[1][0]))


@pytest.fixture(scope="module")
def moto():
    with MotoServer() as s3:
        yield s3


@pytest.fixture(scope="module")
def server(digits, moto, tmp_path_factory):
    """A running server: local[2], the digits model as 'default', per-batch DEBUG lines,
    moto as its S3 endpoint, and a credentials file whose profile 'admin' moto accepts."""
    root = tmp_path_factory.mktemp("thriftserver")
    args = ["--master", "local[2]", "--port", "0", "--conf", "spark.ui.enabled=false",
            "--conf", f"spark.sql.execution.arrow.maxRecordsPerBatch={_BATCH_ROWS}",
            "--conf", f"spark.mxsql.cacheDir={root / 'cache'}",
            "--conf", f"spark.mxsql.s3.endpoint={moto.endpoint}",
            # The digits, the 10,000 images and the test bucket are read by path.
            "--conf", f"{ALLOWED_PATHS_KEY}={tmp_path_factory.getbasetemp()},s3://{_BUCKET}/"]
    for key, value in digits_demo.model_conf(digits[0]).items():
        args += ["--conf", f"{key}={value}"]
    credentials = root / "credentials"
    credentials.write_text("[admin]\naws_access_key_id = admin\naws_secret_access_key = admin\n")
    env = {"MXSQL_HOME": str(root / "home"), "MXSQL_LOG_LEVEL": "DEBUG", **FAKE_CREDENTIALS,
           "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
           "AWS_CONFIG_FILE": str(root / "no-config")}
    with servers.ThriftServerProcess(args, log_path=str(root / "server.log"), env=env) as s:
        yield s


@pytest.fixture(scope="module")
def digits_table(server, digit_folder):
    servers.pyhive_rows(server.host, server.port, (
        f"CREATE TABLE digits USING binaryFile "
        f"OPTIONS (path '{digit_folder}', recursiveFileLookup 'true')"
    ))
    return "digits"


@pytest.fixture(scope="module")
def s3_digits(moto, digits):
    """s3://mxsql-thrift/digits/ with 20 of the held-out digit PNGs."""
    client = moto.client()
    client.create_bucket(Bucket=_BUCKET)
    for path in digits[1][:20]:
        with open(path, "rb") as f:
            client.put_object(Bucket=_BUCKET, Key=f"digits/{os.path.basename(path)}",
                              Body=f.read())
    return f"s3://{_BUCKET}/digits/"


@pytest.fixture(scope="module")
def images_10k(server, digits, tmp_path_factory):
    """Table images10k: 10,000 digit PNGs in one folder, the true label in each name."""
    folder = tmp_path_factory.mktemp("images10k")
    test_paths = digits[1]
    for i in range(10_000):
        source = test_paths[i % len(test_paths)]
        shutil.copyfile(source, folder / f"{digits_demo.label_of(source)}-{i:05d}.png")
    servers.pyhive_rows(server.host, server.port,
                        f"CREATE TABLE images10k USING binaryFile OPTIONS (path '{folder}')")
    return "images10k"


def _folder_label(path: str) -> str:
    return os.path.basename(os.path.dirname(path))


def _accuracy(rows) -> float:
    return sum(label == _folder_label(path) for path, label in rows) / len(rows)


def _classify_all(server, table: str, *, user: str = "tester"):
    return sorted(servers.pyhive_rows(
        server.host, server.port, f"SELECT path, mx_classify(content).label FROM {table}",
        user=user,
    ))


def _worker_log(server, since: int, *, expect_lines: bool = True) -> str:
    """The server's log from byte ``since``, once the workers' lines have arrived."""
    # Workers write before they return results, but their stderr reaches the log through
    # a JVM thread: give it a moment when lines are expected.
    if expect_lines:
        servers.poll(lambda: _RUNS_ON.search(server.log(since)), deadline=10,
                     what="a worker's per-batch log line")
    return server.log(since)


def _default_model_loads(log: str) -> list:
    """The pids of the workers that logged loading the model 'default', one per load."""
    return [load.pid for load in parse_loaded_models(log) if load.model == "default"]


@pytest.mark.slow
def test_logs_where_it_listens_and_listens_on_loopback_only(server):
    assert f"listening on 127.0.0.1:{server.port} (jdbc:hive2://127.0.0.1:{server.port}/)" \
        in server.log()
    listening = {
        c.laddr.ip for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == server.port
    }
    assert listening and listening <= {"127.0.0.1", "::ffff:127.0.0.1"}


@pytest.mark.slow
def test_beeline_creates_a_table_and_classifies_digits(server, digit_folder, digits):
    code, out, err = servers.beeline(server.url, (
        f"CREATE TABLE beeline_digits USING binaryFile "
        f"OPTIONS (path '{digit_folder}', recursiveFileLookup 'true');"
        f"SELECT path, mx_classify(content).label FROM beeline_digits;"
    ))
    assert code == 0, err
    rows = [line.split("\t") for line in out.splitlines() if line.strip()]
    assert len(rows) == len(digits[1])
    assert _accuracy(rows) >= 0.9


@pytest.mark.slow
def test_pyhive_reads_label_and_probability_of_one_call(server, digits_table, digits):
    rows = servers.pyhive_rows(server.host, server.port, (
        "SELECT path, c.label, c.probability FROM "
        f"(SELECT path, mx_classify(content) AS c FROM {digits_table})"
    ))
    assert len(rows) == len(digits[1])
    assert _accuracy([(path, label) for path, label, _ in rows]) >= 0.9
    assert all(0.0 < p <= 1.0 for _, _, p in rows)


@pytest.mark.slow
def test_four_concurrent_clients_get_the_same_correct_labels(server, digits_table):
    reference = _classify_all(server, digits_table)
    results = [None] * 4

    def client(i):
        results[i] = _classify_all(server, digits_table, user=f"client{i}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert _accuracy(reference) >= 0.9
    assert results == [reference] * 4


@pytest.mark.slow
def test_model_is_loaded_once_per_worker_not_per_connection(server, digits_table):
    since = server.log_size()
    queries = 0
    for user in ("ana", "ben", "cy", "dee"):
        for _ in range(2):
            _classify_all(server, digits_table, user=user)
            queries += 1
    loads_here = _default_model_loads(_worker_log(server, since))
    per_pid = Counter(_default_model_loads(server.log()))
    assert per_pid and set(per_pid.values()) == {1}, per_pid
    assert len(loads_here) < queries


@pytest.mark.slow
def test_worker_log_counts_every_row_the_network_runs_on(server, digits_table, digits):
    since = server.log_size()
    _classify_all(server, digits_table)
    ran = [int(n) for n, _ in _RUNS_ON.findall(_worker_log(server, since))]
    assert sum(ran) == len(digits[1])


@pytest.mark.slow
def test_limit_10_over_10000_images_runs_the_network_on_a_batch_or_two(server, images_10k):
    """A BI tool's preview: the workers' own log shows the rows the network ran on."""
    since = server.log_size()
    query = f"SELECT path, mx_classify(content).label FROM {images_10k} LIMIT 10"
    rows = servers.pyhive_rows(server.host, server.port, query)
    assert len(rows) == 10
    assert all(label in digits_demo.NAMES for _, label in rows)
    ran = [int(n) for n, _ in _RUNS_ON.findall(_worker_log(server, since))]
    assert 1 <= len(ran) <= 2 and sum(ran) <= 2 * _BATCH_ROWS, ran


@pytest.mark.slow
@pytest.mark.parametrize("model", ["default", "other"])
def test_set_of_a_models_source_is_refused_in_that_connection(server, digits_table, model):
    from pyhive import hive

    connection = hive.connect(host=server.host, port=server.port, auth="NONE", username="mallory")
    try:
        with pytest.raises(hive.OperationalError,
                           match=f"forbids SET spark.mxsql.model.{model}.uri in a connection"):
            connection.cursor().execute(f"SET spark.mxsql.model.{model}.uri=/elsewhere/net")
    finally:
        connection.close()
    rows = servers.pyhive_rows(server.host, server.port,
                               f"SELECT mx_classify(content).label FROM {digits_table} LIMIT 3")
    assert len(rows) == 3 and all(label in digits_demo.NAMES for (label,) in rows)


def _s3_view_rows(server, view: str, options: str):
    """Rows of a count over a temporary ``mxsql_s3`` view, dropped after (one session for all)."""
    from pyhive import hive

    connection = hive.connect(host=server.host, port=server.port, auth="NONE", username="mallory")
    cursor = connection.cursor()
    try:
        cursor.execute(f"CREATE TEMPORARY VIEW {view} USING mxsql_s3 OPTIONS ({options})")
        cursor.execute(f"SELECT count(content) FROM {view}")
        return cursor.fetchall()
    finally:
        cursor.execute(f"DROP VIEW IF EXISTS {view}")
        connection.close()


@pytest.mark.slow
@pytest.mark.parametrize("option, value", [("profile", "admin"),
                                           ("endpoint", "http://127.0.0.1:1")])
def test_s3_profile_or_endpoint_other_than_the_servers_is_refused_naming_the_option(
        server, s3_digits, option, value):
    """Else a JDBC user reads with the host's 'admin' profile, or sends the server's
    credentials to an endpoint of their choosing."""
    from pyhive import hive

    # PyHive's message holds the server's reply as a repr: its quotes are escaped.
    with pytest.raises(hive.OperationalError,
                       match=f"mxsql_s3: option .{{1,3}}{option}.{{1,3}} is fixed by the server: "
                             f".* restarting the server with --conf spark.mxsql.s3.{option}=") \
            as refused:
        _s3_view_rows(server, f"s3_other_{option}",
                      f"path '{s3_digits}', {option} '{value}'")
    assert value not in str(refused.value)


@pytest.mark.slow
def test_s3_reads_with_the_servers_own_endpoint_given_or_not(server, s3_digits, moto):
    own = _s3_view_rows(server, "s3_own", f"path '{s3_digits}', endpoint '{moto.endpoint}', "
                                          "region 'eu-west-1'")
    unset = _s3_view_rows(server, "s3_unset", f"path '{s3_digits}'")
    assert own == unset == [(20,)]


# --- Hive inside the server -----------------------------------------------------------

# Builds a new Hive object (Hive.get with needsRefresh), as SessionState.close does on a
# Thrift worker thread that has none, after the server's start step or only the metastore.
_NEW_HIVE_OBJECT = """
import sys
from py4j.protocol import Py4JJavaError
from mxsql.registry import thriftserver
from mxsql.registry.session import build_session

conf = thriftserver.server_conf(port=0, conf=["spark.ui.enabled=false"])
spark = build_session(conf, master="local[1]", app_name="new-hive-object")
server = thriftserver.start(spark) if sys.argv[1] == "start" else None
spark.catalog.databaseExists("default")
jvm = spark._jvm
try:
    jvm.org.apache.hadoop.hive.ql.metadata.Hive.get(jvm.org.apache.hadoop.hive.conf.HiveConf(),
                                                    True)
    print("new Hive object: ok")
except Py4JJavaError as e:
    print("new Hive object:", e.java_exception.toString())
if server is not None:
    server.stop()
spark.stop()
"""


def _new_hive_object(tmp_path, step: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _NEW_HIVE_OBJECT, step],
        env={**os.environ, "MXSQL_HOME": str(tmp_path / "home")},
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return re.search(r"new Hive object: (.*)", done.stdout).group(1)


@pytest.mark.slow
def test_new_hive_object_fails_in_a_plain_session_because_pyspark_lacks_llap(tmp_path):
    """The defect the server's start step works around: Hive's FunctionRegistry needs
    hive-llap-common, which pyspark does not ship, and a new Hive object registers it."""
    assert _new_hive_object(tmp_path, "metastore only") == (
        "java.lang.NoClassDefFoundError: org/apache/hadoop/hive/llap/security/LlapSigner$Signable"
    )


@pytest.mark.slow
def test_new_hive_object_after_start_skips_hives_function_registry(tmp_path):
    """A JDBC CloseSession builds one: it must not fail on the missing llap classes."""
    assert _new_hive_object(tmp_path, "start") == "ok"


# --- starting and stopping -------------------------------------------------------------

def _bare_server_args(*extra):
    return ["--master", "local[1]", "--conf", "spark.ui.enabled=false", *extra]


@pytest.mark.slow
@pytest.mark.parametrize("signum, group", [
    pytest.param(signal.SIGTERM, False, id="SIGTERM"),
    pytest.param(signal.SIGINT, True, id="ctrl-c"),
])
def test_signal_stops_the_server_and_exits_0(tmp_path, signum, group):
    args = _bare_server_args("--hiveconf", f"{PORT_KEY}=0",
                             "--hiveconf", f"{HOST_KEY}=127.0.0.1")
    with servers.ThriftServerProcess(args, log_path=str(tmp_path / "server.log"),
                                     env={"MXSQL_HOME": str(tmp_path / "home")}) as server:
        processes = server.processes()
        assert server.stop(signum, group=group) == 0, server.log()[-3000:]
        _, alive = psutil.wait_procs(processes, timeout=30)
        assert not alive
        assert f"{signal.Signals(signum).name} received: stopping" in server.log()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((server.host, server.port), timeout=5).close()


@pytest.mark.slow
def test_port_in_use_exits_1_and_says_why(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "mxsql-thriftserver"),
             *_bare_server_args("--port", str(port))],
            env={**os.environ, "MXSQL_HOME": str(tmp_path / "home")},
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180,
        )
    assert done.returncode == 1
    assert "the Thrift server failed" in done.stderr
    assert re.search(r"Address already in use|Could not create ServerSocket", done.stderr)
