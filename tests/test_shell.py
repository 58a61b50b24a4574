"""The ``mxsql`` shell behaves like Spark's spark-sql, with the mx functions in its session.

Three layers: the command line and statement splitting as plain functions; the
``Shell`` on the tests' shared session (fast); and the real console script as a
subprocess (slow to start: each run is grouped in a module fixture that several tests
read).
"""

import io
import os
import re
import subprocess
import zipfile

import pytest
from PIL import Image

from demo import digits as digits_demo
from mxsql.registry import register_all
from mxsql.registry.shell import (
    EXIT_FAILURE,
    EXIT_MISSING_FILE,
    Shell,
    mx_function_guess,
    parse_args,
    session_conf,
    worker_error,
)
from mxsql.registry.statements import script_text, split_statements
from mxsql.udfs.errors import ConfigError
from tests import shellkit

TIME_TAKEN = r"Time taken: \d+\.\d+ seconds"


def _png_hex() -> str:
    buffer = io.BytesIO()
    Image.new("L", (8, 8), 128).save(buffer, "PNG")
    return buffer.getvalue().hex()


# -- statements --------------------------------------------------------------------------


def test_statements_split_on_semicolons():
    assert split_statements("SELECT 1; SELECT 2;\n") == ["SELECT 1", " SELECT 2"]


def test_semicolons_in_quotes_do_not_split():
    text = "SELECT ';' AS a, \";\" AS b; SELECT 2"
    assert split_statements(text) == ["SELECT ';' AS a, \";\" AS b", " SELECT 2"]


def test_semicolons_in_comments_do_not_split():
    text = "SELECT 1 -- one; two\n; /* a ; /* nested ; */ */ SELECT 2"
    assert [s.strip() for s in split_statements(text)] == [
        "SELECT 1 -- one; two", "/* a ; /* nested ; */ */ SELECT 2",
    ]


def test_a_piece_that_is_only_a_comment_is_dropped():
    assert split_statements("SELECT 1; -- the end\n") == ["SELECT 1"]


def test_backslash_semicolon_does_not_split():
    assert split_statements("SELECT 'a' \\; SELECT 2") == ["SELECT 'a' ; SELECT 2"]


def test_script_lines_starting_with_two_dashes_are_dropped():
    assert script_text(["-- a comment; with a semicolon\n", "SELECT 1;\n", "  -- kept\n"]) \
        == "SELECT 1;\n  -- kept\n"


def test_worker_error_is_the_mxsql_error_line():
    text = (
        "[PYTHON_EXCEPTION] An exception was thrown from the Python worker: Traceback (most "
        "recent call last):\n  File \"/x/models.py\", line 1, in _load\n"
        "mxsql.udfs.errors.ModelLoadError: spark.mxsql.model.default.uri: file not found: "
        "/m-symbol.json\n SQLSTATE: 38000"
    )
    assert worker_error(text) == (
        "ModelLoadError: spark.mxsql.model.default.uri: file not found: /m-symbol.json"
    )


def test_other_errors_are_not_worker_errors():
    assert worker_error("[UNRESOLVED_ROUTINE] Cannot resolve routine `nosuch`") is None


# -- command line ------------------------------------------------------------------------


def test_submit_options_become_spark_settings():
    args = parse_args(["--jars", "a.jar,b.jar", "--packages", "org.x:y:1.0",
                       "--driver-memory", "3g", "--executor-memory", "5g"])
    assert session_conf(args) == {
        "spark.jars": "a.jar,b.jar",
        "spark.jars.packages": "org.x:y:1.0",
        "spark.driver.memory": "3g",
        "spark.executor.memory": "5g",
    }


def test_submit_options_override_conf_as_in_spark_submit():
    args = parse_args(["--conf", "spark.driver.memory=1g", "--driver-memory", "2g"])
    assert session_conf(args)["spark.driver.memory"] == "2g"


def test_conf_and_its_short_form_both_set():
    args = parse_args(["--conf", "spark.a=1", "-c", "spark.b=x=y"])
    assert session_conf(args) == {"spark.a": "1", "spark.b": "x=y"}


