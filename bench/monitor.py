"""What the benchmark watches in the Python workers: peak memory and model loads."""

import os
import threading
from collections import Counter
from typing import Dict

import psutil

from mxsql.udfs.logs import parse_loaded_models

__all__ = ["RssSampler", "count_loads"]


def _is_python_worker(proc: psutil.Process) -> bool:
    cmdline = " ".join(proc.cmdline())
    return "python" in proc.name() and ("pyspark.daemon" in cmdline or "pyspark.worker" in cmdline)


class RssSampler:
    """Samples, from a thread of the driver, the RSS of the JVM's Python worker processes.

    ``peaks`` maps each worker pid seen to the largest RSS it had, in bytes. The CPU
    time of every process under the driver (JVM and workers) is sampled too: it shows
    the work a path costs even when other jobs share the cores.
    """

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.peaks: Dict[int, int] = {}
        self._cpu: Dict[int, float] = {}
        self._python: Dict[int, bool] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = psutil.Process(os.getpid())
        while not self._stop.wait(self.interval):
            for proc in me.children(recursive=True):
                try:
                    times = proc.cpu_times()
                    self._cpu[proc.pid] = times.user + times.system
                    self._python.setdefault(proc.pid, _is_python_worker(proc))
                    if _is_python_worker(proc):
                        rss = proc.memory_info().rss
                        self.peaks[proc.pid] = max(rss, self.peaks.get(proc.pid, 0))
                except psutil.Error:
                    continue  # the worker ended between listing and reading

    def cpu_seconds(self, *, python_only: bool = False) -> float:
        """CPU seconds used so far by the processes under the driver (as last sampled),
        or by its Python workers only."""
        return sum(cpu for pid, cpu in self._cpu.items()
                   if not python_only or self._python.get(pid))

    @property
    def peak_mb(self) -> float:
        """The largest RSS of any one Python worker, in MiB."""
        return max(self.peaks.values(), default=0) / 2 ** 20


def count_loads(log_text: str) -> Counter:
    """Model loads per worker pid, from the workers' "loaded model" log lines."""
    return Counter(load.pid for load in parse_loaded_models(log_text))
