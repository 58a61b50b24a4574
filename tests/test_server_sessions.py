"""mxsql-thriftserver for a team: a session per JDBC connection, the mx functions in each,
and the server's rules refusing, in that connection only, what reaches beyond the images.

One server for the module (local[2], the digits model as 'default'); connections are
PyHive's, held open side by side, and Spark's bundled beeline where the client's view of
an error matters.
"""

import os
import socket

import pytest

from demo import digits as digits_demo
from mxsql.registry.serverrules import ALLOWED_PATHS_KEY
from tests import servers

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def folders(digits, tmp_path_factory):
    """allowed: a folder under allowedPaths with a text file and a link out of it;
    secret: a folder outside it with a file a connection must not read."""
    root = tmp_path_factory.mktemp("rules")
    allowed, secret = root / "allowed", root / "secret"
    allowed.mkdir()
    secret.mkdir()
    (allowed / "notes.txt").write_text("allowed line\n")
    (secret / "credentials").write_text("aws_secret_access_key = hunter2\n")
    os.symlink(secret, allowed / "link")
    digit_folder = os.path.dirname(os.path.dirname(digits[1][0]))
    return {"root": root, "allowed": str(allowed), "secret": str(secret),
            "digits": digit_folder}


@pytest.fixture(scope="module")
def server(digits, folders):
    root = folders["root"]
    args = ["--master", "local[2]", "--port", "0", "--conf", "spark.ui.enabled=false",
            "--conf", f"spark.mxsql.cacheDir={root / 'cache'}",
            "--conf", f"{ALLOWED_PATHS_KEY}={folders['allowed']},{folders['digits']},"
                      "s3://images-bucket/digits/"]
    for key, value in digits_demo.model_conf(digits[0]).items():
        args += ["--conf", f"{key}={value}"]
    with servers.ThriftServerProcess(args, log_path=str(root / "server.log"),
                                     env={"MXSQL_HOME": str(root / "home")},
                                     deadline=300) as s:
        yield s


@pytest.fixture(scope="module")
def digits_table(server, folders):
    servers.pyhive_rows(server.host, server.port, (
        "CREATE TABLE rules_digits USING binaryFile "
        f"OPTIONS (path '{folders['digits']}', recursiveFileLookup 'true')"
    ))
    return "rules_digits"


class Connection:
    """One PyHive connection held open: ``rows`` runs a statement, ``error`` the message
    of one that must fail."""

    def __init__(self, server, user):
        from pyhive import hive

        self._hive = hive
        self.connection = hive.connect(host=server.host, port=server.port, auth="NONE",
                                       username=user)
        self.cursor = self.connection.cursor()

    def rows(self, sql):
        self.cursor.execute(sql)
        return self.cursor.fetchall() if self.cursor.description else []

    def error(self, sql) -> str:
        with pytest.raises(self._hive.OperationalError) as failed:
            self.cursor.execute(sql)
        return failed.value.args[0].status.errorMessage

    def close(self):
        self.connection.close()


@pytest.fixture
def two(server):
    a, b = Connection(server, "ana"), Connection(server, "ben")
    yield a, b
    a.close()
    b.close()


def _labels(connection, table, limit=5):
    return [label for (label,) in connection.rows(
        f"SELECT mx_classify(content).label FROM {table} ORDER BY path LIMIT {limit}")]


# --- a session per connection ----------------------------------------------------------

def test_mx_functions_answer_the_first_statement_of_a_new_connection(server):
    connection = Connection(server, "first")
    try:
        [(error,)] = connection.rows("SELECT mx_image_info(X'00').error")
    finally:
        connection.close()
    assert error.startswith("not an image")


def test_model_tables_answer_in_a_new_connection(server):
    connection = Connection(server, "tables")
    try:
        names = [name for (name,) in connection.rows("SELECT name FROM mx_models()")]
        labels = connection.rows("SELECT class_index FROM mx_labels() ORDER BY class_index")
    finally:
        connection.close()
    assert "default" in names
    assert [i for (i,) in labels] == list(range(10))


