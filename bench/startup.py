"""Start-up costs of one-shot ``mxsql`` runs (issue 17): ``python -m bench.startup``.

Every ``mxsql -e``/``-f`` run is a fresh JVM, a fresh catalog and fresh Python workers.
This measures what a run costs before its work starts, each figure in a fresh process
with a fresh catalog (``MXSQL_HOME`` and working directory of its own):

- the whole ``mxsql -e "SELECT 1"`` against ``bin/spark-sql -e "SELECT 1"``, and
  ``mxsql`` without the JVM start-up archive, timed in turn in interleaved rounds (the
  median of the per-round ratios is the figure: the machine is shared);
- a first and a repeated CTAS of ``binaryFile`` over CIFAR-shaped PNGs without mx
  functions (``length(content)``), and with ``mx_classify`` (ResNet-18, FP32), each
  followed by a ``LIMIT 10`` twice (the first LIMIT stops its worker, so the second
  starts a new one); mx's one-time cost is (first mx CTAS - its repeat) - (first plain
  CTAS - its repeat), per round, median; the same over each statement's CPU seconds,
  by part of the process tree (``bench.cpu_split``), says whose work it is;
- the parts of mx's cost in one process shaped like a worker: the daemon's imports,
  a fork, the model load, and the first and a repeated batch at each of the two batch
  shapes a worker runs (``spark.mxsql.batchSize`` and ``models.SHORT_BATCH``).

``python -m bench`` runs it as part of the benchmark (``results["startup"]``); alone it
writes its own JSON and prints its report. ``--before FILE`` puts an earlier run's
figures beside this one's.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from statistics import median
from typing import Dict, List, Optional

from bench.cpu_split import PARTS, sampled_run

__all__ = ["measure", "report_lines", "one_time_cost", "one_time_cpu", "time_taken", "main"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = 1280  # the CIFAR-shaped set
_TIME_TAKEN = re.compile(r"^Time taken: ([0-9.]+) seconds", re.MULTILINE)
# The contenders of the SELECT 1 rounds, in the order a round runs them.
SELECT1 = ("mxsql", "mxsql_no_archive", "spark_sql")
SELECT1_NAMES = {
    "mxsql": '`mxsql -e "SELECT 1"`',
    "mxsql_no_archive": '`mxsql -e "SELECT 1"`, `MXSQL_JVM_ARCHIVE=off`',
    "spark_sql": '`bin/spark-sql -e "SELECT 1"`',
}
# Statements of the CTAS processes: CTAS, the same CTAS again, LIMIT 10 twice.
_SELECTED = {"plain": "length(content) AS bytes", "mx": "mx_classify(content) AS top"}
_LIMITED = {"plain": "length(content)", "mx": "mx_classify(content).label"}
STATEMENTS = ("first", "repeat", "limit", "limit_again")
TARGET_RATIO = 0.6
TARGET_ONE_TIME_S = 1.0


def time_taken(stderr: str) -> List[float]:
    """The seconds of each ``Time taken`` line the shell wrote, in order."""
    return [float(s) for s in _TIME_TAKEN.findall(stderr)]


def one_time_cost(plain: Dict[str, float], mx: Dict[str, float]) -> float:
    """mx's own one-time cost: what its first CTAS costs over its repeat, beyond what the
    first plain CTAS costs over its repeat."""
    return (mx["first"] - mx["repeat"]) - (plain["first"] - plain["repeat"])


def one_time_cpu(rounds: List[dict]) -> Dict[str, float]:
    """mx's one-time work in CPU seconds, by part of the process tree (``one_time_cost``
    over each statement's CPU of that part), and in all (``total``): medians of
    ``rounds``."""
    def cpu(result: dict, part: Optional[str]) -> Dict[str, float]:
        return {s: (sum(result["cpu"][s].values()) if part is None
                    else result["cpu"][s].get(part, 0.0)) for s in ("first", "repeat")}

    out = {"total": median(one_time_cost(cpu(r["plain"], None), cpu(r["mx"], None))
                           for r in rounds)}
    for part in PARTS:
        out[part] = median(one_time_cost(cpu(r["plain"], part), cpu(r["mx"], part))
                           for r in rounds)
    return out


def _say(*parts) -> None:
    print(time.strftime("%H:%M:%S"), "startup:", *parts, file=sys.stderr, flush=True)


def _spark_home() -> str:
    from pyspark.find_spark_home import _find_spark_home

    return _find_spark_home()


def _environ(**extra) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    env.pop("SPARK_CONF_DIR", None)  # mxsql's own spark-defaults.conf, as users get it
    # Both shells keep Spark's ports on loopback (mxsql does by itself, DECISIONS 12).
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    env.update(extra)
    return env


def _timed(cmd: List[str], log: str, *, cpu: bool = False, **extra) -> dict:
    """Run ``cmd`` in a fresh working directory and catalog: wall seconds, and the
    seconds of each statement (with ``cpu``, also each statement's CPU seconds by part
    of the process tree, ``bench.cpu_split``); ``error`` when it failed."""
    scratch = tempfile.mkdtemp(prefix="startup-")
    try:
        env = _environ(MXSQL_HOME=os.path.join(scratch, "home"), **extra)
        started = time.monotonic()
        if cpu:
            code, stderr, split = sampled_run(cmd, cwd=scratch, env=env)
        else:
            run = subprocess.run(cmd, cwd=scratch, env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 check=False)
            code, stderr, split = run.returncode, run.stderr, None
        wall = time.monotonic() - started
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    with open(log, "w") as f:
        f.write(stderr)
    if code != 0:
        tail = stderr.strip().splitlines()[-5:]
        return {"error": f"exit code {code}", "log": log, "stderr_tail": tail}
    out = {"wall": wall, "statements": time_taken(stderr)}
    if split is not None:
        out["cpu"] = [dict(parts) for _, parts in split]
    return out


def _mxsql() -> str:
    return os.path.join(os.path.dirname(sys.executable), "mxsql")


def _prepare_archive(log: str) -> Optional[str]:
    """Build this machine's JVM start-up archive now if it has none (the state "after
    the machine's first run"); its path, or None when it cannot be built."""
    run = subprocess.run([sys.executable, "-m", "mxsql.registry.jvmcache"], env=_environ(),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         check=False)
    with open(log, "w") as f:
        f.write(run.stdout)
    return run.stdout.strip().split(" (")[0] if run.returncode == 0 else None


