"""A Spark standalone cluster on this machine: one Master and two Workers from the pip package.

Each daemon is its own JVM, started with Spark's ``bin/spark-class`` (which execs java, so
the process is the JVM), bound to 127.0.0.1 on free ports, with its work dir under a temp
root. Executors are child JVMs of a Worker (``CoarseGrainedExecutorBackend``); their Python
daemon (``pyspark.daemon``) is a child of the executor and forks the Python workers.

The package reaches the executors the way it does on a cluster whose every node has it
installed: executors start the interpreter named by ``PYSPARK_PYTHON``, this venv's
Python, where mxsql is pip-installed. Nothing is shipped with ``--py-files``.
"""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from typing import Dict, List, Optional

import psutil

from mxsql.udfs.logs import ModelLoad, parse_loaded_models
from tests.servers import free_port, poll, spark_home

__all__ = ["VENV_PYTHON", "StandaloneCluster"]

VENV_PYTHON = sys.executable
_DAEMON_MODULES = ("mxsql.udfs.daemon", "pyspark.daemon")
_EXECUTOR_MAIN = "org.apache.spark.executor.CoarseGrainedExecutorBackend"


class StandaloneCluster:
    """Master and ``workers`` Workers of ``cores`` cores and ``memory`` each, under ``root``.

    Use as a context manager: ``start`` returns once every Worker is registered ALIVE
    with the Master; ``stop`` ends every JVM and every process under them.
    """

    def __init__(self, root: str, *, workers: int = 2, cores: int = 1, memory: str = "1g",
                 deadline: float = 120.0):
        self.root = root
        self.workers = workers
        self.cores = cores
        self.memory = memory
        self.deadline = deadline
        self.port = free_port()
        self.ui_port = free_port()
        self.env = {
            **os.environ,
            "SPARK_HOME": spark_home(),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "PYSPARK_PYTHON": VENV_PYTHON,
        }
        self._master: Optional[subprocess.Popen] = None
        self._workers: List[subprocess.Popen] = []

    @property
    def url(self) -> str:
        """The master URL drivers connect to: ``spark://127.0.0.1:PORT``."""
        return f"spark://127.0.0.1:{self.port}"

    def work_dir(self, index: int) -> str:
        return os.path.join(self.root, f"worker-{index}")

    def _spark_class(self, name: str, main: str, *args: str) -> subprocess.Popen:
        with open(os.path.join(self.root, f"{name}.log"), "wb") as log:
            return subprocess.Popen(
                [os.path.join(spark_home(), "bin", "spark-class"), main, *args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.env,
                start_new_session=True,
            )

    def start(self) -> "StandaloneCluster":
        os.makedirs(self.root, exist_ok=True)
        try:
            self._master = self._spark_class(
                "master", "org.apache.spark.deploy.master.Master",
                "--host", "127.0.0.1", "--port", str(self.port), "--webui-port", str(self.ui_port),
            )
            poll(lambda: self._state_or_none(), deadline=self.deadline,
                 what=f"the Spark master at {self.url} (log {self.root}/master.log)")
            for i in range(self.workers):
                os.makedirs(self.work_dir(i), exist_ok=True)
                self._workers.append(self._spark_class(
                    f"worker-{i}", "org.apache.spark.deploy.worker.Worker",
                    "--host", "127.0.0.1", "--cores", str(self.cores), "--memory", self.memory,
                    "--work-dir", self.work_dir(i), "--webui-port", str(free_port()), self.url,
                ))
            poll(lambda: len(self.alive_workers()) == self.workers, deadline=self.deadline,
                 what=f"{self.workers} ALIVE workers at {self.url} (logs in {self.root})")
        except Exception:
            self.stop()
            raise
        return self

    def state(self) -> Dict:
        """The Master's status page as JSON (workers, their cores in use, applications)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=10) as r:
            return json.load(r)

    def _state_or_none(self) -> Optional[Dict]:
        for process in [self._master, *self._workers]:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"{process.args[1]} exited with {process.returncode}; "
                                   f"see the logs in {self.root}")
        try:
            return self.state()
        except OSError:
            return None

    def alive_workers(self) -> List[Dict]:
        state = self._state_or_none() or {}
        return [w for w in state.get("workers", []) if w["state"] == "ALIVE"]

    def wait_for_executors(self, count: int, *, deadline: float = 120.0) -> List[psutil.Process]:
        """The executor JVMs, once ``count`` of them run and every Worker's cores are in use."""
        def ready():
            executors = self.executors()
            busy = sum(w["coresused"] for w in self.alive_workers())
            return executors if len(executors) == count and busy == count * self.cores else None

        return poll(ready, deadline=deadline, what=f"{count} executors on {self.url}")

    def worker_jvms(self) -> List[psutil.Process]:
        return [psutil.Process(p.pid) for p in self._workers if p.poll() is None]

    def executors(self) -> List[psutil.Process]:
        """Executor JVMs: the children of the Workers that run CoarseGrainedExecutorBackend."""
        return [c for w in self.worker_jvms() for c in _children(w)
                if _EXECUTOR_MAIN in _cmdline(c)]

    def python_daemons(self) -> List[psutil.Process]:
        """Each executor's Python daemon (mxsql's, which preloads, or ``pyspark.daemon``),
        which forks the Python workers."""
        return [c for e in self.executors() for c in _children(e)
                if any(module in _cmdline(c) for module in _DAEMON_MODULES)]

    def python_workers(self) -> List[psutil.Process]:
        """The Python workers that run tasks: the processes the daemons forked."""
        return [c for d in self.python_daemons() for c in _children(d)]

    def executor_logs(self, app_id: str = "app-*") -> Dict[str, str]:
        """``WORK_DIR/APP/EXECUTOR/stderr`` of every executor of ``app_id`` so far, path -> text."""
        logs = {}
        for i in range(self.workers):
            for path in sorted(glob.glob(os.path.join(self.work_dir(i), app_id, "*", "stderr"))):
                with open(path, "rb") as f:
                    logs[path] = f.read().decode("utf-8", "replace")
        return logs

    def model_loads(self, app_id: str = "app-*") -> List[ModelLoad]:
        """Every "loaded model" line in the executors' stderr."""
        return [load for text in self.executor_logs(app_id).values()
                for load in parse_loaded_models(text)]

    def grep_executor_logs(self, pattern: "re.Pattern", app_id: str = "app-*") -> List:
        """Every match of ``pattern`` in the executors' stderr, as ``findall`` gives them."""
        return [m for text in self.executor_logs(app_id).values() for m in pattern.findall(text)]

    def stop(self) -> None:
        """SIGTERM every daemon's process group, then SIGKILL whatever is left under them."""
        daemons = [p for p in [*self._workers, self._master] if p is not None]
        tree = []
        for process in daemons:
            try:
                root = psutil.Process(process.pid)
                tree += [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        for process in daemons:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        _, alive = psutil.wait_procs(tree, timeout=30)
        for process in alive:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=10)
        for process in daemons:
            process.wait()
        self._master, self._workers = None, []

    def __enter__(self) -> "StandaloneCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _children(process: psutil.Process) -> List[psutil.Process]:
    try:
        return process.children()
    except psutil.NoSuchProcess:
        return []


def _cmdline(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return ""
