"""``mxsql-thriftserver`` as a child process, and the log line that says where it listens.

The server logs :func:`listening_message` once it accepts connections (with port 0, the
port it bound); whoever starts it reads the address back with :func:`parse_listening`.
:class:`ThriftServerProcess` does both for the tests and the benchmark.
"""

import os
import re
import signal
import subprocess
import sys
import time
from typing import Dict, Optional, Sequence, Tuple

__all__ = ["listening_message", "parse_listening", "ThriftServerProcess"]

_LISTENING = re.compile(r"listening on (\S+):(\d+) \(jdbc:hive2://")


def listening_message(host: str, port: int, jdbc_url: str) -> str:
    """What the server logs once it listens on ``host``:``port``."""
    return f"listening on {host}:{port} ({jdbc_url})"


def parse_listening(log: str) -> Optional[Tuple[str, int]]:
    """(host, port) from the first :func:`listening_message` in ``log``, or None."""
    found = _LISTENING.search(log)
    return (found.group(1), int(found.group(2))) if found else None


class ThriftServerProcess:
    """``mxsql-thriftserver ARGS`` in a child process of its own process group.

    Its output (the server's log, which in local mode carries the Python workers' stderr
    too) goes to ``log_path``. :meth:`start` returns once the server has logged where it
    listens (``host``, ``port``), and raises if it exits or is not listening within
    ``deadline`` seconds. As a context manager it stops the server and anything left in
    its group on exit.
    """

    def __init__(self, args: Sequence[str], *, log_path: str,
                 env: Optional[Dict[str, str]] = None, deadline: float = 120.0):
        self.args = list(args)
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.deadline = deadline
        self.process: Optional[subprocess.Popen] = None
        self.host: Optional[str] = None
        self.port: Optional[int] = None

    def start(self) -> "ThriftServerProcess":
        """Start the server and wait until it listens."""
        server = os.path.join(os.path.dirname(sys.executable), "mxsql-thriftserver")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [server, *self.args], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env=self.env, start_new_session=True,
            )
        try:
            self.host, self.port = self._wait_listening()
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_listening(self) -> Tuple[str, int]:
        end = time.monotonic() + self.deadline
        while True:
            address = parse_listening(self.log())
            if address:
                return address
            if self.process.poll() is not None:
                raise RuntimeError(f"mxsql-thriftserver exited with {self.process.returncode} "
                                   f"(log {self.log_path}):\n{self.log()[-3000:]}")
            if time.monotonic() > end:
                raise TimeoutError(f"mxsql-thriftserver not listening within "
                                   f"{self.deadline:.0f} s (log {self.log_path})")
            time.sleep(0.2)

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

    def stop(self, signum: int = signal.SIGTERM, *, group: bool = False,
             deadline: float = 60.0) -> int:
        """Send ``signum`` (to the process group when ``group``, as Ctrl-C does); the exit
        code. Kills the group if the server has not exited within ``deadline`` seconds."""
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
