"""``mxsql``: Spark's SQL shell, with the mx functions registered in its session.

Spark's own ``bin/spark-sql`` is a JVM program and cannot call Python functions, so
mxsql is a Python process that owns the session and behaves like spark-sql: the same
options, the same row text on stdout (Spark's ``HiveResult``, through Spark's own
``SparkSQLDriver``), the same ``Time taken`` lines on stderr, the same statement
splitting and exit codes (1 for a failing statement, 3 for a missing ``-f`` file), and
the same effect of every ``SET``.

What differs, on purpose:

- an error that mxsql raises in a Python worker (ConfigError, ModelLoadError, RowError)
  is shown as its own one-line message instead of the Python traceback Spark wraps
  around it, and Spark's task-failure logs are quiet; ``-v`` shows both;
- ``SET spark.mxsql.KEY=VALUE`` is checked at once and takes effect from the next
  statement (the functions are registered again); a bad value is an error naming the key;
- Spark's UNRESOLVED_ROUTINE for a misspelt mx function ends in "did you mean mx_...?";
- a second process on the embedded metastore under ``$MXSQL_HOME`` stops at once with one
  line saying so, instead of Derby's half minute of retries and traces;
- the interactive prompt is ``mxsql (DATABASE)>`` and history is kept in
  ``~/.mxsql_history``; Ctrl-C cancels the running statement, a second Ctrl-C while it
  is being cancelled leaves the shell (exit code 130), Ctrl-D leaves it.
"""

import argparse
import difflib
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Mapping, Optional, Sequence, TextIO

from mxsql.registry.javaerrors import java_exception
from mxsql.registry.options import key_value_pairs
from mxsql.registry.statements import script_text, split_statements
from mxsql.udfs.config import PREFIX, parse_settings
from mxsql.udfs.errors import CatalogInUseError, ConfigError

__all__ = [
    "EXIT_FAILURE",
    "EXIT_MISSING_FILE",
    "EXIT_INTERRUPTED",
    "parse_args",
    "session_conf",
    "worker_error",
    "mx_function_guess",
    "Shell",
    "main",
]

EXIT_FAILURE = 1  # a statement failed, as spark-sql
EXIT_MISSING_FILE = 3  # -f or -i names no readable file, as spark-sql
EXIT_INTERRUPTED = 130  # Ctrl-C twice, or Ctrl-C while running -e / -f

PROMPT = "mxsql"
HISTORY_FILE = "~/.mxsql_history"

# spark-submit's options that are Spark settings, as spark-submit maps them.
_SUBMIT_OPTIONS = (
    ("jars", "spark.jars"),
    ("packages", "spark.jars.packages"),
    ("driver_memory", "spark.driver.memory"),
    ("executor_memory", "spark.executor.memory"),
)
# spark-sql prints column names when spark.sql.cli.print.header is true now, or when
# hive.cli.print.header was true in --hiveconf at start; it reads hive.cli.errors.ignore
# from --hiveconf only. A SET of either hive.cli key changes nothing, as in spark-sql.
_HEADER_KEY = "spark.sql.cli.print.header"
_HIVE_HEADER_KEY = "hive.cli.print.header"
_IGNORE_ERRORS_KEY = "hive.cli.errors.ignore"
# Loggers that repeat a failed task's whole error (a Python traceback for a UDF) on
# stderr; the shell prints the error itself, so they are quiet unless -v.
_TASK_FAILURE_LOGGERS = (
    "org.apache.spark.executor.Executor",
    "org.apache.spark.scheduler.TaskSetManager",
)
# Loggers that warn each time the shell registers the functions again after a SET.
_REGISTRATION_LOGGERS = (
    "org.apache.spark.sql.catalyst.analysis.SimpleFunctionRegistry",
    "org.apache.spark.sql.execution.datasources.DataSourceManager",
)
_WORKER_ERROR = re.compile(
    r"^mxsql\.udfs\.errors\.(\w+Error): (.*)$", re.MULTILINE
)

_DESCRIPTION = """\
SQL shell for Spark with mxsql's image functions (mx_classify, mx_top_k, mx_image_info)
registered. Behaves like Spark's spark-sql: with -e or -f it runs the statements and
exits; otherwise it reads statements interactively. Settings come from one properties
file (--properties-file, else $SPARK_CONF_DIR/spark-defaults.conf, else mxsql's own),
then --conf. The catalog is an embedded Derby metastore in $MXSQL_HOME (~/.mxsql)
unless the settings name another metastore."""