def test_use_set_and_temporary_views_stay_in_their_connection(two):
    a, b = two
    a.rows("CREATE DATABASE IF NOT EXISTS ana_db")
    a.rows("USE ana_db")
    a.rows("SET spark.mxsql.batchSize=7")
    a.rows("CREATE TEMPORARY VIEW ana_view AS SELECT 1 AS one")
    assert a.rows("SELECT current_database()") == [("ana_db",)]
    assert b.rows("SELECT current_database()") == [("default",)]
    assert a.rows("SET spark.mxsql.batchSize") == [("spark.mxsql.batchSize", "7")]
    assert b.rows("SET spark.mxsql.batchSize") == [("spark.mxsql.batchSize", "32")]
    assert a.rows("SELECT one FROM ana_view") == [(1,)]
    assert "TABLE_OR_VIEW_NOT_FOUND" in b.error("SELECT one FROM ana_view")


def test_workers_run_each_connections_own_settings(two, digits_table):
    a, b = two
    a.rows("SET spark.mxsql.maxImagePixels=1")  # every digit is too large for ana
    assert _labels(a, digits_table) == [None] * 5
    labels = _labels(b, digits_table)
    assert all(label in digits_demo.NAMES for label in labels)
    a.rows("RESET spark.mxsql.maxImagePixels")
    assert _labels(a, digits_table) == labels


def test_malformed_set_fails_at_once_naming_the_key_and_nobody_else_notices(
        two, digits_table):
    a, b = two
    assert "spark.mxsql.batchSize='abc': must be a positive integer" in \
        a.error("SET spark.mxsql.batchSize=abc")
    assert "did you mean 'spark.mxsql.onError'" in a.error("SET spark.mxsql.onerror=fail")
    assert a.rows("SET spark.mxsql.batchSize") == [("spark.mxsql.batchSize", "32")]
    assert all(label in digits_demo.NAMES for label in _labels(a, digits_table, 2))
    assert all(label in digits_demo.NAMES for label in _labels(b, digits_table, 2))


@pytest.mark.parametrize("key", ["spark.mxsql.model.default.uri",
                                 "spark.mxsql.model.other.uri", ALLOWED_PATHS_KEY,
                                 "fs.defaultFS"])
def test_set_of_the_servers_keys_is_refused_at_once_naming_the_key(server, key):
    connection = Connection(server, "mallory")
    try:
        message = connection.error(f"SET {key}=/elsewhere")
        assert connection.rows("SELECT 1") == [(1,)]
    finally:
        connection.close()
    assert f"mxsql-thriftserver forbids SET {key} in a connection" in message


# --- what a connection may not reach ---------------------------------------------------

