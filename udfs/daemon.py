"""The Python worker daemon: imports what mx workers need once, then forks the workers.

Spark starts one daemon per executor (``spark.python.daemon.module``) and forks every
Python worker from it; a worker that a query stops early (a ``LIMIT``) is replaced by a
new fork. PySpark's own daemon imports nothing before it forks, so each new worker
imported numpy, pandas, pyarrow, Pillow, ``pyspark.worker`` and mxsql again (about 0.6
CPU seconds here), and MXNet on its first batch (about 1.2 CPU seconds more). This
daemon imports them first, and every fork shares them.

What may be imported before a fork (checked with numpy 1.23.5, pyarrow 25, MXNet 1.9.1;
``tests/test_daemon.py``):

- numpy's OpenBLAS threads and pyarrow's jemalloc background thread are stopped and
  restarted around a fork by those libraries' own ``pthread_atfork`` handlers.
- MXNet stops its engine before a fork and restarts it after. In the child it also
  limits its own OpenMP operators to one thread (``LibraryInitializer::atfork_child``),
  so a worker forked from a daemon that imported MXNet would run differently from one
  that imports it itself unless workers run one OpenMP thread anyway. MXNet is therefore
  imported here only when ``OMP_NUM_THREADS`` is 1, which Spark sets from
  ``spark.task.cpus`` (1 in the shipped configuration). The import runs no OpenMP
  parallel region, so GNU OpenMP has no thread pool for the fork to lose.
"""

import os
import sys
from typing import List

__all__ = ["mxnet_preload_safe", "preload", "main"]

# Imported by every worker that runs an mx function; pandas and pyarrow also serve
# PySpark's own Arrow UDF path.
_COMMON = ("numpy", "pyarrow", "pandas", "PIL.Image", "pyspark.worker", "mxsql.udfs.functions")
# Worker modules that run UDFs (the daemon's argument; none means pyspark.worker).
_UDF_WORKERS = ("pyspark.worker",)


def mxnet_preload_safe(environ=os.environ) -> bool:
    """MXNet may be imported before a fork: workers run one OpenMP thread (see above)."""
    return environ.get("OMP_NUM_THREADS", "").strip() == "1"


def preload(worker_module: str = "pyspark.worker") -> List[str]:
    """Import what the workers of ``worker_module`` need; the names imported, in order.

    A module that fails to import is skipped: the worker then meets the same error
    itself, with the message it gives without a daemon.
    """
    import importlib

    loaded = []
    for name in _COMMON:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        loaded.append(name)
    if worker_module in _UDF_WORKERS and mxnet_preload_safe():
        from mxsql.udfs.checkpoint import import_mxnet

        try:
            import_mxnet()
        except ImportError:
            pass
        else:
            loaded.append("mxnet")
    return loaded


def main() -> None:
    """Preload, then serve Spark as ``pyspark.daemon`` does (its protocol, its argv)."""
    worker_module = sys.argv[1] if len(sys.argv) > 1 else "pyspark.worker"
    # The daemon's stdout carries its port to the JVM: nothing an import prints may
    # reach it, so it goes to stderr (the executor's log) meanwhile.
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        preload(worker_module)
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
    from pyspark import daemon

    daemon.manager()


if __name__ == "__main__":
    main()
