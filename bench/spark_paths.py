"""Paths (2) to (5) through a real SparkSession, one path per child process.

Run as ``python -m bench.spark_paths --path sql ...``: a fresh driver, JVM and set of
Python workers for every measurement, so that no path inherits another's loaded model
or memory. The process sends its stderr (and so the JVM's and the workers') to
``--log``, from which model loads are counted. Prints one JSON object on stdout.
With ``--path sql predict_batch_udf ... --rounds N``, the paths run head to head in one
driver instead, timed in turn (``head_to_head``).

Every path first runs ``WARM_PASSES`` times (``--warm-passes``) over a small warm-up
folder (the workers start and load their model, the JVM compiles its hot paths), then is
timed over the measured folders; the cold cost is measured on its own by
``--limit-queries`` (DECISIONS 8).
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from functools import partial

PATHS = ("sql", "predict_batch_udf", "classic", "recipe", "row", "read")
# The JVM compiles its hot paths over the first thousand or so images it reads, and
# Spark's planning, the metastore and the Parquet writer over the first dozen or so
# queries: about 0.5 CPU s of compiling per query, or 1 ms a photo over the 500 photos,
# still at the fifth query and half that by the fifteenth. With 4 passes, path (2) ran
# the photos about 3.5% slower than with 12; the classic shape (4s), which plans no SQL,
# ran the same.
WARM_PASSES = 12
# The previous path's JVM can outlive its Python driver by a moment, still holding the
# shared Derby catalog; the next driver waits this long for it (a run failed without).
CATALOG_WAIT_S = 60


def _session(conf: dict):
    from mxsql.registry.session import build_session
    from mxsql.udfs.errors import CatalogInUseError

    deadline = time.monotonic() + CATALOG_WAIT_S
    while True:
        try:
            return build_session(conf, master="local[*]", app_name="mxsql-bench")
        except CatalogInUseError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _images_view(spark, name: str, folders, ext: str) -> None:
    spark.read.format("binaryFile").option("pathGlobFilter", f"*.{ext}") \
        .load(list(folders)).createOrReplaceTempView(name)


def _run_sql(spark, source: str, table: str, model: str) -> None:
    spark.sql(f"DROP TABLE IF EXISTS {table}")
    spark.sql(f"CREATE TABLE {table} USING parquet AS "
              f"SELECT path, mx_classify(content, '{model}') AS prediction FROM {source}")


def _read_runner(spark):
    """A function (source view, table) that runs the "read" path: Spark reads each file
    and hands its bytes to a Python worker through Arrow, as for mx_classify, and an
    Arrow UDF that only takes their length (``baselines.content_lengths``) writes Parquet:
    what (2) costs besides decoding and the network."""
    from pyspark.sql.functions import arrow_udf

    from bench import baselines

    spark.udf.register("bench_content_length", arrow_udf(baselines.content_lengths, "int"))

    def run(source: str, table: str) -> None:
        spark.sql(f"DROP TABLE IF EXISTS {table}")
        spark.sql(f"CREATE TABLE {table} USING parquet AS "
                  f"SELECT path, bench_content_length(content) AS length FROM {source}")

    return run


def _udf_runner(spark, path: str, settings):
    """A function (source view, table) that runs path (3) or (5) and writes Parquet."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType

    from bench import baselines

    spec, batch_size = settings.model("resnet18"), settings.batch_size
    struct = StructType([StructField("label", StringType()),
                         StructField("probability", DoubleType()),
                         StructField("class_index", IntegerType())])
    if path == "predict_batch_udf":
        from pyspark.ml.functions import predict_batch_udf

        fn = predict_batch_udf(partial(baselines.make_predict, spec, batch_size, settings),
                               return_type=struct, batch_size=batch_size)
    else:
        fn = F.udf(partial(baselines.classify_row, spec), struct)

    def run(source: str, table: str) -> None:
        spark.table(source).select("path", fn("content").alias("prediction")) \
            .write.format("parquet").mode("overwrite").saveAsTable(table)

    return run


