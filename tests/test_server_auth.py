"""mxsql-thriftserver with a login and encryption: LDAP through Hive's own settings
against a real slapd, TLS with a keystore made by keytool, both at once.

One server for the module, given its settings as Hive users give them (``--hiveconf``);
beeline and PyHive as the clients.
"""

import os
import subprocess
import sys

import pytest

from mxsql.registry.dialect import tls_transport
from mxsql.registry.thriftserver import AUTH_KEY, HOST_KEY
from tests import servers
from tests.ldapserver import SlapdServer, login_and_tls_args, make_keystore

_USERS = {"ana": "ana-Secret-1", "ben": "ben-Secret-2"}
_STORE_PASSWORD = "store-Secret-3"


def test_no_login_beyond_loopback_exits_1_naming_the_two_settings(tmp_path):
    done = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "mxsql-thriftserver"),
         "--host", "0.0.0.0", "--port", "0"],
        env={**os.environ, "MXSQL_HOME": str(tmp_path / "home")},
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1
    assert f"{HOST_KEY}=0.0.0.0 with {AUTH_KEY}=NONE" in done.stderr
    assert f"set {AUTH_KEY}=LDAP" in done.stderr and "--host 127.0.0.1" in done.stderr


@pytest.fixture(scope="module")
def slapd():
    with SlapdServer(_USERS) as s:
        yield s


@pytest.fixture(scope="module")
def keystore(tmp_path_factory):
    return make_keystore(str(tmp_path_factory.mktemp("tls")), _STORE_PASSWORD)


@pytest.fixture(scope="module")
def server(slapd, keystore, tmp_path_factory):
    root = tmp_path_factory.mktemp("auth")
    args = ["--master", "local[1]", "--port", "0", "--conf", "spark.ui.enabled=false",
            *login_and_tls_args(slapd, keystore, _STORE_PASSWORD)]
    with servers.ThriftServerProcess(args, log_path=str(root / "server.log"),
                                     env={"MXSQL_HOME": str(root / "home")},
                                     deadline=300) as s:
        yield s


def _tls_url(server, keystore) -> str:
    return (f"jdbc:hive2://{server.host}:{server.port}/;ssl=true;"
            f"sslTrustStore={keystore['truststore']};trustStorePassword={_STORE_PASSWORD}")


def _pyhive(server, keystore, user, password):
    from pyhive import hive

    return hive.connect(thrift_transport=tls_transport(
        server.host, server.port, keystore["certificate"], user, password))


@pytest.mark.slow
def test_beeline_with_the_truststore_and_the_right_password_runs_statements(server, keystore):
    code, out, err = servers.beeline(_tls_url(server, keystore),
                                     "SELECT current_user(), mx_image_info(X'00').format;",
                                     user="ana", password=_USERS["ana"])
    assert code == 0, err[-3000:]
    assert out.split("\t")[0] == "ana"


@pytest.mark.slow
def test_pyhive_over_tls_with_ldap_login_runs_statements(server, keystore):
    connection = _pyhive(server, keystore, "ben", _USERS["ben"])
    try:
        cursor = connection.cursor()
        cursor.execute("SELECT current_user()")
        assert cursor.fetchall() == [("ben",)]
    finally:
        connection.close()


@pytest.mark.slow
@pytest.mark.parametrize("user, password", [("ana", "wrong-password"),
                                            ("nobody", "whatever-4"),
                                            ("ana", _USERS["ben"])])
def test_wrong_password_or_unknown_user_is_refused(server, keystore, user, password):
    code, out, err = servers.beeline(_tls_url(server, keystore), "SELECT 1;", user=user,
                                     password=password)
    assert code != 0 and out.strip() == ""
    assert "Error validating the login" in err or "Could not open client transport" in err, \
        err[-3000:]
    from thrift.transport.TTransport import TTransportException

    with pytest.raises((TTransportException, OSError, EOFError)):
        _pyhive(server, keystore, user, password).close()


@pytest.mark.slow
def test_plain_text_clients_are_refused(server, keystore):
    code, out, err = servers.beeline(server.url, "SELECT 1;", user="ana",
                                     password=_USERS["ana"], deadline=120)
    assert code != 0 and "1" not in out.split()
    from pyhive import hive

    with pytest.raises(Exception):
        hive.connect(host=server.host, port=server.port, auth="LDAP", username="ana",
                     password=_USERS["ana"]).close()
    # And the server still serves TLS clients.
    connection = _pyhive(server, keystore, "ana", _USERS["ana"])
    connection.close()


@pytest.mark.slow
def test_no_password_reaches_the_servers_log(server, keystore):
    servers.beeline(_tls_url(server, keystore), "SELECT 1;", user="ana",
                    password=_USERS["ana"])
    servers.beeline(_tls_url(server, keystore), "SELECT 1;", user="ben", password="wrong-5")
    log = server.log()
    for password in (*_USERS.values(), "wrong-5"):
        assert password not in log