_EPILOG = """\
Variables: --hivevar x=1 (or -d x=1) makes ${x} and ${hivevar:x} in statements read 1.
Examples:
  mxsql -e "SELECT 1"
  mxsql --conf spark.mxsql.model.default.uri=/models/resnet-18/resnet-18 \\
        -d table=photos -f sql/classify.sql"""


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse spark-sql's command line (spark-submit's options and Hive CLI's)."""
    parser = argparse.ArgumentParser(
        prog="mxsql", description=_DESCRIPTION, epilog=_EPILOG, add_help=False,
        allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("-e", dest="execute", metavar="SQL",
                        help="run these statements (separated by ;) and exit")
    source.add_argument("-f", dest="file", metavar="FILE",
                        help="run the statements in FILE and exit")
    parser.add_argument("-i", dest="init", metavar="FILE", action="append", default=[],
                        help="run FILE first, silently (may be repeated)")
    parser.add_argument("--database", metavar="DB", help="database to use")
    parser.add_argument("--conf", "-c", dest="conf", metavar="KEY=VALUE", action="append",
                        default=[], help="a Spark setting (overrides the properties file)")
    parser.add_argument("--hiveconf", metavar="KEY=VALUE", action="append", default=[],
                        help="a Hive setting, e.g. hive.cli.print.header=true")
    parser.add_argument("--hivevar", "--define", "-d", dest="hivevar", metavar="KEY=VALUE",
                        action="append", default=[], help="a variable for ${KEY} in statements")
    parser.add_argument("--master", metavar="URL",
                        help="local[*] (default), local[N], spark://HOST:PORT or yarn")
    parser.add_argument("--name", metavar="NAME", help="application name")
    parser.add_argument("--properties-file", metavar="FILE",
                        help="Spark properties file to read instead of spark-defaults.conf")
    parser.add_argument("--jars", metavar="JARS", help="comma-separated jars (spark.jars)")
    parser.add_argument("--packages", metavar="COORDS",
                        help="comma-separated Maven coordinates (spark.jars.packages)")
    parser.add_argument("--driver-memory", metavar="MEM", help="driver memory, e.g. 2g")
    parser.add_argument("--executor-memory", metavar="MEM", help="executor memory, e.g. 4g")
    parser.add_argument("-S", "--silent", action="store_true",
                        help="silent mode: no Spark master and web UI lines")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="echo each statement; show full error traces and task-failure logs")
    parser.add_argument("-h", "-H", "--help", action="help", help="show this help and exit")
    return parser.parse_args(argv)


def session_conf(args: argparse.Namespace) -> Dict[str, str]:
    """The Spark settings the command line gives, as spark-sql derives them.

    ``--conf`` pairs; spark-submit's options over them (``--jars`` is ``spark.jars``,
    ``--packages`` ``spark.jars.packages``, ``--driver-memory`` ``spark.driver.memory``,
    ``--executor-memory`` ``spark.executor.memory``); each ``--hiveconf K=V`` also as
    ``spark.hadoop.K`` unless that is set (so metastore settings reach Hive).
    """
    conf = dict(key_value_pairs("--conf", args.conf))
    for option, key in _SUBMIT_OPTIONS:
        value = getattr(args, option)
        if value is not None:
            conf[key] = value
    for key, value in key_value_pairs("--hiveconf", args.hiveconf):
        conf.setdefault("spark.hadoop." + key, value)
    return conf


def worker_error(text: str) -> Optional[str]:
    """The last mxsql error raised in a Python worker, from Spark's error text.

    Returns ``"ModelLoadError: spark.mxsql.model.default.uri: file not found: ..."``
    for such an error, None for any other error.
    """
    found = _WORKER_ERROR.findall(text)
    if not found:
        return None
    name, message = found[-1]
    return f"{name}: {message.strip()}"


def _is_true(value: Optional[str]) -> bool:
    return (value or "").strip().lower() == "true"


def mx_function_guess(routine: str) -> Optional[str]:
    """The mx function a misspelt ``routine`` (as Spark names it, e.g. ```mx_clasify```)
    most likely meant, or None when it is close to none of them."""
    from mxsql.registry.catalog import FUNCTIONS

    name = routine.replace("`", "").rsplit(".", 1)[-1].lower()
    found = difflib.get_close_matches(name, [fn.name for fn in FUNCTIONS], n=1, cutoff=0.75)
    return found[0] if found else None


class _Quit(Exception):
    """``quit`` or ``exit`` was typed."""


