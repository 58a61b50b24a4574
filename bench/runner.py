"""Start the measurements as child processes and collect their JSON results."""

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional

from bench.spark_paths import WARM_PASSES
from bench.workloads import Workload

__all__ = ["Env", "NO_ARCHIVE", "failed", "stderr_tail", "limit", "quantize", "int8_conf",
           "ceiling", "time_split", "spark_path", "head_to_head", "best"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The children time warm drivers: a JVM start-up archive would only add its background
# build (minutes of CPU, for every new spark.mxsql.cacheDir) beside what they time.
NO_ARCHIVE = {"MXSQL_JVM_ARCHIVE": "off"}


class Env:
    """Where a run keeps its files, and the model it measures."""

    def __init__(self, work: str, prefix: str, batch: int, warm_passes: int = WARM_PASSES):
        self.work = work
        self.prefix = prefix
        self.batch = batch
        self.warm_passes = warm_passes  # of each Spark path, before it is timed
        self.logs = os.path.join(work, "logs")
        self.cache = os.path.join(work, "cache")  # spark.mxsql.cacheDir: the ONNX conversion
        os.makedirs(self.logs, exist_ok=True)
        self._runs = 0

    def int8_cache(self, workload: Workload) -> str:
        """spark.mxsql.cacheDir of the INT8 paths on ``workload``: emptied by
        :func:`quantize`, so that every run times the quantization uncached."""
        return os.path.join(self.work, "cache-int8", workload.name)

    def log_path(self, name: str) -> str:
        self._runs += 1
        return os.path.join(self.logs, f"{self._runs:03d}-{name}.log")

    def environ(self, **extra) -> Dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
        env["MXSQL_HOME"] = os.path.join(self.work, "home")
        env.update(NO_ARCHIVE)
        env.update(extra)
        return env


# Lines of a failed child's stderr kept in the results, for the report.
STDERR_LINES = 25


def stderr_tail(log: str) -> List[str]:
    """The last lines of the file a child wrote its stderr to."""
    try:
        with open(log, encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n") for line in f.readlines()[-STDERR_LINES:]]
    except OSError as e:
        return [f"(could not read {log}: {e})"]


def failed(result: Optional[dict]) -> bool:
    """Whether ``result`` is missing or is what :func:`_run` returns for a failed child."""
    return result is None or "error" in result


def _run(cmd: List[str], what: str, log: str, env: Dict[str, str]) -> dict:
    """Run a child whose stderr goes to ``log``: the last JSON object it printed, or a
    failure (``error``, ``log``, ``stderr_tail``) when it printed none."""
    with open(log, "w") as err:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env,
                              check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if lines:
        return json.loads(lines[-1])
    return {"error": f"{what} exited with {done.returncode} and printed no result",
            "log": log, "stderr_tail": stderr_tail(log)}


def int8_conf(env: Env, workload: Workload) -> Dict[str, str]:
    """The settings that run the model at precision=int8 on ``workload``, calibrated on
    its warm-up images (the first 64 in path order), not on the images it classifies."""
    return {"spark.mxsql.model.resnet18.precision": "int8",
            "spark.mxsql.model.resnet18.calibration": workload.warm,
            "spark.mxsql.cacheDir": env.int8_cache(workload)}


def quantize(env: Env, workload: Workload) -> dict:
    """INT8's one-time cost: seconds to quantize the model for ``workload`` in a fresh
    process with an empty cache (the INT8 paths after it find it cached)."""
    cache = env.int8_cache(workload)
    shutil.rmtree(cache, ignore_errors=True)
    os.makedirs(cache)
    cmd = [sys.executable, "-m", "bench.limit", "--prefix", env.prefix, "--batch",
           str(env.batch), "--int8", workload.warm, cache, "--quantize"]
    return _run(cmd, "bench.limit --quantize", env.log_path(f"{workload.name}-quantize"),
                env.environ(OMP_NUM_THREADS=str(os.cpu_count())))


def limit(env: Env, processes: int, threads: int, seconds: float, *, onnx: bool = False,
          int8: Optional[Workload] = None) -> dict:
    """Path (1): ``processes`` forward-only processes of ``threads`` OMP threads, together;
    with ``onnx``, path (1o): the same with the ONNX Runtime engine; with ``int8``, path
    (1q): the same quantized to INT8 as for that workload (run :func:`quantize` first)."""
    start_at = time.time() + 20  # every process has loaded and warmed up by then
    cmd = [sys.executable, "-m", "bench.limit", "--prefix", env.prefix,
           "--batch", str(env.batch), "--seconds", str(seconds), "--start-at", str(start_at)]
    if onnx:
        cmd += ["--onnx-cache", env.cache]
    if int8 is not None:
        cmd += ["--int8", int8.warm, env.int8_cache(int8)]
    child_env = env.environ(OMP_NUM_THREADS=str(threads))
    kind = "-onnx" if onnx else "-int8" if int8 is not None else ""
    logs = [env.log_path(f"limit{kind}-{threads}t") for _ in range(processes)]
    with ThreadPoolExecutor(processes) as pool:  # the processes run side by side
        results = list(pool.map(lambda log: _run(cmd, "bench.limit", log, child_env), logs))
    setting = {"processes": processes, "threads": threads}
    crashed = next((r for r in results if failed(r)), None)
    if crashed is not None:
        return {**setting, **crashed}
    rate = sum(r["images"] / r["seconds"] for r in results)
    cpu_ms = 1000 * sum(r["cpu_seconds"] for r in results) / sum(r["images"] for r in results)
    return {**setting, "rate": rate, "cpu_ms": cpu_ms}


def _listing(env: Env, workload: Workload, images: int) -> str:
    """A file listing the first ``images`` images, for (1c)."""
    files = sorted(os.path.join(f, n) for f in workload.folders(images)
                   for n in os.listdir(f) if n.endswith("." + workload.ext))[:images]
    listing = os.path.join(env.work, f"{workload.name}-files.txt")
    with open(listing, "w") as f:
        f.write("\n".join(files))
    return listing


def ceiling_command(prefix: str, batch: int, listing: str) -> List[str]:
    """The command of (1c): decode + forward of the listed files in one process."""
    return [sys.executable, "-m", "bench.limit", "--prefix", prefix, "--batch", str(batch),
            "--files", listing]


def ceiling(env: Env, workload: Workload, images: int, threads: int) -> dict:
    """Decode + forward in one process on ``threads`` OMP threads."""
    cmd = ceiling_command(env.prefix, env.batch, _listing(env, workload, images))
    result = _run(cmd, "bench.limit --files", env.log_path(f"{workload.name}-ceiling"),
                  env.environ(OMP_NUM_THREADS=str(threads)))
    if failed(result):
        return {"threads": threads, **result}
    return {"threads": threads, "rate": result["images"] / result["seconds"],
            "cpu_ms": 1000 * result["cpu_seconds"] / result["images"], **result}


def time_split(env: Env, workload: Workload, images: int) -> dict:
    """Where the time goes: Spark's read and Arrow hand-over (the "read" path, all
    processes, per image) and, in one single-threaded process (bench.time_split), CPU ms
    per image of decode, resize, to tensor and the network in FP32 and INT8, over the
    first ``images`` images (run :func:`quantize` first)."""
    read = spark_path(env, "read", workload, images)
    cmd = [sys.executable, "-m", "bench.time_split", "--prefix", env.prefix, "--batch",
           str(env.batch), "--files", _listing(env, workload, images),
           "--int8", workload.warm, env.int8_cache(workload)]
    steps = _run(cmd, "bench.time_split", env.log_path(f"{workload.name}-time-split"),
                 env.environ(OMP_NUM_THREADS="1"))
    return {"read": read, "steps": steps}


def _spark_paths(env: Env, paths: List[str], workload: Workload, images: int,
                 conf: Optional[Dict[str, str]], extra: List[str]) -> dict:
    """Run ``bench.spark_paths`` over the first ``images`` images, in a fresh driver."""
    log = env.log_path(f"{workload.name}-{'-'.join(paths)}")
    cmd = [sys.executable, "-m", "bench.spark_paths", "--path", *paths, "--prefix", env.prefix,
           "--folders", *workload.folders(images), "--warm", workload.warm,
           "--ext", workload.ext, "--log", log, "--warm-passes", str(env.warm_passes), *extra]
    for key, value in (conf or {}).items():
        cmd += ["--conf", f"{key}={value}"]
    # The child sends its own stderr, the JVM's and the workers' to --log once it runs;
    # what it writes before that (an import error) goes there too.
    result = _run(cmd, f"bench.spark_paths --path {' '.join(paths)}", log, env.environ())
    result["log"] = log
    return result


def _rates(result: dict) -> dict:
    """``result`` with its img/s and CPU ms per image (a failure as it is)."""
    if failed(result):
        return result
    result["rate"] = result["images"] / result["seconds"]
    result["cpu_ms"] = 1000 * result["cpu_seconds"] / result["images"]
    return result


def spark_path(env: Env, path: str, workload: Workload, images: int,
               conf: Optional[Dict[str, str]] = None, limit_queries: int = 0) -> dict:
    """Paths (2) to (5) over the first ``images`` images, in a fresh driver process."""
    return _rates(_spark_paths(env, [path], workload, images, conf,
                               ["--limit-queries", str(limit_queries)]))


def head_to_head(env: Env, paths: List[str], workload: Workload, images: int,
                 rounds: int, ceiling_threads: int = 0) -> dict:
    """``paths`` timed in turn in one fresh driver, ``rounds`` times, with (1c) on
    ``ceiling_threads`` OMP threads after them when that is not 0: each round maps a path
    (or "ceiling") to its img/s and CPU ms per image."""
    extra = ["--rounds", str(rounds)]
    if ceiling_threads:
        extra += ["--ceiling-files", _listing(env, workload, images),
                  "--ceiling-threads", str(ceiling_threads)]
    result = _spark_paths(env, paths, workload, images, None, extra)
    for timed in result.get("rounds", []):
        for path, measured in timed.items():
            timed[path] = _rates({"images": result["images"], **measured})
    return result


def best(results: List[dict]) -> dict:
    """The fastest of ``results`` that did not fail; the first failure if all did."""
    measured = [r for r in results if not failed(r)]
    return max(measured, key=lambda r: r["rate"]) if measured else results[0]