def test_hiveconf_reaches_hive_through_spark_hadoop():
    args = parse_args(["--hiveconf", "javax.jdo.option.ConnectionURL=jdbc:x",
                       "--conf", "spark.hadoop.k=from-conf", "--hiveconf", "k=from-hiveconf"])
    conf = session_conf(args)
    assert conf["spark.hadoop.javax.jdo.option.ConnectionURL"] == "jdbc:x"
    assert conf["spark.hadoop.k"] == "from-conf"


def test_master_and_name_are_options_not_settings():
    args = parse_args(["--master", "yarn", "--name", "nightly"])
    assert (args.master, args.name) == ("yarn", "nightly")
    assert session_conf(args) == {}


def test_hivevar_define_and_d_all_define_variables():
    args = parse_args(["--hivevar", "a=1", "--define", "b=2", "-d", "c=3"])
    assert args.hivevar == ["a=1", "b=2", "c=3"]


def test_e_and_f_cannot_be_combined():
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["-e", "SELECT 1", "-f", "x.sql"])
    assert exit_info.value.code == 2


def test_a_setting_without_equals_is_an_error_naming_the_option():
    with pytest.raises(ConfigError, match="--conf expects KEY=VALUE, got 'spark.a'"):
        session_conf(parse_args(["--conf", "spark.a"]))


def test_help_lists_the_options_without_starting_spark(tmp_path):
    run = subprocess.run([shellkit.MXSQL, "-h"], capture_output=True, text=True,
                         env=shellkit.mxsql_env(str(tmp_path)), timeout=60)
    assert run.returncode == 0
    for option in ("-e SQL", "-f FILE", "-i FILE", "--database", "--hiveconf", "--hivevar",
                   "--define", "--conf", "--master", "--jars", "--packages",
                   "--driver-memory", "--executor-memory", "--properties-file", "-S", "-v"):
        assert option in run.stdout
    assert not os.path.exists(tmp_path / "metastore_db")


def test_missing_script_exits_3_like_spark_sql(tmp_path):
    run = shellkit.run_mxsql(["-f", str(tmp_path / "nope.sql")], home=str(tmp_path))
    assert run.returncode == EXIT_MISSING_FILE
    assert f"Could not open input file for reading. (File {tmp_path / 'nope.sql'} does not " \
           "exist)" in run.stderr


def test_missing_properties_file_is_one_line_not_a_traceback(tmp_path):
    run = shellkit.run_mxsql(["--properties-file", str(tmp_path / "nope.conf"), "-e", "SELECT 1"],
                             home=str(tmp_path))
    assert run.returncode == 1
    assert f"mxsql: cannot read {tmp_path / 'nope.conf'}: No such file or directory" in run.stderr
    assert "Traceback" not in run.stderr


# -- the Shell on the shared session ---------------------------------------------------


@pytest.fixture
def shell(spark):
    """A Shell on the shared session; the settings its statements change are undone."""
    before = dict(spark.conf.getAll)
    sh = Shell(spark, out=io.StringIO(), err=io.StringIO())
    yield sh
    sh.close()
    restored = ("spark.mxsql.", "hive.cli.", "spark.sql.cli.")
    for key, value in spark.conf.getAll.items():
        if key.startswith(restored) and before.get(key) != value:
            if key in before:
                spark.conf.set(key, before[key])
            else:
                spark.conf.unset(key)
    register_all(spark)


def test_rows_are_tab_separated_with_the_header_when_asked(shell):
    status = shell.run_text("SET spark.sql.cli.print.header=true; SELECT 1 AS a, NULL AS b")
    assert status == 0
    assert shell.out.getvalue() == (
        "key\tvalue\nspark.sql.cli.print.header\ttrue\na\tb\n1\tNULL\n"
    )


def test_time_taken_counts_fetched_rows(shell):
    shell.run_text("SELECT id FROM range(3); SELECT id FROM range(0)")
    assert re.fullmatch(
        rf"{TIME_TAKEN}, Fetched 3 row\(s\)\n{TIME_TAKEN}\n", shell.err.getvalue()
    )


