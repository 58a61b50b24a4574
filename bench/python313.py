"""ResNet-18 through SQL on Python 3.13, where MXNet cannot install (engine=onnxruntime, the
checkpoint converted by mxsql), against the MXNet FP32 path on this Python (3.11), in one run.

Two drivers stay up side by side, one per Python: this one's, and .venv-py313's (``make
test`` makes it; this run installs the work tree's mxsql into it again, without
dependencies). Each warms up, then they run the same CTAS over the same CIFAR-shaped
images in turn, one at a time, the order reversed every other round. The result is the
median of the rounds' ratios, 3.13 over 3.11 (the issue's target: >= 0.95).

``python -m bench.python313`` runs it alone and prints the JSON; ``python -m bench`` runs
it too, into results.json. A driver is ``python -m bench.python313 --serve``: it answers
each ``run`` line on stdin with one ``{"seconds": …}`` line on stdout.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY313 = os.path.join(ROOT, ".venv-py313", "bin", "python")
TARGET_RATIO = 0.95  # issue 19: 3.13 through ONNX Runtime against 3.11's MXNet FP32
REPLY = "python313-bench: "  # marks the driver's answers among whatever else reaches stdout
# Variables that would point a 3.13 process at this Python's packages.
_THIS_PYTHON = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "SPARK_HOME", "PYSPARK_PYTHON",
                "PYSPARK_DRIVER_PYTHON")


def _reply(result: dict) -> None:
    print(REPLY + json.dumps(result), flush=True)


def serve(conf: Dict[str, str], images: str, warm: str, warm_passes: int) -> None:
    """A driver: the shipped settings plus ``conf``, warmed up over ``warm``, then one
    timed CTAS over ``images`` per ``run`` line on stdin."""
    import importlib.util

    from mxsql.registry.session import build_session

    spark = build_session(conf, master="local[*]", app_name="mxsql-bench-python313")
    for view, folder in (("images", images), ("warm_images", warm)):
        spark.read.format("binaryFile").option("pathGlobFilter", "*.png").load(folder) \
            .createOrReplaceTempView(view)

    def run(view: str) -> None:
        spark.sql("DROP TABLE IF EXISTS bench_python313")
        spark.sql("CREATE TABLE bench_python313 USING parquet AS SELECT path, "
                  f"mx_classify(content, 'resnet18') AS prediction FROM {view}")

    for _ in range(warm_passes):
        run("warm_images")
    _reply({"python": platform.python_version(), "images": spark.table("images").count(),
            "mxnet_importable": importlib.util.find_spec("mxnet") is not None})
    for line in sys.stdin:
        if line.strip() != "run":
            break
        started = time.perf_counter()
        run("images")
        _reply({"seconds": time.perf_counter() - started})
    spark.stop()


class _Driver:
    """A ``--serve`` child and its log."""

    def __init__(self, python: str, conf: dict, images: str, warm: str, warm_passes: int,
                 env: dict, log: str):
        self.log = log
        with open(log, "w") as err:
            self.proc = subprocess.Popen(
                [python, "-m", "bench.python313", "--serve", json.dumps(conf), images, warm,
                 str(warm_passes)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                cwd=ROOT, env=env)

    def answer(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith(REPLY):
                return json.loads(line[len(REPLY):])
        raise RuntimeError(f"the driver exited with {self.proc.wait()}: see {self.log}")

    def run(self) -> dict:
        """One timed CTAS: its seconds, and the model loads its workers logged meanwhile
        (Spark stops a Python worker idle for about a minute: a driver that waited longer
        for the other one loads again)."""
        before = self.loads()
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        seconds = self.answer()["seconds"]
        return {"seconds": seconds, "loads": self.loads() - before}

    def loads(self) -> int:
        from mxsql.udfs.logs import parse_loaded_models

        with open(self.log, encoding="utf-8", errors="replace") as f:
            return len(parse_loaded_models(f.read()))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _images(root: str, workload, count: int) -> str:
    """A folder of the workload's first ``count`` images (hard links)."""
    folder = os.path.join(root, f"python313-{workload.name}-{count}")
    if not os.path.exists(os.path.join(folder, ".done")):
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        files = sorted(os.path.join(f, n) for f in workload.folders(count)
                       for n in os.listdir(f) if n.endswith("." + workload.ext))[:count]
        for path in files:
            os.link(path, os.path.join(folder, os.path.basename(path)))
        open(os.path.join(folder, ".done"), "w").close()
    return folder


def install_work_tree() -> None:
    """The work tree's mxsql into .venv-py313 again (its dependencies are there already),
    so that what runs there is the code at hand; RuntimeError with pip's output if not."""
    done = subprocess.run([PY313, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall",
                           ROOT], capture_output=True, text=True, env=env_313(), timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"pip install of {ROOT} into {PY313} failed: {done.stderr[-2000:]}")