class Shell:
    """Runs SQL text against one session the way spark-sql does.

    Rows go to ``out`` exactly as spark-sql prints them; timings and errors go to
    ``err``. Every method returns spark-sql's status for what it ran: 0 or 1.
    """

    def __init__(self, spark, *, out: TextIO, err: TextIO, verbose: bool = False,
                 hive_conf: Optional[Mapping[str, str]] = None):
        from mxsql.registry.config import settings_from_session
        from mxsql.registry.warmup import WorkerWarmup

        self.spark = spark
        self.out = out
        self.err = err
        self.verbose = verbose
        hive_conf = hive_conf or {}  # the --hiveconf settings given at start
        self.hive_header = _is_true(hive_conf.get(_HIVE_HEADER_KEY))
        self.ignore_errors = _is_true(hive_conf.get(_IGNORE_ERRORS_KEY))
        self._jvm = spark._jvm
        self._registered = settings_from_session(spark)
        self._start = self._registered  # its policy decides what SET may add or change
        self._data_source = False  # mxsql_s3 is registered by the first statement naming it
        self._warmup = WorkerWarmup(spark)
        # One thread runs every statement, so that the main thread stays free to take
        # Ctrl-C and cancel the running jobs.
        self._runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mxsql-statement")

    def close(self) -> None:
        self._runner.shutdown(wait=False)

    # -- running statements ---------------------------------------------------------

    def run_text(self, text: str) -> int:
        """Run every statement of ``text``; stop at the first failure unless
        ``--hiveconf hive.cli.errors.ignore=true``. Returns the last statement's status."""
        status = 0
        for statement in split_statements(text):
            status = self.run_statement(statement)
            if status != 0 and not self.ignore_errors:
                return status
        return status

    def run_file(self, path: str) -> int:
        """Run a SQL file; raises OSError when it cannot be read."""
        with open(path, encoding="utf-8") as f:
            return self.run_text(script_text(f))

    def run_statement(self, statement: str) -> int:
        """Run one statement, print its rows (and header) and its time taken."""
        command = statement.strip()
        word = command.split(None, 1)[0].lower() if command else ""
        if command.lower() in ("quit", "exit"):
            raise _Quit()
        if word == "source":
            path = command[len(word):].strip()
            try:
                return self.run_file(path)
            except OSError as e:
                self.err.write(f"Could not open input file for reading. ({e})\n")
                return EXIT_FAILURE
        if self.verbose:
            self.out.write(command + "\n")
        started = time.monotonic_ns()
        self._warmup.before(command)  # Python workers start while Spark plans it
        try:
            header, rows, count = self._runner.submit(self._execute, command).result()
        except Exception as e:  # every failure of a statement is reported, as spark-sql
            self._report(e)
            return EXIT_FAILURE
        seconds = ((time.monotonic_ns() - started) // 1_000_000) / 1000.0
        if header is not None:
            self.out.write(header + "\n")
        if count:
            self.out.write(rows + "\n")
        self.out.flush()
        fetched = f", Fetched {count} row(s)" if count else ""
        self.err.write(f"Time taken: {seconds} seconds{fetched}\n")
        return 0

    def _execute(self, statement: str):
        """Run in the statement thread: (header or None, rows text, row count)."""
        jsession = self.spark._jsparkSession
        # Spark reads settings such as spark.sql.ansi.enabled while parsing through the
        # thread's active session (SQLConf.get); on this thread's JVM side there is none,
        # and the parser would see the defaults, not the session's SETs.
        self._jvm.org.apache.spark.sql.SparkSession.setActiveSession(jsession)
        self._register_data_source_for(statement)
        driver = self._jvm.org.apache.spark.sql.hive.thriftserver.SparkSQLDriver(jsession)
        try:
            driver.run(statement)
            rows = self._jvm.java.util.ArrayList()
            while driver.getResults(rows):
                pass
            header = None
            if self.hive_header or self._flag(_HEADER_KEY):
                header = "\t".join(f.getName() for f in driver.getSchema().getFieldSchemas())
            count = rows.size()
            text = self._jvm.java.lang.String.join("\n", rows) if count else ""
        finally:
            driver.close()
        self._sync_functions()
        return header, text, count

    def _register_data_source_for(self, statement: str) -> None:
        """Register ``mxsql_s3`` before the first statement that names it, after
        ``${var}`` substitution; statements that do not skip its seconds of start-up."""
        if self._data_source:
            return
        from mxsql.registry.catalog import register_data_source
        from mxsql.udfs.s3.options import NAME

        if "${" in statement:
            statement = self._jvm.org.apache.spark.sql.internal.VariableSubstitution() \
                .substitute(statement)
        if NAME in statement.lower():
            register_data_source(self.spark, self._registered)
            self._data_source = True

    def use_database(self, name: str) -> int:
        """``--database``: make ``name`` current, printing nothing but an error."""
        try:
            self.spark.sql(f"USE {name}")
        except Exception as e:  # reported as any failed statement
            self._report(e)
            return EXIT_FAILURE
        return 0

    def _sync_functions(self) -> None:
        """After a statement changed ``spark.mxsql.*`` settings, check them and register
        the functions again; a bad value, or a model change the start's policy refuses
        (``runtimeModels``, ``model.allowedUris``), is undone and raised as ConfigError."""
        from mxsql.registry.catalog import register_all

        conf = self.spark.conf.getAll
        try:
            settings = self._start.admit(parse_settings(conf))
        except ConfigError:
            registered = dict(self._registered.raw)
            for key, value in conf.items():
                if key.startswith(PREFIX) and registered.get(key) != value:
                    self.spark.conf.unset(key)
            for key, value in registered.items():
                if conf.get(key) != value:
                    self.spark.conf.set(key, value)
            raise
        if settings.raw == self._registered.raw:
            return
        register_all(self.spark, settings=settings, data_source=self._data_source)
        self._registered = settings

    def _flag(self, key: str) -> bool:
        return _is_true(self.spark.conf.get(key, "false"))

    # -- errors -----------------------------------------------------------------------

    def _report(self, error: Exception) -> None:
        """Print a failed statement's error as spark-sql does, or mxsql's own message."""
        # PySpark's exception for a Java error, or py4j's when PySpark has no class for it.
        origin = java_exception(error)
        if isinstance(error, ConfigError):
            message = f"ConfigError: {error}"
        elif origin is not None:
            message = self._spark_message(origin)
            message = worker_error(message) or message
        else:
            message = f"{type(error).__name__}: {error}"
        self.err.write(message + "\n")
        if self.verbose:
            self.err.write(self._trace(error, origin))
        self.err.flush()

    def _spark_message(self, origin) -> str:
        """The text spark-sql prints for a Java exception."""
        from py4j.java_gateway import is_instance_of

        gateway = self.spark.sparkContext._gateway
        if is_instance_of(gateway, origin, "org.apache.spark.SparkThrowable"):
            fmt = self.spark._jsparkSession.sessionState().conf().errorMessageFormat()
            message = self._jvm.org.apache.spark.SparkThrowableHelper.getMessage(origin, fmt)
            if origin.getCondition() == "UNRESOLVED_ROUTINE":
                first, newline, rest = message.partition("\n")
                guess = mx_function_guess(origin.getMessageParameters().get("routineName") or "")
                if guess is not None:
                    message = f"{first}; did you mean {guess}?{newline}{rest}"
            return message
        return origin.getMessage()

    def _trace(self, error: Exception, origin) -> str:
        if origin is not None:
            return self._jvm.org.apache.spark.util.Utils.exceptionString(origin)
        import traceback

        return "".join(traceback.format_exception(error))

    # -- interactive --------------------------------------------------------------------

    def interact(self, *, history_file: str = HISTORY_FILE) -> int:
        """Read statements from the terminal until Ctrl-D or ``quit;``.

        A statement runs when a line ends with ``;``; lines that start with ``--`` are
        skipped. Ctrl-C at the prompt drops the statement being typed; while a
        statement runs, it cancels the statement's Spark jobs.
        """
        history = _History(os.path.expanduser(history_file))
        status, pending = 0, ""
        try:
            while True:
                try:
                    line = input(self._prompt(continued=bool(pending)))
                except EOFError:
                    self.out.write("\n")
                    return status
                except KeyboardInterrupt:
                    self.out.write("\n")
                    pending = ""
                    continue
                if line.startswith("--"):
                    continue
                if pending:
                    pending += "\n"
                stripped = line.strip()
                if stripped.endswith(";") and not stripped.endswith("\\;"):
                    status = self._run_interruptibly(pending + line)
                    pending = ""
                else:
                    pending += line
        finally:
            history.save()

    def _run_interruptibly(self, text: str) -> int:
        try:
            return self.run_text(text)
        except KeyboardInterrupt:
            self.err.write("Interrupting... Be patient, this might take some time.\n"
                           "Press Ctrl+C again to leave mxsql.\n")
            self.spark.sparkContext.cancelAllJobs()
            self._runner.submit(lambda: None).result()  # wait for the cancelled statement
            self.err.write("Statement cancelled.\n")
            return EXIT_FAILURE

    def _prompt(self, *, continued: bool) -> str:
        current = f"{PROMPT} ({self.spark.catalog.currentDatabase()})"
        return (" " * len(current) if continued else current) + "> "


class _History:
    """readline history kept in a file, when readline is available."""

    def __init__(self, path: str):
        self.path = path
        try:
            import readline
        except ImportError:
            self._readline = None
            return
        self._readline = readline
        readline.set_history_length(10000)
        readline.parse_and_bind("tab: self-insert")  # pasted SQL keeps its tabs
        if os.path.exists(path):
            readline.read_history_file(path)

    def save(self) -> None:
        if self._readline is not None:
            self._readline.write_history_file(self.path)


def _quiet_logs(spark, *, verbose: bool) -> None:
    import logging

    from pyspark.logger import PySparkLogger

    # PySpark logs every failed SQL statement as a JSON record with Java stacks;
    # spark-sql prints the error once, and so does the shell.
    PySparkLogger.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL + 1)
    log4j = spark._jvm.org.apache.logging.log4j
    for name in _REGISTRATION_LOGGERS:
        log4j.core.config.Configurator.setLevel(name, log4j.Level.ERROR)
    if not verbose:
        for name in _TASK_FAILURE_LOGGERS:
            log4j.core.config.Configurator.setLevel(name, log4j.Level.OFF)


