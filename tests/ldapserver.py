"""Login and TLS for a test's mxsql-thriftserver: a real OpenLDAP ``slapd`` on 127.0.0.1
with users of the test's choosing, and a keystore and truststore made with ``keytool``.

Debian's ``slapd`` and ``ldap-utils`` packages (installed by ``.ci/setup``); ``keytool``
comes with the JRE. Nothing here starts a system service: slapd runs with a config of
its own in a temp folder and is stopped by whoever started it.
"""

import os
import shutil
import signal
import subprocess
import tempfile
from typing import Dict, Optional

from tests.servers import free_port, poll

__all__ = ["SlapdServer", "make_keystore"]

SUFFIX = "dc=example,dc=com"
PEOPLE = f"ou=people,{SUFFIX}"
_ROOT_DN = f"cn=admin,{SUFFIX}"
_ROOT_PASSWORD = "root-secret-for-tests"


class SlapdServer:
    """``slapd`` serving ``dc=example,dc=com`` with ``users`` (uid -> password) under
    ``ou=people``; ``url`` is its ldap:// address."""

    def __init__(self, users: Dict[str, str], *, deadline: float = 60.0):
        self.users = dict(users)
        self.deadline = deadline
        self.port = free_port()
        self.root: Optional[str] = None
        self.process: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def start(self) -> "SlapdServer":
        slapd = shutil.which("slapd") or "/usr/sbin/slapd"
        if not os.path.exists(slapd):
            raise FileNotFoundError("slapd: install Debian's slapd and ldap-utils (.ci/setup)")
        self.root = tempfile.mkdtemp(prefix="mxsql-ldap-")
        data = os.path.join(self.root, "data")
        os.makedirs(data)
        config = os.path.join(self.root, "slapd.conf")
        with open(config, "w") as f:
            f.write("\n".join([
                *(f"include /etc/ldap/schema/{s}.schema" for s in ("core", "cosine",
                                                                     "inetorgperson")),
                f"pidfile {self.root}/slapd.pid",
                "modulepath /usr/lib/ldap",
                "moduleload back_mdb",
                "database mdb",
                f"suffix \"{SUFFIX}\"",
                f"rootdn \"{_ROOT_DN}\"",
                f"rootpw {_ROOT_PASSWORD}",
                f"directory {data}",
                "",
            ]))
        self.process = subprocess.Popen(
            [slapd, "-d", "0", "-h", f"{self.url}/", "-f", config],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            poll(self._answers, deadline=self.deadline, what=f"slapd on {self.url}")
            self._add_users()
        except Exception:
            self.stop()
            raise
        return self

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"slapd exited with {self.process.returncode}: "
                               f"{self.process.stderr.read().decode(errors='replace')}")
        done = subprocess.run(["ldapsearch", "-x", "-H", self.url, "-b", "", "-s", "base"],
                              capture_output=True, timeout=10)
        return done.returncode == 0

    def _add_users(self) -> None:
        entries = [f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\n"
                   "o: Example\ndc: example\n",
                   f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n"]
        entries += [
            f"dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\n"
            f"sn: {uid}\nuserPassword: {password}\n"
            for uid, password in self.users.items()
        ]
        subprocess.run(["ldapadd", "-x", "-H", self.url, "-D", _ROOT_DN, "-w", _ROOT_PASSWORD],
                       input="\n".join(entries).encode(), capture_output=True, timeout=30,
                       check=True)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> "SlapdServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def make_keystore(folder: str, password: str) -> Dict[str, str]:
    """A JKS keystore with a self-signed key for 127.0.0.1, its certificate (PEM) and a
    truststore holding it; their paths as ``keystore``, ``certificate``, ``truststore``."""
    keytool = shutil.which("keytool")
    if keytool is None:
        raise FileNotFoundError("keytool: it comes with the JRE (openjdk-17-jre-headless)")
    paths = {name: os.path.join(folder, file) for name, file in (
        ("keystore", "server.jks"), ("certificate", "server.pem"), ("truststore", "trust.jks"))}

    def run(*args):
        subprocess.run([keytool, *args], capture_output=True, timeout=120, check=True)

    run("-genkeypair", "-alias", "mxsql", "-keyalg", "RSA", "-keysize", "2048",
        "-dname", "CN=127.0.0.1", "-ext", "SAN=ip:127.0.0.1", "-validity", "2",
        "-storetype", "JKS", "-keystore", paths["keystore"], "-storepass", password,
        "-keypass", password)
    run("-exportcert", "-rfc", "-alias", "mxsql", "-keystore", paths["keystore"],
        "-storepass", password, "-file", paths["certificate"])
    run("-importcert", "-noprompt", "-alias", "mxsql", "-file", paths["certificate"],
        "-storetype", "JKS", "-keystore", paths["truststore"], "-storepass", password)
    return paths


def login_and_tls_args(slapd: "SlapdServer", keystore: Dict[str, str],
                       keystore_password: str) -> list:
    """mxsql-thriftserver's arguments for LDAP login against ``slapd`` and TLS with
    ``keystore``, given as Hive users give them (``--hiveconf``)."""
    hiveconf = {
        "hive.server2.authentication": "LDAP",
        "hive.server2.authentication.ldap.url": slapd.url,
        "hive.server2.authentication.ldap.baseDN": PEOPLE,
        "hive.server2.use.SSL": "true",
        "hive.server2.keystore.path": keystore["keystore"],
        "hive.server2.keystore.password": keystore_password,
    }
    args = []
    for key, value in hiveconf.items():
        args += ["--hiveconf", f"{key}={value}"]
    return args
