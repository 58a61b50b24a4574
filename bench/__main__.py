"""Run the benchmark: ``python -m bench`` (full, ~50 min on 2 cores) or ``--quick``.

Makes its workloads and the ResNet-18 checkpoint under ``--work`` (cached), measures
paths (1) to (5) (with (4) both as the classic recipe was published and in its shape
with mxsql's decode and network), (1o) and (2o) with the ONNX Runtime engine, INT8's
uncached quantization and (1q), (2q) and (3q) at precision=int8, where the time goes
(Spark's read and hand-over, decode, resize, to tensor, the network in FP32 and INT8),
and (2), (3) and (4s) head to head in one driver, on both workloads in one run; then the cold
cost of a repeated LIMIT 10, the start-up of a one-shot mxsql (bench/startup.py),
worker memory at two sizes (FP32 and INT8), decode prefetch on and off, and
sweeps the settings that matter; then writes bench/RESULTS.md, bench/results.png and
the raw JSON.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

from bench import jdbc, python313, report, runner, startup, sweep, workloads
from bench.spark_paths import WARM_PASSES

HERE = os.path.dirname(os.path.abspath(__file__))

# The paths that do the same work as (2), timed in turn in one driver (see
# spark_paths.head_to_head): their separate runs differ by less than the noise.
HEAD_TO_HEAD = ("sql", "predict_batch_udf", "classic")


def _machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "load": os.getloadavg()}


def _commit() -> str:
    """The commit the run measures, marked when the working tree differs from it."""
    def git(*args):
        return subprocess.run(["git", "-C", HERE, *args], capture_output=True, text=True,
                              check=False).stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    return f"{head} with uncommitted changes" if head and git("status", "--porcelain") \
        else head


def _batch_size() -> int:
    from mxsql.registry.session import layered_conf
    from mxsql.udfs.config import parse_settings

    return parse_settings(layered_conf()).batch_size


def _limit(env, nproc: int, seconds: float) -> dict:
    """Path (1) at its best thread setting, every setting that uses the whole machine."""
    settings = [(1, nproc)] + ([(nproc, 1)] if nproc > 1 else [])
    tried = [runner.limit(env, processes, threads, seconds) for processes, threads in settings]
    best = runner.best(tried)
    return {**best, "tried": tried}


def _onnx(env, workload, images: int, limit: dict, seconds: float) -> dict:
    """Paths (1o) and (2o): (1) and (2) with the ONNX Runtime engine, (1o) at the process
    and thread setting (1) found best; the model is converted once, into env.cache."""
    _say(workload.name, "ONNX Runtime forward alone")
    forward = runner.limit(env, limit["processes"], limit["threads"], seconds, onnx=True)
    _say(workload.name, "sql, engine=onnxruntime", images, "images")
    conf = {"spark.mxsql.model.resnet18.engine": "onnxruntime", "spark.mxsql.cacheDir": env.cache}
    sql = runner.spark_path(env, "sql", workload, images, conf)
    _say(workload.name, "sql, engine=onnxruntime", _outcome(sql))
    return {"limit_onnx": forward, "sql_onnx": sql}


def _int8(env, workload, images: int, limit: dict, seconds: float) -> dict:
    """INT8's one-time quantization (uncached), then paths (1q), (2q) and (3q): (1), (2)
    and (3) with the same network quantized to INT8 (``precision=int8``), (1q) at the
    process and thread setting (1) found best."""
    _say(workload.name, "int8: quantization, uncached")
    quantized = runner.quantize(env, workload)
    _say(workload.name, "int8: forward alone")
    forward = runner.limit(env, limit["processes"], limit["threads"], seconds, int8=workload)
    out = {"quantize": quantized, "limit_int8": forward}
    for path in ("sql", "predict_batch_udf"):
        _say(workload.name, f"{path}, precision=int8", images, "images")
        out[f"{path}_int8"] = runner.spark_path(env, path, workload, images,
                                                runner.int8_conf(env, workload))
        _say(workload.name, f"{path}, precision=int8", _outcome(out[f"{path}_int8"]))
    return out


def _say(*parts) -> None:
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


def _outcome(result: dict) -> str:
    """A measurement's img/s, or why there is none, for the progress lines."""
    if runner.failed(result):
        return f"FAILED: {result['error']} (see {result.get('log')})"
    return f"{result['rate']:.1f} img/s"


