"""Where one ``mxsql -f`` run's CPU goes, statement by statement (issue 17):
``python -m bench.cpu_split SCRIPT [MXSQL-ARGS...]``.

The run's process tree is sampled from ``/proc`` every 0.2 s: each JVM thread by its
name (the JIT compilers, the driver threads that plan and run a statement, the executor
task threads, the rest of the JVM) and the other processes (the worker daemon and its
workers; the shell and Spark's launcher scripts). A statement's CPU is what the tree used
between its start (its end less the shell's ``Time taken``) and its end. On a machine
whose cores are all busy, wall seconds follow CPU seconds: this says which part of a first
statement's extra time is whose. Linux only; the figures are as coarse as the sampling
(0.2 s) and the kernel's clock ticks. ``bench.startup`` samples its CTAS runs with it.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from typing import Dict, List, Tuple

__all__ = ["PARTS", "part_of", "sampled_run", "statement_parts", "main"]

_TICKS = os.sysconf("SC_CLK_TCK")
_PERIOD_S = 0.2
_TIME_TAKEN = re.compile(r"^Time taken: ([0-9.]+) seconds")
# The parts, in the order the report shows them.
PARTS = ("jit", "driver", "tasks", "jvm other", "python workers", "shell")

Sample = Tuple[float, Dict[Tuple[int, int], Tuple[str, float]]]


def part_of(command: str, thread: str) -> str:
    """The part a thread belongs to, from its process's command line and its name."""
    if os.path.basename(command.split(" ", 1)[0]) == "java":
        if "CompilerThre" in thread:
            return "jit"
        if re.fullmatch(r"Thread-\d+", thread):  # Py4J's: they plan and run statements
            return "driver"
        if thread.startswith("Executor task"):
            return "tasks"
        return "jvm other"
    program, _, rest = command.partition(" ")
    if os.path.basename(program).startswith("python") and re.search(
            r"-m (mxsql\.udfs|pyspark)\.daemon\b", rest):
        return "python workers"  # the daemon's forks keep its command line
    return "shell"  # mxsql's Python process and Spark's launcher scripts


def _tree(root: int) -> List[int]:
    children = defaultdict(list)
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            children[int(stat[stat.rindex(")") + 2:].split()[1])].append(int(name))
    found, i = [root], 0
    while i < len(found):
        found += children.get(found[i], [])
        i += 1
    return found


def _sample(root: int, commands: Dict[int, str]) -> Dict[Tuple[int, int], Tuple[str, float]]:
    """CPU seconds so far of every thread in ``root``'s tree, with its part.

    ``commands`` keeps each process's command line from sample to sample: an exiting
    process (a worker a LIMIT stopped) shows an empty one.
    """
    out = {}
    for pid in _tree(root):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        command = commands[pid] = command or commands.get(pid, "")
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            thread = stat[stat.index("(") + 1:stat.rindex(")")]
            out[(pid, int(tid))] = (part_of(command, thread),
                                    (int(fields[11]) + int(fields[12])) / _TICKS)
    return out


def statement_parts(samples: List[Sample], start: float, end: float) -> Counter:
    """CPU seconds of each part between the last samples taken by ``start`` and ``end``."""
    def at(moment):
        taken = [snap for when, snap in samples if when <= moment]
        return taken[-1] if taken else {}

    before, after = at(start), at(end)
    parts = Counter()
    for key, (part, seconds) in after.items():
        parts[part] += seconds - before.get(key, (part, 0.0))[1]
    return parts


def sampled_run(command: List[str], *, cwd: str,
                env: Dict[str, str]) -> Tuple[int, str, List[Tuple[float, Counter]]]:
    """Run ``command`` (an ``mxsql`` run) with its process tree sampled: its exit code,
    its stderr, and each statement's seconds (the shell's ``Time taken``) and CPU
    seconds by part."""
    run = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples: List[Sample] = []
    done = threading.Event()

    def sample():
        commands: Dict[int, str] = {}
        while not done.is_set():
            samples.append((time.monotonic(), _sample(run.pid, commands)))
            done.wait(_PERIOD_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stderr, ends = [], []
    for line in run.stderr:
        stderr.append(line)
        match = _TIME_TAKEN.match(line)
        if match:
            ends.append((time.monotonic(), float(match.group(1))))
    run.wait()
    done.set()
    sampler.join()
    statements = [(seconds, statement_parts(samples, end - seconds, end))
                  for end, seconds in ends]
    return run.returncode, "".join(stderr), statements


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_split", description=__doc__)
    parser.add_argument("script", help="the SQL file mxsql runs (-f)")
    parser.add_argument("mxsql_args", nargs=argparse.REMAINDER,
                        help="arguments before -f, such as --conf KEY=VALUE")
    args = parser.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if k != "SPARK_CONF_DIR"}
    mxsql = os.path.join(os.path.dirname(sys.executable), "mxsql")
    with tempfile.TemporaryDirectory(prefix="cpu-split-", ignore_cleanup_errors=True) as scratch:
        env.update(MXSQL_HOME=os.path.join(scratch, "home"))  # a fresh catalog
        code, stderr, statements = sampled_run(
            [mxsql, *args.mxsql_args, "-f", os.path.abspath(args.script)], cwd=scratch,
            env=env)
    if code != 0:
        sys.stderr.write(stderr)
        return code
    print("| statement | wall s | CPU s | " + " | ".join(PARTS) + " |")
    print("|---" * (3 + len(PARTS)) + "|")
    for number, (seconds, parts) in enumerate(statements, 1):
        print(f"| {number} | {seconds:.2f} | {sum(parts.values()):.2f} | "
              + " | ".join(f"{parts[p]:.2f}" for p in PARTS) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
