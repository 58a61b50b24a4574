"""The benchmark's report: bench/RESULTS.md (Markdown) and its bar chart (PNG, drawn with
Pillow), both from a run's JSON alone.

Every figure in them comes from that JSON, so that ``python -m bench --from-json FILE``
renders the same report again. Figures measured apart from a run are in the hand-written
bench/NOTES.md, with the commit that measured them.
"""

from statistics import median
from typing import Iterator, List, Optional, Tuple

from PIL import Image, ImageDraw, ImageFont

from bench import python313, startup

__all__ = ["NAMES", "table_rows", "markdown_table", "bar_chart", "results_markdown"]

# The row title of each measurement.
NAMES = {
    "limit": "(1) MXNet forward alone",
    "ceiling": "(1c) decode+forward, 1 process",
    "sql": "(2) SQL mx_classify -> Parquet",
    "predict_batch_udf": "(3) predict_batch_udf",
    "recipe": "(4) classic recipe as published",
    "classic": "(4s) classic shape, mxsql's decode and network",
    "row": "(5) row-at-a-time Python UDF",
    "limit_onnx": "(1o) ONNX Runtime forward alone",
    "sql_onnx": "(2o) SQL mx_classify, engine=onnxruntime",
    "limit_int8": "(1q) MXNet INT8 forward alone",
    "sql_int8": "(2q) SQL mx_classify, precision=int8",
    "predict_batch_udf_int8": "(3q) predict_batch_udf, the same INT8 network",
}
SPARK_PATHS = ("sql", "predict_batch_udf", "recipe", "classic", "row")

# A row is a dict: workload, path, images, rate (img/s), ratio to (1), cpu_ms (CPU
# milliseconds per image, all processes of the path), loads, workers, rss (MiB), note.


def _failed(result: Optional[dict]) -> bool:
    """Whether a measurement is missing or failed (bench.runner records ``error``)."""
    return result is None or "error" in result


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or not b else a / b


def table_rows(results: dict) -> List[dict]:
    """The rows of the main table, a failed measurement as a row without figures."""
    rows = []
    for name, out in results["workloads"].items():
        limit = out["limit"]
        rate1 = None if _failed(limit) else limit["rate"]
        cpu1 = None if _failed(limit) else limit["cpu_ms"]

        def row(key: str, note: str = "", images=None) -> dict:
            r = out[key]
            if _failed(r):
                return {"workload": name, "path": NAMES[key], "images": images, "rate": None,
                        "note": "**failed**: see Failed measurements"}
            return {"workload": name, "path": NAMES[key], "images": images,
                    "rate": r["rate"], "ratio": _ratio(r["rate"], rate1),
                    "cpu_ms": r["cpu_ms"], "cpu_ratio": _ratio(cpu1, r["cpu_ms"]),
                    "loads": r.get("loads"), "workers": r.get("workers"),
                    "rss": r.get("peak_rss_mb"), "note": note}

        rows.append(row("limit", f"{limit['processes']} process(es) x {limit['threads']} "
                                 "OMP threads"))
        if "ceiling" in out:
            c = out["ceiling"]
            rows.append(row("ceiling", f"{c['threads']} OMP threads, decode overlapped",
                            c.get("images")))
        for path in SPARK_PATHS:
            r = out[path]
            note = []
            if not _failed(r):
                note.append(f"{r['partitions']} partitions")
                if path == "row" and not _failed(out["sql"]) \
                        and r["images"] < out["sql"]["images"]:
                    note.append(f"measured on the first {r['images']} images")
                if path == "sql" and not _failed(out.get("ceiling")):
                    note.append(f"{r['rate'] / out['ceiling']['rate']:.2f}x (1c)")
            rows.append(row(path, "; ".join(note), r.get("images")))
        if "limit_onnx" in out:
            o, r = out["limit_onnx"], out["sql_onnx"]
            rows.append(row("limit_onnx", f"{o['processes']} process(es) x {o['threads']} "
                                          "threads, as (1)"))
            note = "" if _failed(r) else f"{r['partitions']} partitions"
            if not _failed(r) and not _failed(o):
                note += f"; {r['rate'] / o['rate']:.2f}x (1o)"
            rows.append(row("sql_onnx", note, r.get("images")))
        if "limit_int8" in out:
            rows += _int8_rows(out, row)
    return rows