def _sweep(env, sets: dict, sizes: dict) -> list:
    """Path (2) at every sweep point; points equal to the shipped settings run once."""
    from mxsql.registry.session import layered_conf

    shipped = {**sweep.MXSQL_DEFAULTS, **layered_conf()}
    done, points = {}, []
    for workload, setting, shown, conf in sweep.POINTS:
        effective = (workload, tuple(sorted({**shipped, **conf}.items())))
        if effective not in done:
            _say("sweep", workload, setting, shown)
            done[effective] = runner.spark_path(env, "sql", sets[workload], sizes[workload],
                                                conf)
        point = done[effective]
        measured = ({key: point[key] for key in ("error", "log", "stderr_tail") if key in point}
                    if runner.failed(point) else
                    {"images": point["images"], "rate": point["rate"], "cpu_ms": point["cpu_ms"],
                     "rss": point["peak_rss_mb"], "partitions": point["partitions"]})
        points.append({"workload": workload, "setting": setting, "value": shown, "conf": conf,
                       **measured,
                       "shipped": all(shipped.get(k) == v for k, v in conf.items())})
    return points


def _jdbc_limit(env, workload) -> dict:
    """DECISIONS 8 through mxsql-thriftserver; a failure is reported, not fatal."""
    conf = {"spark.mxsql.model.resnet18.uri": env.prefix, "spark.ui.enabled": "false",
            # The server reads files by path only under these (a run failed without).
            "spark.mxsql.server.allowedPaths": env.work}
    server_env = env.environ(MXSQL_HOME=os.path.join(env.work, "home-jdbc"))
    log = env.log_path("jdbc")
    try:
        times = jdbc.limit_queries(server_env, conf, workload.shards[0], workload.warm,
                                   workload.ext, log)
    except Exception as e:  # the rest of the run still counts
        first_line = str(e).partition("\n")[0]  # the server's log tail follows in stderr_tail
        return {"error": f"{type(e).__name__}: {first_line}", "log": log,
                "stderr_tail": runner.stderr_tail(log)}
    return {"seconds": times}