def test_failing_statement_prints_sparks_message_and_stops(shell):
    status = shell.run_text("SELECT 1; SELECT nosuch(1); SELECT 2")
    assert status == EXIT_FAILURE
    assert shell.out.getvalue() == "1\n"
    assert "[UNRESOLVED_ROUTINE] Cannot resolve routine `nosuch`" in shell.err.getvalue()
    assert "Traceback" not in shell.err.getvalue()


def test_errors_ignore_runs_the_statements_after_a_failure(spark):
    shell = Shell(spark, out=io.StringIO(), err=io.StringIO(),
                  hive_conf={"hive.cli.errors.ignore": "true"})  # --hiveconf, as spark-sql
    try:
        status = shell.run_text("SELECT nosuch(1); SELECT 2")
    finally:
        shell.close()
    assert status == 0
    assert shell.out.getvalue() == "2\n"


def test_wrong_arguments_are_one_line_naming_the_call_form(shell, digits_table):
    assert shell.run_statement("SELECT mx_top_k(content) FROM digits") == EXIT_FAILURE
    error = shell.err.getvalue()
    assert error.count("\n") == 1, error
    assert "mx_top_k takes 2 to 4 arguments, got 1; call it as " \
           "mx_top_k(content BINARY, k INT [, model STRING [, path STRING]])" in error


def test_a_misspelt_mx_function_gets_a_suggestion(shell, digits_table):
    assert shell.run_text("SELECT mx_clasify(content) FROM digits") == EXIT_FAILURE
    first = shell.err.getvalue().splitlines()[0]
    assert first.startswith("[UNRESOLVED_ROUTINE] Cannot resolve routine `mx_clasify`")
    assert first.endswith("; did you mean mx_classify?")


def test_only_names_close_to_an_mx_function_get_a_suggestion():
    assert mx_function_guess("`spark_catalog`.`default`.`mx_image_inf`") == "mx_image_info"
    assert mx_function_guess("`mx_topk`") == "mx_top_k"
    assert mx_function_guess("`nosuch`") is None
    assert mx_function_guess("`upper`") is None


def test_set_of_a_bad_mxsql_value_is_rejected_and_undone(shell, spark):
    before = spark.conf.get("spark.mxsql.batchSize", None)
    status = shell.run_statement("SET spark.mxsql.batchSize=0")
    assert status == EXIT_FAILURE
    assert "ConfigError: spark.mxsql.batchSize='0': must be a positive integer" \
        in shell.err.getvalue()
    assert spark.conf.get("spark.mxsql.batchSize", None) == before


def test_set_of_an_unknown_mxsql_key_suggests_the_known_one(shell, spark):
    assert shell.run_statement("SET spark.mxsql.batchsize=8") == EXIT_FAILURE
    assert "did you mean 'spark.mxsql.batchSize'?" in shell.err.getvalue()
    assert spark.conf.get("spark.mxsql.batchsize", None) is None


def test_set_of_a_new_model_takes_effect_from_the_next_statement(shell, digits, digits_table):
    conf = digits_demo.model_conf(digits[0], name="digits2")
    sets = "".join(f"SET {key}={value};\n" for key, value in conf.items())
    status = shell.run_text(
        sets + "SELECT mx_classify(content, 'digits2').label FROM digits ORDER BY path LIMIT 1"
    )
    assert status == 0, shell.err.getvalue()
    assert shell.out.getvalue().splitlines()[-1] in digits_demo.NAMES


def test_error_raised_in_a_worker_is_one_line_without_traceback(shell, digits, digits_table):
    broken = os.path.join(os.path.dirname(digits[0]), "broken")  # under allowedUris' default
    status = shell.run_text(
        f"SET spark.mxsql.model.broken.uri={broken};"
        "SELECT mx_classify(content, 'broken') FROM digits LIMIT 1"
    )
    assert status == EXIT_FAILURE
    assert ("ModelLoadError: spark.mxsql.model.broken.uri: file not found: "
            f"{broken}-symbol.json\n") in shell.err.getvalue()
    assert "Traceback" not in shell.err.getvalue()