def _int8_rows(out: dict, row) -> List[dict]:
    """Rows (1q), (2q) and (3q): (1), (2) and (3) with the network quantized to INT8."""
    q = out["limit_int8"]
    rows = [row("limit_int8", f"{q['processes']} process(es) x {q['threads']} OMP threads, "
                              "as (1)")]
    for key, fp32, int8_base in (("sql_int8", "sql", "limit_int8"),
                                 ("predict_batch_udf_int8", "predict_batch_udf", None)):
        r = out[key]
        note = []
        if not _failed(r):
            note.append(f"{r['partitions']} partitions")
            if int8_base and not _failed(out[int8_base]):
                note.append(f"{r['rate'] / out[int8_base]['rate']:.2f}x (1q)")
            if not _failed(out[fp32]):
                note.append(f"{r['rate'] / out[fp32]['rate']:.2f}x {_LABELS[fp32]} "
                            f"(by CPU {out[fp32]['cpu_ms'] / r['cpu_ms']:.2f}x)")
        rows.append(row(key, "; ".join(note), r.get("images")))
    return rows


def _fmt(value: Optional[float], spec: str) -> str:
    return "" if value is None else format(value, spec)


def markdown_table(rows: List[dict]) -> str:
    lines = [
        "| workload | path | images | img/s | x (1) | CPU ms / img | x (1) by CPU | "
        "model loads / workers | peak worker RSS (MiB) | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        loads = "" if r.get("loads") is None else f"{r['loads']} / {r['workers']}"
        lines.append(
            f"| {r['workload']} | {r['path']} | {r.get('images') or ''} "
            f"| {_fmt(r['rate'], '.1f')} | {_fmt(r.get('ratio'), '.2f')} "
            f"| {_fmt(r.get('cpu_ms'), '.1f')} | {_fmt(r.get('cpu_ratio'), '.2f')} | {loads} "
            f"| {_fmt(r.get('rss'), '.0f')} | {r.get('note', '')} |"
        )
    return "\n".join(lines) + "\n"


def bar_chart(rows: List[dict], path: str, title: str) -> None:
    """Horizontal bars of img/s, one group per workload, each labelled with its ratio."""
    rows = [r for r in rows if r["rate"] is not None]
    font = ImageFont.load_default(size=15)
    bold = ImageFont.load_default(size=18)
    bar_h, gap, left, right, top = 24, 8, 330, 300, 50
    groups = []
    for r in rows:
        if not groups or groups[-1][0] != r["workload"]:
            groups.append((r["workload"], []))
        groups[-1][1].append(r)
    height = top + sum(30 + len(g) * (bar_h + gap) + 16 for _, g in groups)
    width = 1200
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((10, 12), title, fill="black", font=bold)
    y = top
    for workload, members in groups:
        scale = (width - left - right) / max(r["rate"] for r in members)
        draw.text((10, y), workload, fill="black", font=bold)
        y += 30
        for r in members:
            colour = (70, 110, 180) if not r["path"].startswith("(2)") else (220, 120, 40)
            draw.text((20, y + 4), r["path"][:38], fill="black", font=font)
            draw.rectangle((left, y, left + max(1, r["rate"] * scale), y + bar_h), fill=colour)
            label = f"{r['rate']:.1f} img/s"
            if r.get("ratio") is not None:
                label += f"  ({r['ratio']:.2f}x; by CPU {r['cpu_ratio']:.2f}x)"
            draw.text((left + r["rate"] * scale + 6, y + 4), label, fill="black", font=font)
            y += bar_h + gap
        y += 16
    img.save(path)


# How far a worker's peak memory may move between the small and the full run and still be flat.
_FLAT = 0.05


def _check(ok: bool) -> str:
    return "met" if ok else "**not met**"


# The label of each path in the targets and in the head-to-head tables.
_LABELS = {"sql": "(2)", "limit": "(1)", "ceiling": "(1c)", "predict_batch_udf": "(3)",
           "recipe": "(4)", "classic": "(4s)", "sql_int8": "(2q)", "limit_int8": "(1q)",
           "predict_batch_udf_int8": "(3q)"}


def _h2h(out: dict) -> Optional[dict]:
    """The workload's head-to-head rounds, unless they failed."""
    h2h = out.get("head_to_head")
    return None if _failed(h2h) or not h2h.get("rounds") else h2h


def _paired(h2h: dict, base: str) -> dict:
    """(2)'s ratio to ``base`` round by round head to head: img/s and by CPU."""
    wall = [r["sql"]["rate"] / r[base]["rate"] for r in h2h["rounds"]]
    cpu = [r[base]["cpu_ms"] / r["sql"]["cpu_ms"] for r in h2h["rounds"]]
    return {"wall": median(wall), "cpu": median(cpu), "low": min(wall), "high": max(wall)}


def _targets(results: dict) -> List[str]:
    """Each target (2) has, from the issue or from DECISIONS.md, which wins where they differ.

    Against a path the run also timed head to head with (2), the target is judged on the
    rounds: paths this close differ by less than the noise between separate drivers.
    """
    lines = []

    def line(name, out, base, want, source, issue_want=None):
        h2h = _h2h(out)
        paired = h2h is not None and base in h2h["rounds"][0]
        apart_ok = not _failed(out["sql"]) and not _failed(out[base])
        if not apart_ok and not paired:
            crashed = " and ".join(_LABELS[k] for k in ("sql", base) if _failed(out[k]))
            lines.append(f"- {name}: (2) against {_LABELS[base]}, target {want:.2f}x "
                         f"({source}): not measured, {crashed} failed")
            return
        how, apart = "", ""
        if apart_ok:
            wall = out["sql"]["rate"] / out[base]["rate"]
            cpu = out[base]["cpu_ms"] / out["sql"]["cpu_ms"]
        if paired:
            apart = (f"; in separate drivers {wall:.2f}x (by CPU {cpu:.2f}x)" if apart_ok
                     else "; in separate drivers: failed")
            p = _paired(h2h, base)
            wall, cpu = p["wall"], p["cpu"]
            how = (f" head to head, the median of {len(h2h['rounds'])} rounds "
                   f"({p['low']:.2f}x to {p['high']:.2f}x)")
        text = (f"- {name}: (2) = {wall:.2f}x {_LABELS[base]} (by CPU {cpu:.2f}x){how}, "
                f"target {want:.2f}x ({source}): {_check(wall >= want)} (by CPU "
                f"{_check(cpu >= want)}){apart}")
        if issue_want is not None:
            text += f"; the issue's {issue_want:.2f}x: {_check(wall >= issue_want)}"
        lines.append(text)

    for name, out in results["workloads"].items():
        if "ceiling" in out:
            line(name, out, "ceiling", 0.90,
                 "DECISIONS 16: decode shares the cores, so photos are held to (1c)")
            line(name, out, "limit", 0.80, "issue; reported, per DECISIONS 16")
        else:
            line(name, out, "limit", 0.90, "issue")
        line(name, out, "predict_batch_udf", 1.0, "issue, DECISIONS 17")
        if "recipe" in out:
            line(name, out, "recipe", 1.0, "DECISIONS 17: the classic recipe on local files",
                 issue_want=1.5)
        line(name, out, "classic", 1.0, "ours, stricter than DECISIONS 17: the classic shape "
                                          "with mxsql's own decode and network")
        if "sql_int8" in out:
            lines.append(_int8_target(name, out))
    for label, small_key, big_key in (("memory", "memory_small", "sql"),
                                      ("memory, precision=int8", "memory_small_int8",
                                       "sql_int8")):
        if small_key not in results:
            continue
        small, big = results[small_key], results["workloads"]["cifar"].get(big_key)
        if _failed(small) or _failed(big):
            lines.append(f"- {label}: target flat (within {_FLAT:.0%}): not measured, a "
                         "measurement failed")
            continue
        growth = big["peak_rss_mb"] / small["peak_rss_mb"] - 1
        lines.append(f"- {label}: peak RSS of a Python worker {small['peak_rss_mb']:.0f} MiB "
                     f"at {small['images']} images, {big['peak_rss_mb']:.0f} MiB at "
                     f"{big['images']} ({growth:+.0%}), target flat (within {_FLAT:.0%}): "
                     f"{_check(abs(growth) <= _FLAT)}")
    jdbc = results.get("jdbc_limit") or {}
    if "seconds" in jdbc:
        slowest = max(jdbc["seconds"])
        lines.append(f"- cold start: the slowest repeated LIMIT 10 over JDBC took {slowest:.2f} s, "
                     f"target under 2 s (DECISIONS 8): {_check(slowest < 2.0)}")
    return lines


# The issue's INT8 targets: on CIFAR-shaped images (2q) against FP32's forward limit (1),
# on photos, where decoding stays, (2q) against FP32 SQL (2).
_INT8_TARGETS = {"limit": 2.0, "sql": 1.5}


def _int8_target(name: str, out: dict) -> str:
    """(2q)'s target line: against (1) on a workload without (1c), else against (2)."""
    base = "sql" if "ceiling" in out else "limit"
    want = _INT8_TARGETS[base]
    r, b = out["sql_int8"], out[base]
    if _failed(r) or _failed(b):
        crashed = " and ".join(_LABELS[k] for k in ("sql_int8", base) if _failed(out[k]))
        return (f"- {name}: (2q) against {_LABELS[base]}, target {want:.2f}x (issue): not "
                f"measured, {crashed} failed")
    wall, cpu = r["rate"] / b["rate"], b["cpu_ms"] / r["cpu_ms"]
    return (f"- {name}: (2q) = {wall:.2f}x {_LABELS[base]} (by CPU {cpu:.2f}x), target "
            f"{want:.2f}x (issue: SQL at precision=int8 against FP32's "
            f"{'SQL' if base == 'sql' else 'forward limit'}): {_check(wall >= want)} "
            f"(by CPU {_check(cpu >= want)})")


def _quantization(results: dict) -> List[str]:
    """INT8's one-time cost per workload's model, uncached."""
    runs = {name: out["quantize"] for name, out in results["workloads"].items()
            if "quantize" in out}
    if not runs:
        return []
    shown = []
    for name, q in runs.items():
        shown.append(f"{name}: failed (see Failed measurements)" if _failed(q) else
                     f"{name}: {q['seconds']:.1f} s ({q['cpu_seconds']:.1f} CPU s) from "
                     f"{q['images']} images")
    return ["## INT8: the one-time quantization", "",
            "`precision=int8` quantizes the checkpoint once per machine and caches it "
            "(spark.mxsql.cacheDir); the INT8 rows above ran with it cached. Its cost, "
            "timed apart in a fresh process with an empty cache (decoding the calibration "
            "images, the workload's warm-up images, included; reading the checkpoint "
            "not), for ResNet-18: " + "; ".join(shown) + ".", ""]


# The steps of bench.time_split, in the order an image goes through them.
_STEPS = (("decode", "decode"), ("resize", "resize"), ("to_tensor", "to tensor"),
          ("network_fp32", "network FP32"), ("network_int8", "network INT8"))


def _time_split(results: dict) -> List[str]:
    """Where the time goes, per workload: CPU ms per image of each step."""
    runs = {name: out["time_split"] for name, out in results["workloads"].items()
            if "time_split" in out}
    if not runs:
        return []
    out = ["## Where the time goes", "",
           "CPU ms per image of each step. Spark's read and Arrow hand-over is path (2) with "
           "a UDF that only takes each file's length: every process (JVM and Python "
           "workers), warmed up as (2) is. The other steps ran in one process on one "
           "thread (as one task on one core) over the first images of the workload, each "
           "step over all of them in turn, with mxsql's own code; the network at the "
           "inference batch size. The totals add the steps; (2) and (2q) are what SQL "
           "measured in this run, for comparison.", "",
           "| workload | images | Spark read + hand-over | "
           + " | ".join(label for _, label in _STEPS)
           + " | total FP32 | total INT8 | (2) | (2q) |",
           "|---|---:|" + "---:|" * (len(_STEPS) + 5)]
    shares = []
    for name, split in runs.items():
        read, steps = split["read"], split["steps"]
        if _failed(steps):
            out.append(f"| {name} | | " + " | ".join(["**failed**"] + [""] * (len(_STEPS) + 4))
                       + " |")
            continue
        spark = None if _failed(read) else read["cpu_ms"]
        common = (spark or 0) + steps["decode"] + steps["resize"] + steps["to_tensor"]
        totals = [common + steps["network_fp32"], common + steps["network_int8"]]
        measured = [results["workloads"][name].get(k) for k in ("sql", "sql_int8")]
        cells = ["**failed**" if spark is None else f"{spark:.2f}"]
        cells += [f"{steps[key]:.2f}" for key, _ in _STEPS]
        cells += [f"{t:.1f}" if spark is not None else "" for t in totals]
        cells += ["" if _failed(m) else f"{m['cpu_ms']:.1f}" for m in measured]
        out.append(f"| {name} | {steps['images']} | " + " | ".join(cells) + " |")
        if spark is not None:
            parts = {"Spark read + hand-over": spark, "decode": steps["decode"],
                     "resize": steps["resize"], "to tensor": steps["to_tensor"],
                     "network": steps["network_int8"]}
            biggest = sorted(parts.items(), key=lambda kv: -kv[1])
            shares.append(f"- {name}: with INT8, " + ", ".join(
                f"{label} {value / totals[1]:.0%}" for label, value in biggest) + ".")
    if shares:
        out += ["", "Shares of the INT8 total, largest first:", "", *shares]
    return out + [""]


def _warm_passes(results: dict) -> str:
    passes = results.get("warm_passes")
    return f"{passes} passes each" if passes else "the same passes"


def _head_to_head(results: dict) -> List[str]:
    """The rounds of the paths timed in turn in one driver, a table per workload."""
    runs = {name: _h2h(out) for name, out in results["workloads"].items() if _h2h(out)}
    if not runs:
        return []
    out = ["## Head to head in one driver", "",
           "(2), (3) and (4s) run the same decode and network code, so they differ by less "
           "than the noise between fresh drivers run minutes apart. Here they share one "
           f"driver: warmed up together ({_warm_passes(results)}), then timed one after "
           "another, in reverse order every other round, so that each round's ratios "
           "compare runs seconds apart under the same load. On the photos (1c) runs in "
           "every round too, after them, while the driver waits. The targets above take "
           "the median of the rounds' ratios. img/s, with CPU ms per image in brackets:"]
    for name, h2h in runs.items():
        paths = [p for p in _LABELS if p in h2h["rounds"][0]]
        bases = paths[1:]
        out += ["", f"{name}, {h2h['images']} images:", "",
                "| round | " + " | ".join(_LABELS[p] for p in paths) + " | "
                + " | ".join(f"(2) / {_LABELS[b]}" for b in bases) + " |",
                "|---:|" + "---:|" * (len(paths) + len(bases))]
        for i, r in enumerate(h2h["rounds"], 1):
            cells = [f"{r[p]['rate']:.1f} ({r[p]['cpu_ms']:.1f})" for p in paths]
            cells += [f"{r['sql']['rate'] / r[b]['rate']:.3f}" for b in bases]
            out.append(f"| {i} | " + " | ".join(cells) + " |")
        cells = [f"{median(r[p]['rate'] for r in h2h['rounds']):.1f}" for p in paths]
        cells += [f"**{_paired(h2h, b)['wall']:.3f}**" for b in bases]
        out.append("| median | " + " | ".join(cells) + " |")
    return out + [""]


def _reading(results: dict) -> List[str]:
    """A warning when other jobs visibly moved the figures during the run."""
    limits = {name: out["limit"] for name, out in results["workloads"].items()
              if not _failed(out["limit"])}
    rates = [v["rate"] for v in limits.values()]
    if not rates or max(rates) <= 1.25 * min(rates):
        return []
    shown = ", ".join(f"{v['rate']:.1f} img/s ({name}, {v['cpu_ms']:.1f} CPU ms / img)"
                      for name, v in limits.items())
    return [
        "**Reading these figures.** Other jobs took a changing share of the cores during "
        f"this run: the same forward pass (1) measured {shown} a few minutes apart. img/s "
        "and its ratios therefore say more about the machine's load at the time than about "
        "the paths; CPU time per image is less sensitive to the load, so the `by CPU` "
        "ratios are the ones to compare. Re-run on a quiet machine for img/s.",
        "",
    ]


def _jdbc_lines(jdbc: Optional[dict]) -> List[str]:
    if not jdbc:
        return []
    if _failed(jdbc):
        return ["Over JDBC (mxsql-thriftserver, PyHive): not measured, it failed (see Failed "
                "measurements).", ""]
    return ["The same query over JDBC (mxsql-thriftserver on 127.0.0.1, PyHive), after one "
            "full query over the warm-up images: "
            + ", ".join(f"{t:.2f} s" for t in jdbc["seconds"]) + ".", ""]


def _cold_start(results: dict) -> List[str]:
    big = results["workloads"]["cifar"]["sql"]
    out = ["## Cold start: a repeated LIMIT 10 (DECISIONS 8)", ""]
    if _failed(big):
        out += ["Not measured in this driver: path (2) on cifar failed.", ""]
    else:
        limit_q = big.get("limit_seconds") or []
        out += ["`SELECT path, mx_classify(content, 'resnet18') FROM images LIMIT 10`, run "
                f"{len(limit_q)} times after the full query in the same session: "
                + ", ".join(f"{t:.2f} s" for t in limit_q)
                + ". A LIMIT query kills the worker it used, so once the pooled workers are "
                "used up each run starts a fresh worker that loads the model again "
                f"({big.get('limit_loads', 0)} loads in these runs).", ""]
    return out + _jdbc_lines(results.get("jdbc_limit"))


def _memory(results: dict) -> List[str]:
    out = ["## Worker memory", ""]
    for label, small_key, big_key in (("path (2)", "memory_small", "sql"),
                                      ("path (2q), precision=int8", "memory_small_int8",
                                       "sql_int8")):
        if small_key not in results:
            continue
        small, big = results[small_key], results["workloads"]["cifar"].get(big_key)
        measured = [f"{r['peak_rss_mb']:.0f} MiB for {r['images']} images"
                    for r in (small, big) if not _failed(r)]
        out += [f"Peak RSS of one Python worker, {label}: "
                + (", ".join(measured) if measured else "not measured, both runs failed")
                + ".", ""]
    return out


def _prefetch(results: dict) -> List[str]:
    pre = results["prefetch"]
    out = ["## Decode prefetch (spark.mxsql.prefetch)", ""]
    if _failed(pre["on"]) or _failed(pre["off"]):
        return out + ["Not measured: a run failed.", ""]
    on, off = pre["on"], pre["off"]
    return out + [
        f"Path (2) on {on['images']} photos: prefetch on {on['rate']:.1f} img/s "
        f"({on['cpu_ms']:.1f} CPU ms / img), off {off['rate']:.1f} img/s "
        f"({off['cpu_ms']:.1f} CPU ms / img): {on['rate'] / off['rate']:.2f}x. "
        "The decode thread runs at idle CPU priority (SCHED_IDLE): it uses a core only "
        "when the network, the JVM and the other tasks leave one idle, and the task decodes "
        "itself the rows the thread has not reached when it needs the batch, so the thread "
        "can neither take the network's core nor hold the task up.",
        "",
    ]


def _sweep(results: dict) -> List[str]:
    points = results.get("sweep")
    if not points:
        return []
    out = ["## Settings sweep (path (2))", "",
           "One setting changed at a time from the shipped spark-defaults.conf (marked "
           "*shipped*); a point equal to the shipped settings is run once. The split "
           "size runs on the photos, where it changes how many tasks the cores share.",
           "",
           "| setting | value | workload | images | img/s | CPU ms / img | partitions "
           "| peak worker RSS (MiB) |",
           "|---|---|---|---:|---:|---:|---:|---:|"]
    for p in points:
        shipped = " *shipped*" if p.get("shipped") else ""
        if _failed(p):
            out.append(f"| {p['setting']} | {p['value']}{shipped} | {p['workload']} | "
                       "| **failed** | | | |")
            continue
        out.append(f"| {p['setting']} | {p['value']}{shipped} | {p['workload']} | "
                   f"{p['images']} | {p['rate']:.1f} | {p['cpu_ms']:.1f} | "
                   f"{p['partitions']} | {p['rss']:.0f} |")
    fastest, leanest = {}, {}
    for p in points:
        if _failed(p):
            continue
        if p["setting"] not in fastest or p["rate"] > fastest[p["setting"]]["rate"]:
            fastest[p["setting"]] = p
        if p["setting"] not in leanest or p["cpu_ms"] < leanest[p["setting"]]["cpu_ms"]:
            leanest[p["setting"]] = p
    return out + [
        "", "Most img/s here: " + "; ".join(f"{k} = {v['value']}" for k, v in fastest.items())
        + ".",
        "", "Least CPU per image here: "
        + "; ".join(f"{k} = {v['value']}" for k, v in leanest.items()) + ".",
        "", "img/s moves with the other jobs on the machine, and so, less, does CPU "
        "ms per image, which cannot see idle cores (task.cpus, split size). How far "
        "identical work moved in this run:", "", *_sweep_noise(results), ""]


def _sweep_noise(results: dict) -> List[str]:
    """Per workload, the img/s the shipped settings measured over the sweep's images in
    this run (the shipped point, and (2)'s head-to-head rounds over the same images), and
    the points that ran faster than all of them."""
    lines = []
    for name in dict.fromkeys(p["workload"] for p in results["sweep"]):
        points = [p for p in results["sweep"] if p["workload"] == name and not _failed(p)]
        shipped = next((p for p in points if p["shipped"]), None)  # one run, however often listed
        if shipped is None:
            lines.append(f"- {name}: the shipped settings' point failed.")
            continue
        images = shipped["images"]
        rates, runs = [shipped["rate"]], "the shipped sweep point"
        h2h = _h2h(results["workloads"][name])
        if h2h and h2h["images"] == images:
            rates += [r["sql"]["rate"] for r in h2h["rounds"]]
            runs += " and (2)'s head-to-head rounds"
        faster = [f"{p['setting']} = {p['value']} ({p['rate']:.1f})"
                  for p in points if p["rate"] > max(rates)]
        verdict = ("none of its points ran faster than that, so none is a reason to change "
                   "spark-defaults.conf" if not faster
                   else "faster than all of them: " + "; ".join(faster))
        lines.append(f"- {name}: the shipped settings ran the same {images} images at "
                     f"{min(rates):.1f} to {max(rates):.1f} img/s ({len(rates)} runs: "
                     f"{runs}); {verdict}.")
    return lines


def _failures(node, where: Tuple[str, ...] = ()) -> Iterator[Tuple[str, dict]]:
    """(where in the results, failure) for every failed measurement of a run."""
    if isinstance(node, dict):
        if "error" in node:
            yield " / ".join(where), node
            return
        for key, value in node.items():
            yield from _failures(value, where + (str(key),))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            label = (f"{value['setting']} = {value['value']}"
                     if isinstance(value, dict) and "setting" in value else str(i))
            yield from _failures(value, where + (label,))


def _failed_section(results: dict) -> List[str]:
    """Each failed measurement, with the last lines of its stderr."""
    failures, seen = [], set()
    for where, failure in _failures(results):
        if (failure["error"], failure.get("log")) not in seen:  # (1)'s best is one it tried
            seen.add((failure["error"], failure.get("log")))
            failures.append((where, failure))
    if not failures:
        return []
    out = ["## Failed measurements", ""]
    for where, failure in failures:
        out += [f"- **{where}**: {failure['error']}"
                + (f" (stderr: `{failure['log']}`)" if failure.get("log") else "")]
        if failure.get("stderr_tail"):
            out += ["", "  Last lines of its stderr:", "", "  ```",
                    *(f"  {line}" for line in failure["stderr_tail"]), "  ```"]
        out.append("")
    return out


def results_markdown(results: dict, rows: Optional[List[dict]] = None) -> str:
    """The whole of bench/RESULTS.md for one run, from its JSON alone."""
    rows = table_rows(results) if rows is None else rows
    m = results["machine"]
    commit = f" on commit `{results['commit']}`" if results.get("commit") else ""
    out = [
        "# Benchmark results",
        "",
        "Generated by `python -m bench` from the run's JSON: every figure here was "
        "measured by this run. Figures measured apart from it, and the changes made for "
        "speed, are in [NOTES.md](NOTES.md), each with the commit that measured it.",
        "",
        f"Run {results['started']}{commit} with `{results['command']}` (from the "
        "repository root; `make bench` runs the same).",
        "",
        f"Machine: `nproc` = {m['nproc']}, CPU: {m['cpu']}, Python {m['python']}. Load average "
        f"before the run {m['load'][0]:.2f}, after {m['load_after'][0]:.2f}: other jobs "
        "may share these cores, so absolute figures may be disturbed; the ratios come "
        "from one run.",
        "",
        f"ResNet-18 (random weights, `demo.zoo.export_resnet18`), 224x224 input, inference "
        f"batch {results['batch_size']} (spark.mxsql.batchSize) in every path.",
        "",
        markdown_table(rows),
        "![images per second](results.png)",
        "",
        *_reading(results),
        *_failed_section(results),
        "## Targets",
        "",
        *_targets(results),
        "",
        *_head_to_head(results),
        *_quantization(results),
        *_time_split(results),
        *_cold_start(results),
        *(startup.report_lines(results["startup"]) if results.get("startup") else []),
        *(python313.report_lines(results["python313"]) if results.get("python313") else []),
        *_memory(results),
        *_prefetch(results),
        *_sweep(results),
        "## How it is measured",
        "",
        *METHOD,
        "",
    ]
    return "\n".join(out)


METHOD = [
    "- CPU ms / img: CPU time of every process of the path (driver JVM and Python "
    "workers; for (1) the MXNet processes) while it was timed, per image. Other jobs on "
    "the machine change img/s a lot and CPU time little, so `x (1) by CPU` (CPU ms of (1) "
    "over CPU ms of the path) is the steadier ratio; it is what img/s would give on "
    "otherwise idle cores with no core left idle.",
    "- Every Spark path runs in a fresh driver process (its own JVM and Python workers), "
    "`local[*]` with the settings of the shipped `spark-defaults.conf` through "
    "`mxsql.registry.session.build_session`. Each first runs its warm-up passes over "
    "a small warm-up folder (workers start, the model loads, the JVM compiles its hot "
    "paths), then is timed over the whole workload; cold costs are reported apart "
    "(LIMIT 10 above).",
    "- (1) binds the same checkpoint with MXNet and runs forward on one ready float32 "
    "tensor, with OMP_NUM_THREADS set explicitly; every way to fill the machine is "
    "tried (1 process x all threads, one single-threaded process per core, side by "
    "side) and the best is (1). (1c) decodes the photos with mxsql's own `load_pixels` "
    "in a background thread while the network runs, in one process on all cores.",
    "- (2) is `CREATE TABLE ... USING parquet AS SELECT path, mx_classify(content, "
    "'resnet18') FROM images` over a `binaryFile` view. (3) is "
    "`pyspark.ml.functions.predict_batch_udf` and (5) a plain `udf`, both written to a "
    "Parquet table. (4) is the classic recipe as the AWS blog published it "
    "(bench/classic.py), on local files instead of S3: the file list padded with repeated "
    "files to whole batches, one partition a batch, files read one after another, each "
    "image decoded at full size and resized with Lanczos (Pillow's old ANTIALIAS), a "
    "singleton `mx.mod.Module`, the top 5 classes as strings, collected to the driver. "
    "(4s) is the classic recipe's shape with mxsql's parts: a `parallelize`d list of file "
    "paths (as many partitions as (2)'s scan) and `mapPartitions` with a singleton model "
    "that reads, decodes and runs fixed batches one after another (the last padded with "
    "blank images), collected to the driver; it measures the orchestration alone. (3), "
    "(4s) and (5) use the same decode (`load_pixels`) and the same network code "
    "(`LoadedModel`) as (2).",
    "- Head to head: (2), (3) and (4s) once more, in one fresh driver, over the first "
    "images of each workload (its table gives how many). Their warm-up passes "
    "are interleaved, then each round times the three in turn, in reverse order every "
    "other round. Against (3) and (4s) the targets take the median of the rounds' ratios "
    "and give the ratio of the separate drivers beside it: one fresh driver against "
    "another, minutes apart, differs by more than these paths do.",
    "- (1o) and (2o) are (1) and (2) with `spark.mxsql.model.resnet18.engine=onnxruntime`: "
    "the same checkpoint converted once with `mxnet.onnx` into the run's cache directory "
    "and run by ONNX Runtime on CPU, with OMP_NUM_THREADS intra-op threads; (1o) runs at "
    "the process and thread setting that (1) found best.",
    "- (1q), (2q) and (3q) are (1), (2) and (3) with `spark.mxsql.model.resnet18.precision="
    "int8`: the same checkpoint quantized once by mxsql's INT8 engine (oneDNN, naive "
    "calibration on the first 64 of the workload's warm-up images, channel-wise weights) "
    "into the run's cache directory, which is emptied first so that the quantization is "
    "timed uncached; (1q) runs at the process and thread setting that (1) found best, "
    "and (3) is given the same INT8 network through mxsql's `LoadedModel`.",
    "- Model loads are counted from the workers' `loaded model` log lines; peak RSS is "
    "sampled several times a second with psutil from a thread of the driver, over the Python "
    "worker processes (`pyspark.daemon` and its forks).",
    "- A measurement that crashed or printed no result is reported as failed, with the "
    "last lines of its stderr (the whole of it is in the run's work folder, `logs/`).",
]