def select_one(logs: str, rounds: int, warm_rounds: int = 1) -> dict:
    """``SELECT 1`` by each contender of SELECT1, in turn, ``rounds`` times, after
    ``warm_rounds`` untimed ones (the page cache is then the machine's after a first run)."""
    spark_sql = os.path.join(_spark_home(), "bin", "spark-sql")
    commands = {
        "mxsql": ([_mxsql(), "-e", "SELECT 1"], {}),
        "mxsql_no_archive": ([_mxsql(), "-e", "SELECT 1"], {"MXSQL_JVM_ARCHIVE": "off"}),
        "spark_sql": ([spark_sql, "-e", "SELECT 1"], {}),
    }
    runs = []
    for number in range(warm_rounds + rounds):
        order = SELECT1 if number % 2 == 0 else tuple(reversed(SELECT1))
        one = {}
        for name in order:
            cmd, extra = commands[name]
            one[name] = _timed(cmd, os.path.join(logs, f"select1-{number}-{name}.log"), **extra)
        _say("SELECT 1 round", number, {k: round(v.get("wall", -1), 2) for k, v in one.items()})
        if number >= warm_rounds:
            runs.append(one)
    return {"runs": runs, **_select_one_summary(runs)}


def _select_one_summary(runs: List[dict]) -> dict:
    ok = [r for r in runs if not any("error" in v for v in r.values())]
    if not ok:
        return {}
    return {"median": {name: median(r[name]["wall"] for r in ok) for name in SELECT1},
            "ratio": median(r["mxsql"]["wall"] / r["spark_sql"]["wall"] for r in ok),
            "ratio_no_archive": median(r["mxsql_no_archive"]["wall"] / r["spark_sql"]["wall"]
                                       for r in ok)}