def test_verbose_echoes_statements_and_shows_the_trace(spark, shell, digits, digits_table):
    verbose = Shell(spark, out=io.StringIO(), err=io.StringIO(), verbose=True)
    try:
        broken = os.path.join(os.path.dirname(digits[0]), "broken")
        shell.run_statement(f"SET spark.mxsql.model.broken.uri={broken}")
        query = "SELECT mx_classify(content, 'broken') FROM digits LIMIT 1"
        assert verbose.run_statement(query) == EXIT_FAILURE
    finally:
        verbose.close()
    assert verbose.out.getvalue() == query + "\n"
    assert "Traceback (most recent call last)" in verbose.err.getvalue()
    assert "ModelLoadError: spark.mxsql.model.broken.uri" in verbose.err.getvalue()


# -- the console script: -e with variables, -i, and a failure -------------------------


@pytest.fixture(scope="module")
def e_run(tmp_path_factory):
    """``mxsql -i init.sql -e "..."`` with variables, a header, and a failing statement."""
    home = tmp_path_factory.mktemp("e-run")
    init = home / "init.sql"
    init.write_text("-- runs first\nCREATE TEMPORARY VIEW init_view AS SELECT 'from init' AS v;\n")
    return shellkit.run_mxsql([
        "--hivevar", "x=5", "--define", "y=hi", "-d", "z=zed",
        "--hiveconf", "hive.cli.print.header=true", "-i", str(init),
        "-e", "SELECT ${x} AS x, '${hivevar:y}' AS y, '${z}' AS z; SELECT v FROM init_view;"
              "SELECT nosuch(1); SELECT 'not reached' AS r",
    ], home=str(home))


def test_variables_init_file_and_header_give_spark_sql_output(e_run):
    assert e_run.stdout == "Response code\nx\ty\tz\n5\thi\tzed\nv\nfrom init\n"


def test_a_failing_statement_exits_1_with_sparks_message(e_run):
    assert e_run.returncode == EXIT_FAILURE
    assert "[UNRESOLVED_ROUTINE] Cannot resolve routine `nosuch`" in e_run.stderr
    assert "not reached" not in e_run.stdout


def test_stderr_has_master_line_and_time_taken_per_statement(e_run):
    assert re.search(r"^Spark master: local\[\*\], Application Id: local-\d+$", e_run.stderr,
                     re.MULTILINE)
    assert len(re.findall(rf"^{TIME_TAKEN}", e_run.stderr, re.MULTILINE)) == 3


def test_no_python_traceback_on_stderr(e_run):
    assert "Traceback" not in e_run.stderr
    assert "SQLQueryContextLogger" not in e_run.stderr


# -- the console script: options, piped statements, a worker error, quit -------------


@pytest.fixture(scope="module")
def piped_run(tmp_path_factory):
    """Statements piped to ``mxsql -S`` with spark-submit's options and a broken model."""
    home = tmp_path_factory.mktemp("piped-run")
    jar = home / "extra.jar"
    with zipfile.ZipFile(jar, "w") as archive:
        archive.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
    properties = home / "mxsql.conf"
    properties.write_text(
        "spark.sql.shuffle.partitions   7\n"
        "spark.mxsql.model.default.uri  /nonexistent/model\n"
    )
    statements = "".join(f"SET {key};\n" for key in (
        "spark.jars", "spark.driver.memory", "spark.executor.memory", "spark.app.name",
        "spark.master", "spark.sql.shuffle.partitions", "spark.sql.files.openCostInBytes",
        "spark.mxsql.batchSize",
    ))
    statements += f"SELECT mx_classify(X'{_png_hex()}');\nquit;\nSELECT 'not reached';\n"
    run = shellkit.run_mxsql([
        "-S", "--master", "local[1]", "--name", "mxsql-options", "--jars", str(jar),
        "--driver-memory", "1100m", "--executor-memory", "1200m",
        "--properties-file", str(properties), "-c", "spark.mxsql.batchSize=5",
        "--hiveconf", "hive.cli.errors.ignore=true",
    ], home=str(home), stdin=statements)
    settings = dict(line.split("\t", 1) for line in run.stdout.splitlines() if "\t" in line)
    return run, settings, jar