def _start(args: argparse.Namespace, conf: Dict[str, str], err: TextIO):
    from mxsql.registry.session import build_session

    spark = build_session(
        conf, master=args.master, app_name=args.name or "mxsql",
        properties_file=args.properties_file, register=False,
        # The progress bar goes to stderr only on a terminal: stdout stays spark-sql's
        # and redirected logs stay clean.
        defaults={"spark.ui.showConsoleProgress": str(err.isatty()).lower()},
    )
    # spark-sql prints dates and timestamps through java.time whatever the settings.
    spark.conf.set("spark.sql.datetime.java8API.enabled", "true")
    for key, value in key_value_pairs("--hiveconf", args.hiveconf):
        if key != "hive.metastore.warehouse.dir":
            spark.conf.set(key, value)
    for key, value in key_value_pairs("--hivevar", args.hivevar):
        spark.conf.set(key, value)
    return spark


def _missing_file(args: argparse.Namespace) -> Optional[str]:
    for path in [*args.init, *([args.file] if args.file else [])]:
        if not os.path.isfile(path):
            return path
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The ``mxsql`` console script."""
    args = parse_args(argv)
    out, err = sys.stdout, sys.stderr
    for stream in (out, err):
        stream.reconfigure(encoding="utf-8", errors="replace")  # spark-sql writes UTF-8
    missing = _missing_file(args)
    if missing is not None:
        err.write(f"Could not open input file for reading. (File {os.path.abspath(missing)} "
                  "does not exist)\n")
        return EXIT_MISSING_FILE
    from pyspark.errors import PySparkException

    from mxsql.registry.catalog import register_all

    try:
        spark = _start(args, session_conf(args), err)
        register_all(spark, data_source=False)  # the Shell registers it when named
    except (ConfigError, CatalogInUseError) as e:
        err.write(f"{type(e).__name__}: {e}\n")
        return EXIT_FAILURE
    except OSError as e:  # an unreadable --properties-file
        err.write(f"mxsql: cannot read {e.filename}: {e.strerror}\n")
        return EXIT_FAILURE
    except PySparkException as e:  # e.g. --hiveconf of a static setting, as spark-sql
        err.write(f"{e}\n")
        return EXIT_FAILURE
    _quiet_logs(spark, verbose=args.verbose)
    shell = Shell(spark, out=out, err=err, verbose=args.verbose,
                  hive_conf=dict(key_value_pairs("--hiveconf", args.hiveconf)))
    try:
        return _run(shell, args)
    except _Quit:
        return 0
    except KeyboardInterrupt:
        spark.sparkContext.cancelAllJobs()
        return EXIT_INTERRUPTED
    finally:
        out.flush()
        shell.close()
        spark.stop()


def _run(shell: Shell, args: argparse.Namespace) -> int:
    spark, err = shell.spark, shell.err
    if args.database:
        status = shell.use_database(args.database)
        if status:
            return status
    for path in args.init:
        status = shell.run_file(path)
        if status:
            return status
    if not args.silent:
        url = spark.sparkContext.uiWebUrl
        if url:
            err.write(f"Spark Web UI available at {url}\n")
        err.write(f"Spark master: {spark.sparkContext.master}, "
                  f"Application Id: {spark.sparkContext.applicationId}\n")
    if args.execute is not None:
        return shell.run_text(args.execute)
    if args.file is not None:
        return shell.run_file(args.file)
    if not sys.stdin.isatty():
        return shell.run_text(script_text(sys.stdin))  # piped: a script, no prompts
    return shell.interact()


if __name__ == "__main__":
    sys.exit(main())