def run(args) -> dict:
    nproc = os.cpu_count()
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    from demo import zoo

    prefix = zoo.export_resnet18(os.path.join(work, "model"))
    env = runner.Env(work, prefix, _batch_size(), args.warm_passes)
    sets = {"cifar": workloads.cifar(work, args.cifar),
            "photos": workloads.photos(work, args.photos)}
    sizes = {"cifar": args.cifar, "photos": args.photos}
    row_sizes = {"cifar": min(args.cifar, workloads.CIFAR_SHARD),
                 "photos": min(args.photos, workloads.PHOTO_SHARD)}
    results = {"machine": _machine(), "command": " ".join(["python -m bench"] + sys.argv[1:]),
               "batch_size": env.batch, "warm_passes": args.warm_passes, "commit": _commit(),
               "workloads": {}, "started": time.strftime("%Y-%m-%d %H:%M")}
    for name, workload in sets.items():
        out = results["workloads"][name] = {}
        _say(name, "limit")
        out["limit"] = _limit(env, nproc, args.seconds)
        if name == "photos":
            _say(name, "ceiling")
            out["ceiling"] = runner.ceiling(env, workload, sizes[name], nproc)
        for path in report.SPARK_PATHS:
            images = row_sizes[name] if path == "row" else sizes[name]
            _say(name, path, images, "images")
            queries = 4 if (path == "sql" and name == "cifar") else 0
            out[path] = runner.spark_path(env, path, workload, images, limit_queries=queries)
            _say(name, path, _outcome(out[path]))
        out.update(_onnx(env, workload, sizes[name], out["limit"], args.seconds))
        out.update(_int8(env, workload, sizes[name], out["limit"], args.seconds))
        images = min(sizes[name], args.split_images)
        _say(workload.name, "where the time goes,", images, "images")
        out["time_split"] = runner.time_split(env, workload, images)
        images = min(sizes[name], args.head_to_head_images)
        _say(name, "head to head:", ", ".join(HEAD_TO_HEAD),
             "and (1c)" if "ceiling" in out else "", images, "images", args.rounds, "rounds")
        out["head_to_head"] = runner.head_to_head(
            env, HEAD_TO_HEAD, workload, images, args.rounds,
            ceiling_threads=nproc if "ceiling" in out else 0)
    _say("cifar: Python 3.13 with onnxruntime against 3.11 with mxnet, head to head")
    results["python313"] = python313.head_to_head(env, sets["cifar"], rounds=args.rounds,
                                                  warm_passes=args.warm_passes)
    _say("memory at", args.memory_small, "images")
    results["memory_small"] = runner.spark_path(env, "sql", sets["cifar"], args.memory_small)
    _say("memory at", args.memory_small, "images, precision=int8")
    results["memory_small_int8"] = runner.spark_path(env, "sql", sets["cifar"], args.memory_small,
                                                     runner.int8_conf(env, sets["cifar"]))
    _say("prefetch off")
    results["prefetch"] = {
        "off": runner.spark_path(env, "sql", sets["photos"], args.prefetch_images,
                                 {"spark.mxsql.prefetch": "false"}),
        "on": runner.spark_path(env, "sql", sets["photos"], args.prefetch_images,
                                {"spark.mxsql.prefetch": "true"}),
    }
    _say("LIMIT 10 over JDBC")
    results["jdbc_limit"] = _jdbc_limit(env, sets["cifar"])
    _say("start-up of a one-shot mxsql")
    results["startup"] = startup.measure(work, prefix, env.batch, rounds=args.startup_rounds,
                                         ctas_rounds=args.startup_ctas_rounds)
    if args.sweep:
        results["sweep"] = _sweep(env, sets, {"cifar": args.sweep_images,
                                              "photos": sizes["photos"]})
    results["machine"]["load_after"] = os.getloadavg()
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes for development (1,000 / 100 images, short sweep)")
    parser.add_argument("--work", default=os.path.join(HERE, ".work"))
    parser.add_argument("--cifar", type=int, default=10_000)
    parser.add_argument("--photos", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=20, help="timing of each limit run")
    parser.add_argument("--memory-small", type=int, default=1000)
    parser.add_argument("--prefetch-images", type=int, default=300)
    parser.add_argument("--sweep-images", type=int, default=2000)
    parser.add_argument("--head-to-head-images", type=int, default=2000,
                        help="images a path runs a round over, head to head")
    parser.add_argument("--rounds", type=int, default=5, help="rounds head to head")
    parser.add_argument("--startup-rounds", type=int, default=5,
                        help="rounds of SELECT 1 in fresh processes (bench.startup)")
    parser.add_argument("--startup-ctas-rounds", type=int, default=3)
    parser.add_argument("--split-images", type=int, default=500,
                        help="images the time split (where the time goes) runs over")
    parser.add_argument("--warm-passes", type=int, default=WARM_PASSES,
                        help="untimed passes over a warm-up folder before a path is timed")
    parser.add_argument("--no-sweep", dest="sweep", action="store_false")
    parser.add_argument("--out", default=HERE, help="where RESULTS.md and results.png go")
    parser.add_argument("--from-json", help="only write the report from a saved results.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.cifar, args.photos, args.seconds = 1000, 100, 8
        args.memory_small, args.prefetch_images, args.sweep_images = 200, 100, 500
        args.head_to_head_images, args.rounds = 500, 3
        args.split_images = 100
        args.startup_rounds, args.startup_ctas_rounds = 3, 1
    if args.from_json:
        with open(args.from_json) as f:
            results = json.load(f)
    else:
        results = run(args)
        with open(os.path.join(os.path.abspath(args.work), "results.json"), "w") as f:
            json.dump(results, f, indent=1)
    rows = report.table_rows(results)
    print(report.markdown_table(rows))
    report.bar_chart(rows, os.path.join(args.out, "results.png"),
                     f"ResNet-18 images/s on {results['machine']['nproc']} cores "
                     f"({results['machine']['cpu']})")
    with open(os.path.join(args.out, "RESULTS.md"), "w") as f:
        f.write(report.results_markdown(results, rows))


if __name__ == "__main__":
    main()