def test_spark_submit_options_arrive_in_the_session(piped_run):
    _, settings, jar = piped_run
    assert settings["spark.jars"].endswith(str(jar))
    assert settings["spark.driver.memory"] == "1100m"
    assert settings["spark.executor.memory"] == "1200m"
    assert settings["spark.app.name"] == "mxsql-options"
    assert settings["spark.master"] == "local[1]"
    assert settings["spark.mxsql.batchSize"] == "5"


def test_properties_file_replaces_mxsqls_defaults(piped_run):
    _, settings, _ = piped_run
    assert settings["spark.sql.shuffle.partitions"] == "7"
    assert settings["spark.sql.files.openCostInBytes"] == "4194304b"  # Spark's own default


def test_worker_error_is_one_line_and_task_logs_are_quiet(piped_run):
    run, _, _ = piped_run
    assert ("ModelLoadError: spark.mxsql.model.default.uri: file not found: "
            "/nonexistent/model-symbol.json\n") in run.stderr
    assert "Traceback" not in run.stderr


def test_quit_ends_the_run_with_success(piped_run):
    run, _, _ = piped_run
    assert run.returncode == 0
    assert "not reached" not in run.stdout


def test_silent_run_has_no_master_line_and_no_progress_bar(piped_run):
    run, _, _ = piped_run
    assert "Spark master:" not in run.stderr
    assert "[Stage" not in run.stderr


# -- the console script on a terminal (slow: one run of about 40 s) -----------------------

LONG_QUERY = "SELECT sum(hash(id)) FROM range(0, 100000000000, 1, 2);\n"  # minutes of work
# The line before "Time taken": a one-row result, after any progress bar the terminal showed
# and cleared (the transcript keeps the bars and the clearing spaces, without the \r).
RESULT_LINE = r"(?:\[Stage \d+:[^\]\n]*\]| )*([^\n]*)\nTime taken"


@pytest.fixture(scope="module")
def terminal(tmp_path_factory):
    """An interactive session: a multi-line statement, Ctrl-C on a long query, Ctrl-D."""
    home = tmp_path_factory.mktemp("terminal")
    term = shellkit.Terminal([], home=str(home))
    steps = {}
    try:
        term.expect(r"mxsql \(default\)> ")
        term.send("SELECT\n")
        term.expect(r"\n {15}> ")  # the continuation prompt, as wide as the prompt
        term.send("6 * 7 AS answer;\n")
        steps["answer"] = term.expect(RESULT_LINE).group(1)
        term.expect(r"mxsql \(default\)> ")
        term.send(LONG_QUERY)
        steps["progress"] = term.expect(r"\[Stage \d+:[^\]\n]*\]").group(0)
        term.interrupt()
        term.expect(r"Interrupting\.\.\.")
        term.expect(r"mxsql \(default\)> ", timeout=120)
        steps["alive"] = term.process.poll() is None
        term.send("SELECT 'still here';\n")
        steps["after"] = term.expect(RESULT_LINE).group(1)
        term.expect(r"mxsql \(default\)> ")
        term.send("\x04")
        steps["exit"] = term.close()
    except BaseException:
        term.close(timeout=0)
        raise
    steps["history"] = (home / ".mxsql_history").read_text()
    return steps


@pytest.mark.slow
def test_terminal_prompts_and_reads_multi_line_statements(terminal):
    assert terminal["answer"] == "42"


@pytest.mark.slow
def test_terminal_shows_the_progress_bar(terminal):
    # The long query's one stage: its bar, then (done + running) / all of its 2 tasks.
    assert re.fullmatch(r"\[Stage \d+:[=> ]*\(\d+ \+ \d+\) / 2\]", terminal["progress"]), \
        terminal["progress"]


@pytest.mark.slow
def test_ctrl_c_cancels_the_query_not_the_shell(terminal):
    assert terminal["alive"]
    assert terminal["after"] == "still here"


