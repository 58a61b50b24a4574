"""What BI tools use, against mxsql-thriftserver with LDAP login and TLS on: SQLAlchemy
through the package's ``mxsql://`` dialect (what Apache Superset takes), its metadata
calls on connect, and ``pandas.read_sql`` of an mx query.
"""

import os

import pytest

from demo import digits as digits_demo
from mxsql.registry.serverrules import ALLOWED_PATHS_KEY
from tests import servers
from tests.ldapserver import SlapdServer, login_and_tls_args, make_keystore

pytestmark = pytest.mark.slow

_PASSWORD = "bi-Secret-1"
_STORE_PASSWORD = "store-Secret-2"


@pytest.fixture(scope="module")
def server(digits, tmp_path_factory):
    root = tmp_path_factory.mktemp("bi")
    keystore = make_keystore(str(root), _STORE_PASSWORD)
    digit_folder = os.path.dirname(os.path.dirname(digits[1][0]))
    args = ["--master", "local[1]", "--port", "0", "--conf", "spark.ui.enabled=false",
            "--conf", f"spark.mxsql.cacheDir={root / 'cache'}",
            "--conf", f"{ALLOWED_PATHS_KEY}={digit_folder}"]
    for key, value in digits_demo.model_conf(digits[0]).items():
        args += ["--conf", f"{key}={value}"]
    with SlapdServer({"analyst": _PASSWORD}) as slapd:
        args += login_and_tls_args(slapd, keystore, _STORE_PASSWORD)
        with servers.ThriftServerProcess(args, log_path=str(root / "server.log"),
                                         env={"MXSQL_HOME": str(root / "home")},
                                         deadline=300) as s:
            s.certificate = keystore["certificate"]
            s.digit_folder = digit_folder
            yield s


@pytest.fixture(scope="module")
def engine(server):
    import sqlalchemy as sa

    engine = sa.create_engine(f"mxsql://analyst:{_PASSWORD}@{server.host}:{server.port}/"
                              f"default?ssl_ca={server.certificate}")
    with engine.connect() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE digits USING binaryFile "
            f"OPTIONS (path '{server.digit_folder}', recursiveFileLookup 'true')")
        connection.exec_driver_sql("CREATE DATABASE sales")
        connection.exec_driver_sql("CREATE TABLE sales.orders (id INT, note STRING) "
                                   "USING parquet")
        connection.exec_driver_sql("CREATE VIEW sales.recent AS SELECT id FROM sales.orders")
    yield engine
    engine.dispose()


def test_schemas_tables_and_views_list_as_a_bi_tool_reads_them(engine):
    import sqlalchemy as sa

    inspector = sa.inspect(engine)
    assert {"default", "sales"} <= set(inspector.get_schema_names())
    assert inspector.get_table_names() == ["digits"]
    assert sorted(inspector.get_table_names(schema="sales")) == ["orders", "recent"]
    assert inspector.get_view_names(schema="sales") == ["recent"]
    assert inspector.has_table("digits") and not inspector.has_table("nothing_here")


def test_columns_reflect_with_their_types_binary_as_binary(engine):
    import sqlalchemy as sa

    columns = {c["name"]: c["type"] for c in sa.inspect(engine).get_columns("digits")}
    assert list(columns) == ["path", "modificationTime", "length", "content"]
    assert isinstance(columns["content"], sa.types.LargeBinary)
    assert isinstance(columns["path"], sa.types.String)
    assert isinstance(columns["length"], sa.types.BigInteger)


def test_pandas_read_sql_of_an_mx_classify_query(engine, digits):
    import pandas as pd

    frame = pd.read_sql("SELECT path, mx_classify(content).label AS label FROM digits",
                        engine)
    assert len(frame) == len(digits[1])
    correct = sum(label == digits_demo.label_of(path)
                  for path, label in zip(frame["path"], frame["label"]))
    assert correct >= 0.9 * len(frame)