def _files(folders, ext: str) -> list:
    return sorted(os.path.join(f, n) for f in folders for n in os.listdir(f)
                  if n.endswith("." + ext))


def _classic_rdd(spark, folders, ext: str):
    """The file paths, in as many partitions as the binaryFile scan of path (2) has."""
    paths = _files(folders, ext)
    _images_view(spark, "classic_images", folders, ext)
    slices = spark.table("classic_images").rdd.getNumPartitions()
    return spark.sparkContext.parallelize(paths, slices)


def _classic_runner(spark, spec, batch_size: int, ext: str):
    from bench import baselines

    def run(folders) -> int:
        rdd = _classic_rdd(spark, folders, ext)
        return len(rdd.mapPartitions(partial(baselines.classic_partition, spec, batch_size))
                   .collect())

    return run


def _limit_queries(spark, model: str, repeats: int) -> list:
    """Seconds for each of ``repeats`` runs of a LIMIT 10 query (DECISIONS 8)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        spark.sql(f"SELECT path, mx_classify(content, '{model}') AS p FROM images LIMIT 10") \
            .collect()
        times.append(time.perf_counter() - started)
    return times


def _conf(args) -> dict:
    conf = dict(kv.split("=", 1) for kv in args.conf)
    conf.update({
        "spark.mxsql.model.resnet18.uri": args.prefix,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
    })
    return conf


def _runs(spark, path: str, args):
    """(warm, timed, partitions): ``path``'s pass over the warm-up folder, its pass over
    the measured folders, and how many Spark partitions the latter has."""
    from mxsql.registry.config import settings_from_session

    settings = settings_from_session(spark)
    spec = settings.model("resnet18")
    batch_size = settings.batch_size
    files = _files(args.folders, args.ext)
    if path == "recipe":
        partitions = -(-len(files) // batch_size)  # one partition a batch
    else:
        source = _classic_rdd(spark, args.folders, args.ext) if path == "classic" \
            else spark.table("images").rdd
        partitions = source.getNumPartitions()
    if path == "sql":
        warm = partial(_run_sql, spark, "warm_images", "bench_warm", "resnet18")
        timed = partial(_run_sql, spark, "images", "bench_sql", "resnet18")
    elif path == "recipe":
        from bench.classic import run_published

        warm = partial(run_published, spark, spec, batch_size, _files([args.warm], args.ext))
        timed = partial(run_published, spark, spec, batch_size, files)
    elif path == "read":
        run = _read_runner(spark)
        warm, timed = partial(run, "warm_images", "bench_warm_read"), \
            partial(run, "images", "bench_read")
    elif path == "classic":
        run = _classic_runner(spark, spec, batch_size, args.ext)
        warm, timed = partial(run, [args.warm]), partial(run, args.folders)
    else:
        run = _udf_runner(spark, path, settings)
        warm = partial(run, "warm_images", f"bench_warm_{path}")
        timed = partial(run, "images", f"bench_{path}")
    return warm, timed, partitions


def _start(args):
    spark = _session(_conf(args))
    _images_view(spark, "images", args.folders, args.ext)
    _images_view(spark, "warm_images", [args.warm], args.ext)
    return spark


def _timed(sampler, run) -> dict:
    """Seconds and CPU seconds (all processes, and Python workers alone) of one ``run()``."""
    threading.Event().wait(3 * sampler.interval)
    cpu, cpu_py = sampler.cpu_seconds(), sampler.cpu_seconds(python_only=True)
    started = time.perf_counter()
    run()
    seconds = time.perf_counter() - started
    threading.Event().wait(3 * sampler.interval)
    return {"seconds": seconds, "cpu_seconds": sampler.cpu_seconds() - cpu,
            "python_cpu_seconds": sampler.cpu_seconds(python_only=True) - cpu_py}


def measure(args) -> dict:
    """One path in this fresh driver: warmed up, then timed once."""
    from bench.monitor import RssSampler, count_loads

    (path,) = args.path
    with RssSampler() as sampler:
        spark = _start(args)
        warm, timed, partitions = _runs(spark, path, args)
        for _ in range(args.warm_passes):
            warm()
        result = _timed(sampler, timed)
        loads = count_loads(_read(args.log))
        limit_times = _limit_queries(spark, "resnet18", args.limit_queries) \
            if args.limit_queries else []
        spark.stop()
    return {
        "path": path, "images": len(_files(args.folders, args.ext)), **result,
        "loads": sum(loads.values()), "workers": len(loads),
        "peak_rss_mb": sampler.peak_mb, "limit_seconds": limit_times,
        "limit_loads": sum(count_loads(_read(args.log)).values()) - sum(loads.values()),
        "partitions": partitions,
    }


def _ceiling(args, batch_size: int) -> dict:
    """One run of (1c), decode + forward with no Spark, while this driver waits."""
    from bench.runner import ceiling_command

    cmd = ceiling_command(args.prefix, batch_size, args.ceiling_files)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.ceiling_threads)}
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env, check=True).stdout
    result = json.loads(out.splitlines()[-1])
    return {"seconds": result["seconds"], "cpu_seconds": result["cpu_seconds"]}


def head_to_head(args) -> dict:
    """Several paths in this one driver, warmed up together, then timed in turn for
    ``args.rounds`` rounds, the order reversed every other round; with
    ``--ceiling-files``, (1c) runs after them in every round.

    Paths timed side by side in one session meet the same JVM, the same workers and,
    within seconds, the same load from other jobs on the machine, so the ratio of two
    paths in one round is steadier than the ratio of two fresh drivers run minutes apart.
    """
    from mxsql.registry.config import settings_from_session

    from bench.monitor import RssSampler

    with RssSampler() as sampler:
        spark = _start(args)
        runs = {path: _runs(spark, path, args) for path in args.path}
        batch_size = settings_from_session(spark).batch_size
        for _ in range(args.warm_passes):
            for warm, _, _ in runs.values():
                warm()
        rounds = []
        for i in range(args.rounds):
            order = args.path if i % 2 == 0 else args.path[::-1]
            timed = {path: _timed(sampler, runs[path][1]) for path in order}
            if args.ceiling_files:
                timed["ceiling"] = _ceiling(args, batch_size)
            rounds.append(timed)
        spark.stop()
    return {"paths": args.path, "images": len(_files(args.folders, args.ext)),
            "rounds": rounds}


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--path", choices=PATHS, nargs="+", required=True,
                        help="one path; several with --rounds")
    parser.add_argument("--prefix", required=True, help="ResNet-18 checkpoint prefix")
    parser.add_argument("--folders", nargs="+", required=True)
    parser.add_argument("--warm", required=True)
    parser.add_argument("--ext", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--limit-queries", type=int, default=0)
    parser.add_argument("--warm-passes", type=int, default=WARM_PASSES)
    parser.add_argument("--rounds", type=int, default=0,
                        help="time the paths in turn in this one driver, this many rounds")
    parser.add_argument("--ceiling-files", help="with --rounds: also time (1c) over the "
                                                "files this file lists, every round")
    parser.add_argument("--ceiling-threads", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)
    if len(args.path) > 1 and not args.rounds:
        parser.error("several paths need --rounds")
    out = os.dup(1)
    log = os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    os.dup2(log, 2)  # the JVM and the Python workers inherit this stderr
    os.dup2(log, 1)  # keep stdout for the result alone
    sys.stdout = sys.stderr
    result = head_to_head(args) if args.rounds else measure(args)
    os.write(out, (json.dumps(result) + "\n").encode())


if __name__ == "__main__":
    main()