@pytest.mark.slow
def test_ctrl_d_leaves_with_success_and_keeps_history(terminal):
    assert terminal["exit"] == 0
    assert "6 * 7 AS answer;" in terminal["history"]


# -- stdout identical to Spark's own bin/spark-sql ---------------------------------------

# Queries without an mx function: NULLs, doubles, decimals, dates, timestamps, intervals,
# arrays, maps, structs, binary, strings with tabs and non-ASCII, SHOW and DESCRIBE.
SPARK_SQL_QUERIES = """\
-- no mx function in here
SELECT 1 AS i, CAST(NULL AS INT) AS n, 'text' AS s, '' AS empty, 'tab\\there' AS tab,
       'naïve ☃' AS u;
SELECT 1.5D, 1.0D / 3, 1e20D, 1e-7D, CAST('NaN' AS DOUBLE), CAST('-Infinity' AS DOUBLE), -0.0D,
       CAST(1.25 AS FLOAT), 100000000.0D;
SELECT CAST(1.1 AS DECIMAL(10,3)), 123456789012345678.90BD, CAST(-0.5 AS DECIMAL(3,2)),
       CAST(NULL AS DECIMAL(5,2));
SELECT DATE'2024-02-29', DATE'0001-01-01', DATE'1582-10-04', TIMESTAMP'2024-01-02 03:04:05.123456',
       TIMESTAMP_NTZ'1900-01-01 00:00:00', TIMESTAMP'1970-01-01 00:00:00', CAST(NULL AS DATE);
SELECT array(1, NULL, 3), array(), array(array('a'), array()), map('k', NULL, 'j', 1),
       map(1, array(named_struct('a', 1))), named_struct('x', NULL, 'y', array(1.5D)),
       struct(DATE'2020-01-01', TIMESTAMP'2020-01-01 00:00:00'), CAST(NULL AS ARRAY<INT>);
SELECT X'', X'00FF7F', X'48656C6C6F', CAST('binary' AS BINARY), array(X'01');
SELECT INTERVAL '1-2' YEAR TO MONTH, INTERVAL '1 02:03:04.5' DAY TO SECOND, true,
       CAST(NULL AS BOOLEAN), 127Y, 32767S, 9223372036854775807L;
CREATE TEMPORARY VIEW v AS
  SELECT * FROM VALUES (1, 'a', 2.5D), (2, NULL, NULL) AS t(id, name, score);
SELECT * FROM v ORDER BY id;
SELECT * FROM v WHERE id > 10;
SELECT name, count(*) AS c FROM v GROUP BY name ORDER BY name NULLS FIRST;
DESCRIBE v;
DESCRIBE QUERY SELECT id, name FROM v;
SHOW TABLES;
SHOW DATABASES;
SHOW COLUMNS IN v;
DESCRIBE FUNCTION upper;
SET mxsql.test.key=some value;
SET mxsql.test.key;
SELECT 'semi;colon' AS s, "double;quoted" AS d /* a ; in a comment */;
"""


@pytest.mark.slow
def test_stdout_is_identical_to_spark_sql(tmp_path):
    """Both read one script with the header on, each with a fresh metastore."""
    script = tmp_path / "queries.sql"
    script.write_text(SPARK_SQL_QUERIES, encoding="utf-8")
    options = ["--conf", "spark.sql.cli.print.header=true", "-f", str(script)]
    spark_sql_dir = tmp_path / "spark-sql"
    spark_sql_dir.mkdir()
    reference = subprocess.Popen(
        [*shellkit.spark_sql_command(), "--conf", "spark.ui.enabled=false", *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=spark_sql_dir,
        env={**shellkit.mxsql_env(str(spark_sql_dir)), "SPARK_LOCAL_IP": "127.0.0.1"},
    )
    try:
        ours = shellkit.run_mxsql(options, home=str(tmp_path / "mxsql"))
        expected, errors = reference.communicate(timeout=shellkit.TIMEOUT)
    finally:
        reference.kill()
    assert reference.returncode == 0, errors.decode("utf-8", "replace")
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.encode("utf-8") == expected