_REFUSED = [
    ("SELECT java_method('java.lang.System', 'getenv', 'HOME')", "forbids java_method"),
    ("SELECT reflect('java.lang.System', 'getProperty', 'user.home')", "forbids reflect"),
    ("SELECT system.builtin.try_reflect('java.lang.System', 'getenv', 'HOME')",
     "forbids try_reflect"),
    ("ADD JAR {secret}/x.jar", "forbids ADD JAR"),
    ("ADD FILE {secret}/credentials", "forbids ADD FILE"),
    ("ADD ARCHIVE {secret}/x.zip", "forbids ADD ARCHIVE"),
    ("CREATE FUNCTION f AS 'x.Y' USING JAR '{allowed}/x.jar'", "forbids CREATE FUNCTION"),
    ("CREATE TEMPORARY FUNCTION r AS "
     "'org.apache.hadoop.hive.ql.udf.generic.GenericUDFReflect'", "forbids CREATE FUNCTION"),
    ("SELECT * FROM text.`{secret}/credentials`", "forbids reading {secret}/credentials"),
    ("SELECT * FROM text.`file://{secret}/credentials`", "forbids reading"),
    # The message names the path as given and where it leads.
    ("SELECT * FROM text.`{allowed}/../secret/credentials`",
     "resolves to {secret}/credentials"),
    ("SELECT * FROM text.`{allowed}/link/credentials`", "resolves to {secret}/credentials"),
    ("SELECT count(*) FROM (SELECT * FROM text.`{secret}`)", "forbids reading"),
    # Refused before Spark reads a footer (whose error showed a file's last bytes) or
    # finds a path missing (which told whether it exists).
    ("SELECT * FROM parquet.`{secret}/credentials`", "forbids reading {secret}/credentials"),
    ("SELECT * FROM json.`{secret}/missing`", "forbids reading {secret}/missing"),
    ("CREATE TEMPORARY VIEW leak USING text OPTIONS (path '{secret}')",
     "forbids a text view over {secret}"),
    ("CREATE TABLE leak USING text OPTIONS (path '{secret}')", "forbids a table"),
    ("CREATE TABLE leak (line STRING) USING text LOCATION '{secret}'",
     "forbids a table LOCATION"),
    ("CREATE TABLE leak (line STRING) STORED AS TEXTFILE LOCATION '{secret}'",
     "forbids a table LOCATION"),
    ("INSERT OVERWRITE DIRECTORY '{secret}/out' USING text SELECT 'x'",
     "forbids writing to {secret}/out"),
    ("INSERT OVERWRITE LOCAL DIRECTORY '{secret}/out' SELECT 'x'", "forbids writing to"),
    ("LOAD DATA LOCAL INPATH '{secret}/credentials' INTO TABLE lines",
     "forbids LOAD DATA from"),
    ("ALTER TABLE lines SET LOCATION '{secret}'", "forbids a table LOCATION"),
    ("CREATE TEMPORARY VIEW s3_leak USING mxsql_s3 OPTIONS (path 's3://images-bucket/private/')",
     "forbids a mxsql_s3 view over s3://images-bucket/private/"),
    # Script transforms run shell commands, also nested or through EXECUTE IMMEDIATE.
    ("SELECT TRANSFORM(1) USING 'cat {secret}/credentials' AS (line STRING)",
     "forbids TRANSFORM"),
    ("EXECUTE IMMEDIATE 'SELECT count(*) FROM (SELECT TRANSFORM(1) USING ''id'' AS (x))'",
     "forbids TRANSFORM"),
    # JDBC reaches other hosts, and files through Derby's embedded URLs; so may any
    # provider that is not a file format, by name or by class.
    ("CREATE TEMPORARY VIEW j USING jdbc OPTIONS "
     "(url 'jdbc:derby:{secret}/db;create=true', dbtable 'SYS.SYSTABLES')",
     "forbids a view USING jdbc"),
    ("CREATE TABLE j USING org.apache.spark.sql.execution.datasources.jdbc.JdbcRelationProvider "
     "OPTIONS (url 'jdbc:derby:memory:x;create=true', dbtable 'SYS.SYSTABLES')",
     "forbids a table USING org.apache.spark.sql.execution.datasources.jdbc"),
    ("CREATE TEMPORARY VIEW s USING socket OPTIONS (host '127.0.0.1', port '22')",
     "forbids a view USING socket"),
    ("CREATE TABLE state USING statestore OPTIONS (path '{allowed}')",
     "forbids a table USING statestore"),
    ("SET hive.exec.stagingdir=../../../secret", "forbids SET hive.exec.stagingdir"),
    ("SET spark.sql.redaction.string.regex=none", "forbids SET spark.sql.redaction"),
    ("ALTER TABLE lines SET SERDEPROPERTIES ('path' = '{secret}')", "forbids ALTER TABLE"),
    ("CREATE TABLE leak LIKE lines LOCATION '{secret}'", "forbids a table LOCATION"),
    # Its tables would live there, and DROP DATABASE … CASCADE deletes the folder.
    ("CREATE DATABASE leak LOCATION '{secret}'", "forbids a database LOCATION {secret}"),
]


