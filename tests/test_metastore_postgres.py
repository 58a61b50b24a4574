"""A PostgreSQL-backed Hive metastore shared by two processes at once.

Real parts: Debian's PostgreSQL on 127.0.0.1 (run as the postgres user), the JDBC driver
from libpostgresql-jdbc-java, mxsql-thriftserver and the mxsql shell. The server starts
first, alone, and creates the Hive schema before it listens (DataNucleus creates every
table at start-up with the settings spark-defaults.conf documents); then `mxsql -e` runs
beside it.
"""

import os
import subprocess
import sys

import pytest

from demo import digits as digits_demo
from tests import servers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JDBC_JAR = "/usr/share/java/postgresql.jar"


def metastore_conf(url: str) -> dict:
    """The PostgreSQL metastore settings, as spark-defaults.conf documents them."""
    return {
        "spark.hadoop.javax.jdo.option.ConnectionURL": url,
        "spark.hadoop.javax.jdo.option.ConnectionDriverName": "org.postgresql.Driver",
        "spark.hadoop.javax.jdo.option.ConnectionUserName": servers.PostgresServer.USER,
        "spark.driver.extraClassPath": JDBC_JAR,
        "spark.hadoop.datanucleus.schema.autoCreateAll": "true",
        "spark.hadoop.hive.metastore.schema.verification": "false",
        "spark.hadoop.datanucleus.autoStartMechanism": "MetaData",
        "spark.hadoop.datanucleus.autoStartMetaDataFiles": "package.jdo",
    }


def _documented_metastore_keys() -> set:
    """Keys of the commented PostgreSQL block in spark-defaults.conf."""
    keys, inside = set(), False
    with open(os.path.join(ROOT, "spark-defaults.conf"), encoding="utf-8") as f:
        for line in f:
            if line.startswith("# A shared catalog: the Hive metastore in PostgreSQL"):
                inside = True
            elif inside and line.startswith("# ----") and keys:
                break
            elif inside and line.startswith("# spark."):
                keys.add(line[2:].split()[0])
    return keys


def test_spark_defaults_documents_the_settings_tested_here():
    password = "spark.hadoop.javax.jdo.option.ConnectionPassword"  # trust auth in the test
    assert _documented_metastore_keys() - {password} == set(metastore_conf("url"))


def _conf_args(conf: dict) -> list:
    return [arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")]


@pytest.fixture(scope="module")
def postgres():
    if not os.path.exists(JDBC_JAR):
        pytest.fail(f"{JDBC_JAR} is missing: install libpostgresql-jdbc-java (.ci/setup)")
    with servers.PostgresServer() as pg:
        yield pg


@pytest.fixture(scope="module")
def shared(postgres, digits, tmp_path_factory):
    """conf and environment both processes use: one metastore, one warehouse."""
    root = tmp_path_factory.mktemp("pg-metastore")
    conf = {
        **metastore_conf(postgres.create_database("metastore")),
        **digits_demo.model_conf(digits[0]),
        "spark.ui.enabled": "false",
        "spark.mxsql.cacheDir": str(root / "cache"),
    }
    return conf, {"MXSQL_HOME": str(root / "home")}, root


@pytest.fixture(scope="module")
def server(shared):
    conf, env, root = shared
    args = ["--master", "local[2]", "--port", "0", *_conf_args(conf)]
    with servers.ThriftServerProcess(args, log_path=str(root / "server.log"), env=env,
                                     deadline=240) as s:
        yield s


@pytest.fixture(scope="module")
def shell_beside_server(server, shared, digits):
    """Over JDBC, the server creates table made_by_server; then, while the server runs,
    `mxsql -e` creates made_by_shell over the digit PNGs and reads made_by_server."""
    servers.pyhive_rows(server.host, server.port,
                        "CREATE TABLE made_by_server (id INT, name STRING) USING parquet")
    servers.pyhive_rows(server.host, server.port,
                        "INSERT INTO made_by_server VALUES (1, 'one'), (2, 'two')")
    conf, env, _ = shared
    folder = os.path.dirname(os.path.dirname(digits[1][0]))
    sql = (f"CREATE TABLE made_by_shell USING binaryFile "
           f"OPTIONS (path '{folder}', recursiveFileLookup 'true'); "
           f"SELECT id, name FROM made_by_server ORDER BY id;")
    done = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "mxsql"), "-S", "--master", "local[1]",
         *_conf_args(conf), "-e", sql],
        env={**os.environ, **env}, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_server_sees_and_classifies_a_table_the_shell_created(server, shell_beside_server,
                                                             digits):
    tables = {name for _, name, _ in servers.pyhive_rows(server.host, server.port, "SHOW TABLES")}
    assert "made_by_shell" in tables
    rows = servers.pyhive_rows(server.host, server.port,
                               "SELECT path, mx_classify(content).label FROM made_by_shell")
    assert len(rows) == len(digits[1])
    correct = sum(label == os.path.basename(os.path.dirname(path)) for path, label in rows)
    assert correct / len(rows) >= 0.9


@pytest.mark.slow
def test_shell_reads_a_table_the_server_created_while_it_runs(shell_beside_server):
    assert shell_beside_server.splitlines() == ["1\tone", "2\ttwo"]


@pytest.mark.slow
def test_both_tables_live_in_postgresql(postgres, shell_beside_server):
    names = postgres.psql('SELECT "TBL_NAME" FROM "TBLS" ORDER BY 1', database="metastore")
    assert names.split() == ["made_by_server", "made_by_shell"]
