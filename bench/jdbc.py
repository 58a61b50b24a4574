"""DECISIONS 8 over JDBC: seconds for a repeated ``LIMIT 10`` through mxsql-thriftserver.

Starts the server as a child process on 127.0.0.1 (port 0: it reports the one it bound),
runs the queries with PyHive, then stops the server and anything left in its group.
"""

import os
import re
import signal
import subprocess
import sys
import time
from typing import Dict, List

__all__ = ["limit_queries"]

_LISTENING = re.compile(r"mxsql-thriftserver: listening on ([0-9.]+):(\d+)")


def _wait_listening(log_path: str, process: subprocess.Popen, deadline: float):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            found = _LISTENING.search(f.read())
        if found:
            return found.group(1), int(found.group(2))
        if process.poll() is not None:
            raise RuntimeError(f"mxsql-thriftserver exited with {process.returncode}; "
                               f"see {log_path}")
        time.sleep(0.2)
    raise TimeoutError(f"mxsql-thriftserver not listening within {deadline:.0f} s; "
                       f"see {log_path}")


def limit_queries(env: Dict[str, str], conf: Dict[str, str], folder: str, warm: str,
                  ext: str, log_path: str, repeats: int = 4) -> List[float]:
    """Seconds for each of ``repeats`` LIMIT 10 queries, after a full warm-up query."""
    from pyhive import hive

    server = os.path.join(os.path.dirname(sys.executable), "mxsql-thriftserver")
    args = [server, "--host", "127.0.0.1", "--port", "0"]
    for key, value in conf.items():
        args += ["--conf", f"{key}={value}"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   env=env, start_new_session=True)
    try:
        host, port = _wait_listening(log_path, process, deadline=180)
        connection = hive.connect(host=host, port=port, auth="NONE", username="bench")
        cursor = connection.cursor()
        for view, path in (("images", folder), ("warm_images", warm)):
            cursor.execute(f"CREATE OR REPLACE TEMPORARY VIEW {view} USING binaryFile "
                           f"OPTIONS (path '{path}', pathGlobFilter '*.{ext}')")
        cursor.execute("SELECT count(mx_classify(content, 'resnet18')) FROM warm_images")
        cursor.fetchall()
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            cursor.execute("SELECT path, mx_classify(content, 'resnet18') AS p "
                           "FROM images LIMIT 10")
            cursor.fetchall()
            times.append(time.perf_counter() - started)
        connection.close()
        return times
    finally:
        process.terminate()  # the server stops its session and JVM itself
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        try:
            os.killpg(process.pid, signal.SIGKILL)  # whatever it left behind
        except ProcessLookupError:
            pass
