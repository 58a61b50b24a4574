"""Run the real ``mxsql`` console script, and Spark's own ``bin/spark-sql``, in tests.

Each run is a separate process with its own embedded metastore (``MXSQL_HOME`` in a
temporary directory), so runs never share the Derby lock with the tests' session.
"""

import os
import re
import select
import signal
import subprocess
import sys
import time
from typing import List, Mapping, Optional, Sequence

__all__ = [
    "MXSQL",
    "TIMEOUT",
    "mxsql_env",
    "conf_args",
    "run_mxsql",
    "spark_sql_command",
    "Terminal",
]

MXSQL = os.path.join(os.path.dirname(sys.executable), "mxsql")
TIMEOUT = 600  # seconds for one run; the machine is shared, a run takes 10-60 s

# Settings every run gets: no web UI (no port to find), loopback only.
_QUIET = {"spark.ui.enabled": "false"}
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


def mxsql_env(home: str, **extra: str) -> dict:
    """The environment of an mxsql run: its own MXSQL_HOME and HOME (for history)."""
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_CONF_DIR", "MXSQL_HOME")}
    env.update(MXSQL_HOME=home, HOME=home, **extra)
    return env


def conf_args(conf: Mapping[str, str]) -> List[str]:
    """``--conf k=v`` for each setting."""
    args = []
    for key, value in conf.items():
        args += ["--conf", f"{key}={value}"]
    return args


def run_mxsql(args: Sequence[str], *, home: str, stdin: Optional[str] = None,
              cwd: Optional[str] = None, quiet: bool = True) -> subprocess.CompletedProcess:
    """Run ``mxsql ARGS`` to the end; stdout and stderr are captured as text."""
    os.makedirs(home, exist_ok=True)
    command = [MXSQL, *(conf_args(_QUIET) if quiet else []), *args]
    return subprocess.run(
        command, input=stdin if stdin is not None else "", capture_output=True,
        text=True, encoding="utf-8", env=mxsql_env(home), cwd=cwd or home, timeout=TIMEOUT,
    )


def spark_sql_command() -> List[str]:
    """Spark's own ``bin/spark-sql`` from the pip package."""
    import pyspark

    return [os.path.join(os.path.dirname(pyspark.__file__), "bin", "spark-sql")]


class Terminal:
    """``mxsql`` on a pseudo-terminal: stdin, stdout and stderr are a tty, as for a user."""

    def __init__(self, args: Sequence[str], *, home: str):
        import pty

        self._fd, child = pty.openpty()
        self.process = subprocess.Popen(
            [MXSQL, *conf_args(_QUIET), *args], stdin=child, stdout=child, stderr=child,
            env=mxsql_env(home, TERM="dumb"), cwd=home, start_new_session=True,
        )
        os.close(child)
        self.transcript = ""
        self._seen = 0

    def expect(self, pattern: str, *, timeout: float = 240) -> re.Match:
        """Wait until the output after the previous match matches ``pattern``."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            match = regex.search(self.transcript, self._seen)
            if match:
                self._seen = match.end()
                return match
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise AssertionError(
                    f"no {pattern!r} in mxsql's terminal output:\n{self.transcript[-3000:]}"
                )

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self._fd], [], [], min(timeout, 1.0))
        if not ready:
            return self.process.poll() is None
        try:
            data = os.read(self._fd, 65536)
        except OSError:  # the child closed the terminal
            return False
        self.transcript += _ANSI.sub("", data.decode("utf-8", "replace"))
        return True

    def send(self, text: str) -> None:
        os.write(self._fd, text.encode("utf-8"))

    def interrupt(self) -> None:
        """Ctrl-C: SIGINT to the terminal's foreground process group (mxsql and the JVM)."""
        os.killpg(self.process.pid, signal.SIGINT)

    def close(self, *, timeout: float = 60) -> int:
        """Wait for mxsql to exit, killing its process group after ``timeout``; the
        exit code (negative when killed)."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()
        finally:
            os.close(self._fd)
