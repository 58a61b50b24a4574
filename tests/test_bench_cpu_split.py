"""``python -m bench.cpu_split`` names each thread's part and splits CPU by statement."""

import os
import subprocess
import sys
import time

import pytest

from bench.cpu_split import _sample, part_of, statement_parts

_JAVA = "/usr/lib/jvm/java-17-openjdk-amd64/bin/java -cp x org.apache.spark.deploy.SparkSubmit " \
        "--conf spark.python.daemon.module=mxsql.udfs.daemon"


def test_each_thread_gets_its_part():
    assert part_of(_JAVA, "C2 CompilerThre") == "jit"
    assert part_of(_JAVA, "Thread-7") == "driver"
    assert part_of(_JAVA, "Executor task launch worker for task 0.0 in stage 1.0") == "tasks"
    assert part_of(_JAVA, "GC Thread#0") == "jvm other"
    assert part_of("/venv/bin/python3 -m mxsql.udfs.daemon", "python3") == "python workers"
    assert part_of("/venv/bin/python -m pyspark.daemon", "python") == "python workers"
    assert part_of("/venv/bin/python /venv/bin/mxsql -f job.sql", "python") == "shell"
    # Spark's launcher script carries the daemon setting among its arguments.
    assert part_of("bash /spark/bin/spark-submit --conf spark.python.daemon.module="
                   "mxsql.udfs.daemon", "bash") == "shell"


def test_a_statement_gets_the_cpu_used_between_its_start_and_end():
    samples = [
        (0.0, {(1, 1): ("jit", 1.0)}),
        (1.0, {(1, 1): ("jit", 1.5), (2, 2): ("python workers", 0.2)}),
        (2.0, {(1, 1): ("jit", 1.6), (2, 2): ("python workers", 1.2), (2, 3): ("tasks", 0.3)}),
    ]
    parts = statement_parts(samples, 1.1, 2.5)  # the samples at 1.0 and at 2.0
    assert parts["jit"] == pytest.approx(0.1)
    assert parts["python workers"] == pytest.approx(1.0)
    assert parts["tasks"] == pytest.approx(0.3)  # a thread born during the statement
    assert statement_parts(samples, -1.0, 0.5)["jit"] == pytest.approx(1.0)


def test_an_exiting_worker_keeps_its_part():
    # A worker a LIMIT stopped shows an empty command line while it exits.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1)",
                              "-m", "pyspark.daemon"])
    commands = {}
    try:
        running = _sample(os.getpid(), commands)
        assert {part for (pid, _), (part, _) in running.items() if pid == child.pid} == \
            {"python workers"}
        deadline = time.monotonic() + 60
        while _state(child.pid) != "Z":  # exited, not reaped yet
            assert time.monotonic() < deadline
            time.sleep(0.05)
        exiting = _sample(os.getpid(), commands)
        assert {part for (pid, _), (part, _) in exiting.items() if pid == child.pid} == \
            {"python workers"}
    finally:
        child.wait()


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]