@pytest.fixture(scope="module")
def lines_table(server):
    servers.pyhive_rows(server.host, server.port,
                        "CREATE TABLE IF NOT EXISTS lines (line STRING) STORED AS TEXTFILE")
    return "lines"


@pytest.mark.parametrize("statement, expected", _REFUSED, ids=[s[:48] for s, _ in _REFUSED])
def test_statement_reaching_beyond_the_images_is_refused_in_its_connection(
        server, folders, lines_table, statement, expected):
    connection = Connection(server, "mallory")
    try:
        message = connection.error(statement.format(**folders))
        assert connection.rows("SELECT 1") == [(1,)]  # the connection carries on
    finally:
        connection.close()
    assert "java.lang.SecurityException: mxsql-thriftserver forbids" in message
    assert expected.format(**folders) in message
    assert "hunter2" not in message


def test_settings_given_when_connecting_obey_the_rules_of_set(server):
    # Spark applies a client's set:hiveconf: keys (a JDBC URL's ?key=value) without a SET.
    from pyhive import hive

    catalog = "org.apache.spark.sql.execution.datasources.v2.jdbc.JDBCTableCatalog"
    with pytest.raises(hive.OperationalError) as refused:
        hive.connect(host=server.host, port=server.port, auth="NONE", username="mallory",
                     configuration={"set:hiveconf:spark.sql.catalog.x": catalog})
    assert "forbids SET spark.sql.catalog.x in a connection" in \
        refused.value.args[0].status.errorMessage
    allowed = hive.connect(host=server.host, port=server.port, auth="NONE", username="ana",
                           configuration={"set:hiveconf:spark.mxsql.batchSize": "5"})
    try:
        cursor = allowed.cursor()
        cursor.execute("SET spark.mxsql.batchSize")
        assert cursor.fetchall() == [("spark.mxsql.batchSize", "5")]
    finally:
        allowed.close()


def test_files_under_allowed_paths_and_the_warehouse_work_as_before(server, folders):
    connection = Connection(server, "ana")
    try:
        assert connection.rows(f"SELECT * FROM text.`{folders['allowed']}/notes.txt`") == \
            [("allowed line",)]
        connection.rows(f"CREATE TEMPORARY VIEW notes USING text "
                        f"OPTIONS (path '{folders['allowed']}/notes.txt')")
        assert connection.rows("SELECT * FROM notes") == [("allowed line",)]
        connection.rows("CREATE TABLE IF NOT EXISTS managed (n INT) USING parquet")
        connection.rows("INSERT INTO managed VALUES (1)")
        assert connection.rows("SELECT n FROM managed") == [(1,)]
    finally:
        connection.close()


def test_binary_file_table_over_an_allowed_folder_classifies(server, digits_table, digits):
    rows = servers.pyhive_rows(server.host, server.port,
                               f"SELECT path, mx_classify(content).label FROM {digits_table}")
    assert len(rows) == len(digits[1])
    correct = sum(label == digits_demo.label_of(path) for path, label in rows)
    assert correct >= 0.9 * len(rows)


# --- one clean line in beeline -------------------------------------------------------------

def _error_lines(stderr: str):
    return [line for line in stderr.splitlines()
            if line.strip() and "incubator modules" not in line]


@pytest.mark.parametrize("statement, expected", [
    ("SELECT java_method('java.lang.System', 'getenv', 'HOME');",
     "java.lang.SecurityException: mxsql-thriftserver forbids java_method"),
    ("SELECT mx_classify(X'00', 'nomodel');", "unknown model 'nomodel'"),
    ("SET spark.mxsql.onError=maybe;", "spark.mxsql.onError='maybe': must be one of"),
])
def test_beeline_shows_an_error_without_java_or_python_stack(server, statement, expected):
    code, out, err = servers.beeline(server.url, statement + " SELECT 'still here';")
    lines = _error_lines(err)
    assert lines and lines[0].startswith("Error: ") and expected in lines[0], err[-3000:]
    assert len(lines) <= 2, err[-3000:]  # the message, and at most its SQLSTATE line
    assert "\tat " not in err and "Traceback" not in err
    code, out, err = servers.beeline(server.url, "SELECT 'still here';")
    assert code == 0 and out.strip() == "still here"