def _write_images(folder: str, count: int) -> str:
    """``count`` CIFAR-shaped PNGs (32x32, a smooth random field and a shape) in
    ``folder``, made once."""
    done = os.path.join(folder, ".done")
    if os.path.exists(done):
        return folder
    import numpy as np
    from PIL import Image, ImageDraw

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(17)
    for i in range(count):
        field = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        img = Image.fromarray(field, "RGB").resize((32, 32), Image.BICUBIC)
        x, y = (int(v) for v in rng.integers(0, 20, 2))
        ImageDraw.Draw(img).ellipse((x, y, x + 12, y + 12),
                                    fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        img.save(os.path.join(folder, f"{i:05d}.png"), "PNG")
    open(done, "w").close()
    return folder


def _ctas_script(kind: str, images: str, path: str) -> str:
    source = f"binaryFile.`{images}`"
    with open(path, "w") as f:
        for table in ("first", "repeat"):
            f.write(f"CREATE TABLE {kind}_{table} AS SELECT path, {_SELECTED[kind]} "
                    f"FROM {source};\n")
        for _ in range(2):
            f.write(f"SELECT path, {_LIMITED[kind]} FROM {source} LIMIT 10;\n")
    return path


def ctas(logs: str, prefix: str, images: str, rounds: int) -> dict:
    """A plain and an mx ``mxsql -f`` process per round, in turn: each runs its CTAS,
    the same CTAS again and ``LIMIT 10`` twice."""
    scripts = {kind: _ctas_script(kind, images, os.path.join(logs, f"{kind}.sql"))
               for kind in _SELECTED}
    conf = ["--conf", f"spark.mxsql.model.default.uri={prefix}"]
    runs = []
    for number in range(rounds):
        one = {}
        for kind in (("plain", "mx") if number % 2 == 0 else ("mx", "plain")):
            result = _timed([_mxsql(), *conf, "-f", scripts[kind]],
                            os.path.join(logs, f"ctas-{number}-{kind}.log"), cpu=True)
            if "error" not in result:
                if len(result["statements"]) != len(STATEMENTS):
                    result = {"error": f"{len(result['statements'])} statements timed, "
                                       f"{len(STATEMENTS)} run", "log": result.get("log")}
                else:
                    result = {"wall": result["wall"],
                              **dict(zip(STATEMENTS, result.pop("statements"))),
                              "cpu": dict(zip(STATEMENTS, result["cpu"]))}
            one[kind] = result
        _say("CTAS round", number, {k: {s: round(v, 2) for s, v in r.items()
                                        if isinstance(v, float)} for k, r in one.items()})
        runs.append(one)
    ok = [r for r in runs if "error" not in r["plain"] and "error" not in r["mx"]]
    summary = {}
    if ok:
        summary["median"] = {kind: {s: median(r[kind][s] for r in ok)
                                    for s in ("wall", *STATEMENTS)} for kind in _SELECTED}
        summary["one_time"] = median(one_time_cost(r["plain"], r["mx"]) for r in ok)
        summary["one_time_cpu"] = one_time_cpu(ok)
        summary["limit_again"] = median(r["mx"]["limit_again"] - r["mx"]["limit"] for r in ok)
    return {"runs": runs, **summary}


def _parts(prefix: str, batch: int) -> dict:
    """In this process, as a worker forked from mxsql's daemon would: the seconds of the
    daemon's imports, a fork, the model load, and each batch shape's first and second
    batch (``python -m bench.startup --parts`` prints it as JSON)."""
    out = {}
    started = time.monotonic()
    from mxsql.udfs import daemon

    out["preloaded"] = daemon.preload()
    out["imports"] = time.monotonic() - started
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    out["fork"] = time.monotonic() - started

    import numpy as np

    from mxsql.udfs import models
    from mxsql.udfs.config import parse_settings

    settings = parse_settings({"spark.mxsql.model.default.uri": prefix,
                               "spark.mxsql.batchSize": str(batch)})
    spec = settings.model("default")
    started = time.monotonic()
    model = models.get_model(spec, settings)
    out["load"] = time.monotonic() - started
    height, width = spec.input_size
    pixels = np.random.default_rng(0).integers(
        0, 256, (batch, height, width, spec.channels), dtype=np.uint8)
    for name, count in (("batch", batch), ("short", models.SHORT_BATCH - 1)):
        for when in ("first", "again"):
            started = time.monotonic()
            model.predict(pixels[:count], batch)
            out[f"{name}_{when}"] = time.monotonic() - started
    out["batch_size"], out["short_batch"] = batch, models.SHORT_BATCH
    return out


def parts(logs: str, prefix: str, batch: int, rounds: int) -> dict:
    """``_parts`` in fresh processes with one OpenMP thread (as Spark's workers run with
    spark.task.cpus 1), ``rounds`` times; the median of each figure."""
    runs = []
    for number in range(rounds):
        log = os.path.join(logs, f"parts-{number}.log")
        with open(log, "w") as err:
            run = subprocess.run(
                [sys.executable, "-m", "bench.startup", "--parts", prefix, "--batch",
                 str(batch)], env=_environ(OMP_NUM_THREADS="1"), stdout=subprocess.PIPE,
                stderr=err, text=True, check=False)
        lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
        runs.append(json.loads(lines[-1]) if lines else
                    {"error": f"exit code {run.returncode}", "log": log})
    ok = [r for r in runs if "error" not in r]
    figures = ("imports", "fork", "load", "batch_first", "batch_again", "short_first",
               "short_again")
    summary = {"median": {k: median(r[k] for r in ok) for k in figures}} if ok else {}
    if ok:
        summary.update(batch_size=ok[0]["batch_size"], short_batch=ok[0]["short_batch"],
                       preloaded=ok[0]["preloaded"])
    return {"runs": runs, **summary}


def measure(work: str, prefix: str, batch: int, *, images: int = IMAGES, rounds: int = 5,
            ctas_rounds: int = 3, warm_rounds: int = 1) -> dict:
    """Every start-up figure, as ``results["startup"]`` of the benchmark's JSON."""
    logs = os.path.join(work, "logs", "startup")
    os.makedirs(logs, exist_ok=True)
    folder = _write_images(os.path.join(work, f"startup-cifar{images}"), images)
    out = {"load": os.getloadavg(), "images": images, "rounds": rounds,
           "ctas_rounds": ctas_rounds, "started": time.strftime("%Y-%m-%d %H:%M")}
    out["archive"] = _prepare_archive(os.path.join(logs, "archive.log"))
    _say("archive", out["archive"])
    out["select1"] = select_one(logs, rounds, warm_rounds)
    out["ctas"] = ctas(logs, prefix, folder, ctas_rounds)
    out["parts"] = parts(logs, prefix, batch, ctas_rounds)
    out["load_after"] = os.getloadavg()
    return out


def _s(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}"


def _check(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _pick(node: Optional[dict], *path):
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def report_lines(startup: dict) -> List[str]:
    """The report's start-up section, from ``results["startup"]`` alone; an earlier run's
    figures (``startup["before"]``) in a column of their own."""
    before = startup.get("before")
    col = " | before" if before else ""
    sep = "|---" if before else ""
    out = ["## Start-up: a one-shot `mxsql` (issue 17)", "",
           f"Each figure in a fresh process with a fresh catalog; load average "
           f"{startup['load'][0]:.2f} before, {startup['load_after'][0]:.2f} after "
           f"(shared machine). JVM start-up archive: "
           f"{'`' + startup['archive'] + '`' if startup.get('archive') else 'none'}.", ""]
    s1 = startup["select1"]
    out += [f"Whole process, median of {len(s1['runs'])} interleaved rounds, seconds:", "",
            f"| what | seconds{col} |", f"|---|---{sep}|"]
    for name in SELECT1:
        extra = f" | {_s(_pick(before, 'select1', 'median', name))}" if before else ""
        out.append(f"| {SELECT1_NAMES[name]} | {_s(_pick(s1, 'median', name))}{extra} |")
    ratio = s1.get("ratio")
    if ratio is not None:
        was = _pick(before, "select1", "ratio")
        out += ["", f"`mxsql` / `spark-sql` (median of the rounds' ratios): {ratio:.2f}x"
                + (f" (before: {was:.2f}x)" if was is not None else "")
                + f", without the archive {s1['ratio_no_archive']:.2f}x. Target "
                f"<= {TARGET_RATIO}x: {_check(ratio <= TARGET_RATIO)}."]
    c = startup["ctas"]
    out += ["", f"CTAS over {startup['images']} CIFAR-shaped PNGs (ResNet-18 FP32 for "
            f"`mx_classify`), statement seconds, median of {len(c['runs'])} rounds:", "",
            "| what | first in the process | the same again | LIMIT 10 | LIMIT 10 again "
            "| whole process |", "|---|---|---|---|---|---|"]
    for kind, what in (("plain", "`length(content)` (no mx)"), ("mx", "`mx_classify`")):
        m = _pick(c, "median", kind) or {}
        out.append(f"| {what} | " + " | ".join(
            _s(m.get(s)) for s in (*STATEMENTS, "wall")) + " |")
    if "one_time" in c:
        was = _pick(before, "ctas", "one_time")
        out += ["", f"mx's one-time cost ((mx first - repeat) - (plain first - repeat), "
                f"median of the rounds): {c['one_time']:.2f} s"
                + (f" (before: {was:.2f} s)" if was is not None else "")
                + f". Target <= {TARGET_ONE_TIME_S} s: "
                f"{_check(c['one_time'] <= TARGET_ONE_TIME_S)}. "
                f"A LIMIT 10 after a LIMIT (a new worker) costs {c['limit_again']:.2f} s more "
                "than the first LIMIT 10 after the CTAS (a warm worker)."]
    work = c.get("one_time_cpu")
    if work:
        out += ["", f"The same in CPU seconds of the process tree (`bench.cpu_split`), median "
                f"of the rounds: {work['total']:.2f} CPU s, of which "
                + ", ".join(f"{part} {work[part]:.2f}" for part in PARTS)
                + ". With the cores busy, wall time grows by about this over the number of "
                "cores."]
    p = startup.get("parts") or {}
    if "median" in p:
        m, pb = p["median"], _pick(before, "parts", "median") or {}
        out += ["", f"Parts of mx's one-time cost, one process shaped like a worker (one "
                f"OpenMP thread), median of {len(p['runs'])}:", "",
                f"| part | seconds{col} |", f"|---|---{sep}|"]
        names = (("imports", "daemon's imports (" + ", ".join(p["preloaded"]) + ")"),
                 ("fork", "a fork of it"), ("load", "model load"),
                 ("batch_first", f"first batch of {p['batch_size']}"),
                 ("batch_again", f"next batch of {p['batch_size']}"),
                 ("short_first", f"first short batch (shape {p['short_batch']})"),
                 ("short_again", f"next short batch (shape {p['short_batch']})"))
        for key, what in names:
            extra = f" | {_s(pb.get(key))}" if before else ""
            out.append(f"| {what} | {_s(m[key])}{extra} |")
    failed = [(where, r) for where, r in _failures(startup)]
    if failed:
        out += ["", "Failed runs:"] + [f"- {where}: {r['error']} (`{r.get('log')}`)"
                                        for where, r in failed]
    return out + [""]


def _failures(startup: dict):
    for n, one in enumerate(startup["select1"]["runs"]):
        for name, r in one.items():
            if "error" in r:
                yield f"SELECT 1 round {n + 1}, {name}", r
    for n, one in enumerate(startup["ctas"]["runs"]):
        for kind, r in one.items():
            if "error" in r:
                yield f"CTAS round {n + 1}, {kind}", r
    for n, r in enumerate((startup.get("parts") or {}).get("runs", [])):
        if "error" in r:
            yield f"parts {n + 1}", r


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=os.path.join(ROOT, "bench", ".work"))
    parser.add_argument("--images", type=int, default=IMAGES)
    parser.add_argument("--rounds", type=int, default=5, help="SELECT 1 rounds")
    parser.add_argument("--ctas-rounds", type=int, default=3)
    parser.add_argument("--warm-rounds", type=int, default=1,
                        help="untimed SELECT 1 rounds first (0 when the machine ran them)")
    parser.add_argument("--before", help="an earlier startup JSON to report beside this run")
    parser.add_argument("--out", help="where the JSON goes (default WORK/startup.json)")
    parser.add_argument("--from-json", help="only print the report of a saved startup JSON")
    parser.add_argument("--parts", metavar="PREFIX", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.parts:
        print(json.dumps(_parts(args.parts, args.batch)))
        return
    if args.from_json:
        with open(args.from_json) as f:
            startup = json.load(f)
    else:
        from bench.__main__ import _batch_size
        from demo import zoo

        work = os.path.abspath(args.work)
        prefix = zoo.export_resnet18(os.path.join(work, "model"))
        startup = measure(work, prefix, _batch_size(), images=args.images,
                          rounds=args.rounds, ctas_rounds=args.ctas_rounds,
                          warm_rounds=args.warm_rounds)
        startup["command"] = " ".join(["python -m bench.startup"] + sys.argv[1:])
        if args.before:
            with open(args.before) as f:
                startup["before"] = {k: v for k, v in json.load(f).items() if k != "before"}
        out = args.out or os.path.join(work, "startup.json")
        with open(out, "w") as f:
            json.dump(startup, f, indent=1)
        _say("wrote", out)
    print("\n".join(report_lines(startup)))


if __name__ == "__main__":
    main()
