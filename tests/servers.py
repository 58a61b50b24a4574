"""Real servers for tests, each in its own process: mxsql-thriftserver and PostgreSQL.

Every server binds 127.0.0.1, is polled with a deadline until it serves, and is stopped
by whoever started it (the classes are context managers). Clients: Spark's bundled
``beeline`` and PyHive.
"""

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Callable, List, Optional, Tuple

import psutil

from mxsql.registry import serverprocess

__all__ = [
    "free_port",
    "poll",
    "spark_home",
    "ThriftServerProcess",
    "beeline",
    "pyhive_rows",
    "PostgresServer",
]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for servers that cannot report a bound port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(check: Callable[[], object], *, deadline: float, what: str, interval: float = 0.2):
    """Call ``check`` until it returns something true; its value, or TimeoutError."""
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise TimeoutError(f"{what}: not within {deadline:.0f} s")
        time.sleep(interval)


def spark_home() -> str:
    """The pyspark package directory, which holds Spark's bin/ and jars/."""
    import pyspark

    return os.path.dirname(pyspark.__file__)


class ThriftServerProcess(serverprocess.ThriftServerProcess):
    """``mxsql-thriftserver`` in a child process (:mod:`mxsql.registry.serverprocess`),
    whose processes a test can watch."""

    def processes(self) -> List[psutil.Process]:
        """The server and every process under it (the JVM, Python workers)."""
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]


def beeline(url: str, sql: str, *, deadline: float = 180.0, user: Optional[str] = None,
            password: Optional[str] = None) -> Tuple[int, str, str]:
    """Run Spark's bundled beeline on ``sql``; (exit code, stdout as TSV, stderr).

    The statement list must end with ``;``: without it beeline waits for more input.
    ``user`` and ``password`` log in (``-n``, ``-p``).
    """
    if not sql.rstrip().endswith(";"):
        raise ValueError("beeline -e needs a trailing ';'")
    login = [*(["-n", user] if user else []), *(["-p", password] if password else [])]
    done = subprocess.run(
        [os.path.join(spark_home(), "bin", "beeline"), "-u", url, *login, "--silent=true",
         "--showHeader=false", "--outputformat=tsv2", "-e", sql],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=deadline,
        env={**os.environ, "SPARK_HOME": spark_home()},
    )
    return done.returncode, done.stdout, done.stderr


def pyhive_rows(host: str, port: int, sql: str, *, user: str = "tester") -> list:
    """Rows of one statement over PyHive (HiveServer2 protocol, auth NONE)."""
    from pyhive import hive

    connection = hive.connect(host=host, port=port, auth="NONE", username=user)
    try:
        cursor = connection.cursor()
        cursor.execute(sql)
        return cursor.fetchall() if cursor.description else []
    finally:
        connection.close()


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1, run as the ``postgres`` user.

    Debian's PostgreSQL refuses to run as root, so initdb and the server run through
    ``runuser -u postgres``; data and socket live in a temp dir that user owns. Trust
    authentication: it listens on loopback only and lives as long as a test.
    """

    USER = "postgres"

    def __init__(self, *, deadline: float = 60.0):
        self.deadline = deadline
        self.port = free_port()
        self.root: Optional[str] = None

    @staticmethod
    def _bin(name: str) -> str:
        found = [p for p in _version_bins() if os.path.exists(os.path.join(p, name))]
        if found:
            return os.path.join(found[0], name)
        path = shutil.which(name)
        if path is None:
            raise FileNotFoundError(f"{name}: install Debian's postgresql package (.ci/setup)")
        return path

    def _as_postgres(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["runuser", "-u", self.USER, "--", *args], stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=timeout, check=True, cwd=self.root,
        )

    @property
    def data_dir(self) -> str:
        return os.path.join(self.root, "data")

    @property
    def socket_dir(self) -> str:
        return os.path.join(self.root, "socket")

    def start(self) -> "PostgresServer":
        self.root = tempfile.mkdtemp(prefix="mxsql-pg-")
        os.makedirs(self.socket_dir)
        owner = pwd.getpwnam(self.USER)
        for path in (self.root, self.socket_dir):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        self._as_postgres(self._bin("initdb"), "-D", self.data_dir, "-A", "trust", "-U",
                          self.USER, "-E", "UTF8", "--no-sync")
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} "
                   f"-c unix_socket_directories={self.socket_dir} -c fsync=off")
        self._as_postgres(self._bin("pg_ctl"), "-D", self.data_dir, "-l",
                          os.path.join(self.root, "server.log"), "-o", options, "-w",
                          "-t", str(int(self.deadline)), "start", timeout=self.deadline + 10)
        return self

    def psql(self, sql: str, *, database: str = "postgres") -> str:
        return self._as_postgres(
            self._bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-d", database,
            "-v", "ON_ERROR_STOP=1", "-Atc", sql,
        ).stdout

    def create_database(self, name: str) -> str:
        """Create database ``name``; its JDBC URL."""
        self.psql(f'CREATE DATABASE "{name}"')
        return f"jdbc:postgresql://127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.root is None:
            return
        try:
            self._as_postgres(self._bin("pg_ctl"), "-D", self.data_dir, "-m", "fast", "-w",
                              "stop")
        except subprocess.CalledProcessError:
            pass  # never started, or already stopped
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _version_bins() -> List[str]:
    """bin/ folders of Debian's PostgreSQL versions, newest first."""
    base = "/usr/lib/postgresql"
    versions = os.listdir(base) if os.path.isdir(base) else []
    versions.sort(key=lambda v: [int(p) for p in re.findall(r"\d+", v)], reverse=True)
    return [os.path.join(base, v, "bin") for v in versions]
