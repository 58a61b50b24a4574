"""Real servers for tests, each in its own process: mxsql-thriftserver and PostgreSQL.

Every server binds 127.0.0.1, is polled with a deadline until it serves, and is stopped
by whoever started it (the classes are context managers). Clients: Spark's bundled
``beeline`` and PyHive.
"""

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import psutil

__all__ = [
    "free_port",
    "poll",
    "spark_home",
    "ThriftServerProcess",
    "beeline",
    "pyhive_rows",
    "PostgresServer",
]

_VENV_BIN = os.path.dirname(sys.executable)
_LISTENING = re.compile(r"mxsql-thriftserver: listening on ([0-9.]+):(\d+)")


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


class ThriftServerProcess:
    """``mxsql-thriftserver`` in a child process of its own process group.

    stderr (the server's log, which in local mode carries the Python workers' stderr
    too) goes to ``log_path``. ``start`` returns once the server logs where it listens.
    """

    def __init__(self, args: Sequence[str], *, log_path: str, env: Optional[Dict[str, str]] = None,
                 deadline: float = 120.0):
        self.args = list(args)
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.deadline = deadline
        self.process: Optional[subprocess.Popen] = None
        self.host: Optional[str] = None
        self.port: Optional[int] = None

    def start(self) -> "ThriftServerProcess":
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [os.path.join(_VENV_BIN, "mxsql-thriftserver"), *self.args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.env,
                start_new_session=True,
            )
        try:
            match = poll(self._listening, deadline=self.deadline,
                         what=f"mxsql-thriftserver to listen (log {self.log_path})")
        except Exception:
            self.kill()
            raise
        self.host, self.port = match.group(1), int(match.group(2))
        return self

    def _listening(self):
        if self.process.poll() is not None:
            raise RuntimeError(
                f"mxsql-thriftserver exited with {self.process.returncode}:\n{self.log()[-3000:]}"
            )
        return _LISTENING.search(self.log())

    def log(self, start: int = 0) -> str:
        """The server's log from byte ``start``."""
        with open(self.log_path, "rb") as f:
            f.seek(start)
            return f.read().decode("utf-8", "replace")

    def log_size(self) -> int:
        return os.path.getsize(self.log_path)

    @property
    def url(self) -> str:
        return f"jdbc:hive2://{self.host}:{self.port}/"

    def processes(self) -> List[psutil.Process]:
        """The server and every process under it (the JVM, Python workers)."""
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def stop(self, signum: int = signal.SIGTERM, *, group: bool = False,
             deadline: float = 60.0) -> int:
        """Send ``signum`` (to the process group when ``group``, as Ctrl-C does); the exit code."""
        if group:
            os.killpg(self.process.pid, signum)
        else:
            self.process.send_signal(signum)
        try:
            return self.process.wait(deadline)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """Kill the server's process group if anything in it still runs."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()

    def __enter__(self) -> "ThriftServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()
        self.kill()


def beeline(url: str, sql: str, *, deadline: float = 180.0) -> Tuple[int, str, str]:
    """Run Spark's bundled beeline on ``sql``; (exit code, stdout as TSV, stderr).

    The statement list must end with ``;``: without it beeline waits for more input.
    """
    if not sql.rstrip().endswith(";"):
        raise ValueError("beeline -e needs a trailing ';'")
    done = subprocess.run(
        [os.path.join(spark_home(), "bin", "beeline"), "-u", url, "--silent=true",
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
