"""The start-up benchmark's figures and report rows come from its JSON alone.

A start-up run takes minutes of fresh JVMs; these tests render its report from a small
synthetic JSON of the shape ``python -m bench.startup`` writes (no Spark, no MXNet).
"""

import copy

import pytest

from bench import report, startup
from tests.test_bench_report import results  # noqa: F401 - the benchmark's JSON fixture


def _ctas(first: float, repeat: float, limit: float, again: float, wall: float,
          python: float = 0.0) -> dict:
    """A CTAS process's figures; its statements' CPU is twice their seconds, all JIT but
    ``python`` CPU seconds of Python workers in the first."""
    cpu = {s: {"jit": 2 * v} for s, v in (("first", first), ("repeat", repeat),
                                         ("limit", limit), ("limit_again", again))}
    cpu["first"] = {"jit": 2 * first - python, "python workers": python}
    return {"first": first, "repeat": repeat, "limit": limit, "limit_again": again,
            "wall": wall, "cpu": cpu}


@pytest.fixture
def run() -> dict:
    rounds = [{"mxsql": {"wall": 7.0 + i, "statements": [1.1]},
               "mxsql_no_archive": {"wall": 11.0, "statements": [1.4]},
               "spark_sql": {"wall": 13.0, "statements": [3.0]}} for i in range(3)]
    ctas = [{"plain": _ctas(5.0, 0.6, 0.3, 0.3, 9.0),
             "mx": _ctas(17.2, 12.4, 0.2, 0.9, 35.0, python=0.5)}]
    parts = {"imports": 1.2, "fork": 0.004, "load": 0.15, "batch_first": 0.5,
             "batch_again": 0.3, "short_first": 0.09, "short_again": 0.04}
    return {
        "load": [1.5, 1.0, 1.0], "load_after": [2.5, 1.0, 1.0], "images": 1280, "rounds": 3,
        "ctas_rounds": 1, "archive": "/cache/jvm/driver-abc.jsa",
        "select1": {"runs": rounds, **startup._select_one_summary(rounds)},
        "ctas": {"runs": ctas, "median": {k: v for k, v in ctas[0].items()},
                 "one_time": startup.one_time_cost(ctas[0]["plain"], ctas[0]["mx"]),
                 "one_time_cpu": startup.one_time_cpu(ctas),
                 "limit_again": 0.7},
        "parts": {"runs": [dict(parts)], "median": parts, "batch_size": 32, "short_batch": 4,
                  "preloaded": ["numpy", "mxnet"]},
    }


def test_time_taken_reads_each_statement_in_order():
    stderr = ("WARN something\nTime taken: 4.913 seconds\nSpark master: local[*]\n"
              "Time taken: 0.61 seconds, Fetched 10 row(s)\n")
    assert startup.time_taken(stderr) == [4.913, 0.61]


def test_one_time_cost_is_mx_first_over_repeat_beyond_plain():
    plain = _ctas(5.0, 0.6, 0, 0, 0)
    mx = _ctas(17.2, 12.4, 0, 0, 0)
    assert startup.one_time_cost(plain, mx) == pytest.approx(4.8 - 4.4)


def test_one_time_cpu_is_the_same_difference_over_cpu_seconds_by_part():
    rounds = [{"plain": _ctas(5.0, 0.6, 0, 0, 0), "mx": _ctas(17.2, 12.4, 0, 0, 0, python=p)}
              for p in (0.5, 0.7, 3.0)]
    work = startup.one_time_cpu(rounds)
    assert work["total"] == pytest.approx(2 * (4.8 - 4.4))
    assert work["python workers"] == pytest.approx(0.7)  # the median round
    assert work["jit"] == pytest.approx(2 * (4.8 - 4.4) - 0.7)
    assert work["tasks"] == 0


def test_select_one_ratio_is_the_median_of_the_rounds_ratios(run):
    summary = run["select1"]
    assert summary["ratio"] == pytest.approx(8.0 / 13.0)
    assert summary["median"]["mxsql"] == 8.0
    assert summary["ratio_no_archive"] == pytest.approx(11.0 / 13.0)


def test_a_failed_round_is_left_out_of_the_medians_and_reported(run):
    rounds = copy.deepcopy(run["select1"]["runs"])
    rounds[0]["spark_sql"] = {"error": "exit code 1", "log": "/logs/s.log"}
    run["select1"] = {"runs": rounds, **startup._select_one_summary(rounds)}
    assert run["select1"]["median"]["mxsql"] == 8.5
    text = "\n".join(startup.report_lines(run))
    assert "SELECT 1 round 1, spark_sql: exit code 1 (`/logs/s.log`)" in text


def test_report_rows_follow_the_json(run):
    text = "\n".join(startup.report_lines(run))
    assert '| `mxsql -e "SELECT 1"` | 8.00 |' in text
    assert '| `bin/spark-sql -e "SELECT 1"` | 13.00 |' in text
    assert "0.62x" in text and "Target <= 0.6x: **not met**" in text
    assert "| `mx_classify` | 17.20 | 12.40 | 0.20 | 0.90 | 35.00 |" in text
    assert "0.40 s" in text and "Target <= 1.0 s: met" in text
    assert "| model load | 0.15 |" in text
    assert "| first short batch (shape 4) | 0.09 |" in text
    assert "0.80 CPU s, of which jit 0.30, driver 0.00" in text
    assert "python workers 0.50" in text
    run["ctas"]["one_time"] = 1.3
    assert "Target <= 1.0 s: **not met**" in "\n".join(startup.report_lines(run))


def test_an_earlier_run_is_shown_beside_this_one(run):
    run["before"] = copy.deepcopy(run)
    run["before"]["select1"]["ratio"] = 0.67
    run["before"]["parts"]["median"]["load"] = 0.4
    text = "\n".join(startup.report_lines(run))
    assert "(before: 0.67x)" in text
    assert "| model load | 0.15 | 0.40 |" in text


def test_the_benchmark_report_shows_the_start_up_when_its_json_has_it(results, run):  # noqa: F811
    assert "## Start-up" not in report.results_markdown(results)
    results["startup"] = run
    assert "## Start-up: a one-shot `mxsql` (issue 17)" in report.results_markdown(results)