def env_313(**extra) -> Dict[str, str]:
    """This process's environment for a .venv-py313 process: nothing pointing at this
    Python's packages, and Spark's workers on .venv-py313's Python."""
    from bench.runner import NO_ARCHIVE

    env = {k: v for k, v in os.environ.items() if k not in _THIS_PYTHON}
    return {**env, "PYSPARK_PYTHON": PY313, **NO_ARCHIVE, **extra}


def head_to_head(env, workload, images: int = 500, rounds: int = 7,
                 warm_passes: Optional[int] = None) -> dict:
    """Python 3.13 with ONNX Runtime against 3.11 with MXNet FP32, ``rounds`` rounds over
    ``images`` of ``workload``'s images, for ``env``'s ResNet-18 (``bench.runner.Env``).
    A failure is returned (``error``, ``log``), not raised: the rest of a run still counts."""
    from bench.spark_paths import WARM_PASSES
    from demo import zoo

    if not os.path.exists(PY313):
        return {"error": f"{PY313} does not exist: `make test` or `bash .ci/setup py313` makes it"}
    if warm_passes is None:
        warm_passes = WARM_PASSES
    folder = _images(env.work, workload, images)
    conf = {**zoo.model_conf(env.prefix), "spark.mxsql.cacheDir": env.cache,
            "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"}
    sides = {
        "python311_mxnet": (sys.executable, conf,
                            env.environ(MXSQL_HOME=os.path.join(env.work, "home-py311"),
                                        PYSPARK_PYTHON=sys.executable)),
        "python313_onnxruntime": (PY313,
                                  {**conf, "spark.mxsql.model.resnet18.engine": "onnxruntime"},
                                  env_313(MXSQL_HOME=os.path.join(env.work, "home-py313"))),
    }
    drivers, started = {}, {}
    try:
        install_work_tree()
        for name, (python, side_conf, side_env) in sides.items():  # warmed up one at a time
            drivers[name] = _Driver(python, side_conf, folder, workload.warm, warm_passes,
                                    side_env, env.log_path(name))
            started[name] = drivers[name].answer()
        order = list(drivers)
        # One untimed round: the first driver's workers stopped while the second warmed up.
        first = {name: drivers[name].run() for name in order}
        timed = []
        for i in range(rounds):
            timed.append({name: drivers[name].run()
                          for name in (order if i % 2 == 0 else order[::-1])})
    except (RuntimeError, subprocess.SubprocessError, OSError) as e:
        logs = {name: d.log for name, d in drivers.items()}
        return {"error": f"{type(e).__name__}: {e}", "log": logs}
    finally:
        for driver in drivers.values():
            driver.stop()
    old, new = order
    # Seconds, 3.11's over 3.13's: 3.13's rate over 3.11's.
    ratios = [t[old]["seconds"] / t[new]["seconds"] for t in timed]
    return {
        "images": images, "drivers": started, "untimed_round": first, "rounds": timed,
        "rate": {name: statistics.median(images / t[name]["seconds"] for t in timed)
                 for name in order},
        "loads_while_timed": sum(t[name]["loads"] for t in timed for name in order),
        "ratios": ratios, "ratio_median": statistics.median(ratios),
    }


def report_lines(result: dict) -> List[str]:
    """The report's Python 3.13 section, from ``results["python313"]`` alone (a failed
    run is listed with the failed measurements instead)."""
    if "error" in result:
        return []
    rate, ratio = result["rate"], result["ratio_median"]
    verdict = "met" if ratio >= TARGET_RATIO else "**not met**"
    return [
        "## Python 3.13 without MXNet (issue 19)", "",
        f"ResNet-18 through SQL over {result['images']} CIFAR-shaped images, two drivers "
        f"taking turns for {len(result['ratios'])} rounds: Python 3.11 with MXNet FP32 "
        f"{rate['python311_mxnet']:.1f} img/s, Python 3.13 with ONNX Runtime (mxsql's "
        f"converter) {rate['python313_onnxruntime']:.1f} img/s (medians). 3.13 over 3.11, "
        f"median of the rounds' ratios: {ratio:.2f}x; target >= {TARGET_RATIO}x: {verdict}. "
        f"Models loaded again while timed: {result['loads_while_timed']}.", "",
    ]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.python313", description=__doc__)
    parser.add_argument("--serve", nargs=4, metavar=("CONF", "IMAGES", "WARM", "PASSES"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--work", default=os.path.join(os.path.dirname(__file__), ".work"))
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warm-passes", type=int)
    args = parser.parse_args(argv)
    if args.serve:
        conf, images, warm, passes = args.serve
        serve(json.loads(conf), images, warm, int(passes))
        return
    from bench import runner, workloads
    from demo import zoo

    work = os.path.abspath(args.work)
    prefix = zoo.export_resnet18(os.path.join(work, "model"))
    env = runner.Env(work, prefix, batch=0)  # the batch size is the shipped setting's
    result = head_to_head(env, workloads.cifar(work, args.images), args.images, args.rounds,
                          args.warm_passes)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