# --- under load ----------------------------------------------------------------------------

def _server_rss(server) -> int:
    import psutil

    total = 0
    for process in server.processes():
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def test_eight_connections_at_once_each_get_their_own_results(server, digits_table):
    import threading

    reference = _labels(Connection(server, "reference"), digits_table)
    rss_before = _server_rss(server)
    results, errors = {}, {}

    def client(i):
        connection = Connection(server, f"user{i}")
        fail = i % 2 == 1
        try:
            connection.rows(f"CREATE DATABASE IF NOT EXISTS load_{i}")
            connection.rows(f"USE load_{i}")
            connection.rows(f"SET spark.mxsql.batchSize={i + 1}")
            connection.rows(f"SET spark.mxsql.onError={'fail' if fail else 'null'}")
            connection.rows(f"CREATE TABLE IF NOT EXISTS mine AS SELECT {i} AS n")
            got = {
                "n": connection.rows("SELECT n FROM mine"),
                "labels": _labels(connection, f"default.{digits_table}"),
                "batch": connection.rows("SET spark.mxsql.batchSize"),
            }
            bad_image = "SELECT mx_classify(X'00').label"
            got["bad"] = ("error" if "not an image" in connection.error(bad_image) else "?") \
                if fail else connection.rows(bad_image)
            results[i] = got
        except Exception as e:  # reported below, with the connection that raised it
            errors[i] = repr(e)
        finally:
            connection.close()

    victim = Connection(server, "dropped")
    sent = threading.Event()

    def long_query():
        sent.set()
        try:
            victim.cursor.execute(
                f"SELECT count(mx_classify(a.content)) FROM {digits_table} a "
                "CROSS JOIN (SELECT id FROM range(4)) b")
        except Exception:  # its connection is cut under it
            pass

    dropper = threading.Thread(target=long_query)
    dropper.start()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    sent.wait(60)
    # Cut the long query's connection while it runs and the others work.
    victim.connection._transport._trans.handle.shutdown(socket.SHUT_RDWR)
    for thread in threads + [dropper]:
        thread.join(timeout=900)
    assert not errors, errors
    for i in range(8):
        assert results[i]["n"] == [(i,)]
        assert results[i]["labels"] == reference
        assert results[i]["batch"] == [("spark.mxsql.batchSize", str(i + 1))]
        assert results[i]["bad"] == ("error" if i % 2 else [(None,)])
    # Memory stays bounded: a generous bound over the start (models load once per worker).
    assert _server_rss(server) - rss_before < 2 * 1024 ** 3
    assert servers.pyhive_rows(server.host, server.port, "SELECT 1") == [(1,)]


def test_single_session_on_request_shares_one_session_with_the_rules(tmp_path):
    args = ["--master", "local[1]", "--port", "0", "--conf", "spark.ui.enabled=false",
            "--conf", "spark.sql.hive.thriftServer.singleSession=true"]
    with servers.ThriftServerProcess(args, log_path=str(tmp_path / "server.log"),
                                     env={"MXSQL_HOME": str(tmp_path / "home")},
                                     deadline=300) as single:
        a, b = Connection(single, "ana"), Connection(single, "ben")
        try:
            a.rows("CREATE DATABASE shared_db")
            a.rows("USE shared_db")
            assert b.rows("SELECT current_database()") == [("shared_db",)]
            assert b.rows("SELECT mx_image_info(X'00').error")[0][0].startswith("not an image")
            assert "forbids reflect" in b.error(
                "SELECT reflect('java.lang.System', 'lineSeparator')")
        finally:
            a.close()
            b.close()
