"""DECISIONS 8 over JDBC: seconds for a repeated ``LIMIT 10`` through mxsql-thriftserver.

Starts the server as a child process on 127.0.0.1 (port 0: it reports the one it bound),
runs the queries with PyHive, then stops the server and anything left in its group.
"""

import time
from typing import Dict, List

from mxsql.registry.serverprocess import ThriftServerProcess

__all__ = ["limit_queries"]


def limit_queries(env: Dict[str, str], conf: Dict[str, str], folder: str, warm: str,
                  ext: str, log_path: str, repeats: int = 4) -> List[float]:
    """Seconds for each of ``repeats`` LIMIT 10 queries, after a full warm-up query."""
    from pyhive import hive

    args = ["--host", "127.0.0.1", "--port", "0"]
    for key, value in conf.items():
        args += ["--conf", f"{key}={value}"]
    with ThriftServerProcess(args, log_path=log_path, env=env, deadline=180) as server:
        connection = hive.connect(host=server.host, port=server.port, auth="NONE",
                                  username="bench")
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
