"""``mxsql-thriftserver``: Spark's Thrift JDBC/ODBC server with the mx functions registered.

Spark's own server cannot call Python functions, so this process owns the session: it
builds it with :func:`mxsql.registry.session.build_session`, registers the functions and
starts ``HiveThriftServer2`` inside it. Every JDBC connection shares that one session
(``spark.sql.hive.thriftServer.singleSession=true``), which is how it sees the functions,
and a ``SET`` in one connection applies to all. Where models are loaded from is the
server's policy: ``SET`` of a fixed key of a configured model (or of ``cacheDir`` and the
S3 keys) is refused at once; keys of a model the server does not know are refused at the
next mx query, until ``RESET``. An ``mxsql_s3`` view may not name an S3 endpoint or
profile other than the server's.

Host and port come from Spark's own settings, ``hive.server2.thrift.bind.host`` and
``hive.server2.thrift.port`` (``--hiveconf``), with ``--host``/``--port`` as shorthands;
the default host is 127.0.0.1, not every interface as Spark's.
"""

import argparse
import logging
import signal
import sys
import threading
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from mxsql.registry.catalog import register_all
from mxsql.registry.config import settings_from_session
from mxsql.registry.options import key_value_pairs
from mxsql.udfs.config import GLOBAL_KEYS, MODEL_KEYS, PREFIX, model_key
from mxsql.udfs.errors import ConfigError, MxsqlError

__all__ = ["HOST_KEY", "PORT_KEY", "server_conf", "start", "ThriftServer", "main"]

HOST_KEY = "hive.server2.thrift.bind.host"
PORT_KEY = "hive.server2.thrift.port"
DEFAULT_HOST = "127.0.0.1"
_HADOOP = "spark.hadoop."
_SINGLE_SESSION = "spark.sql.hive.thriftServer.singleSession"
_LIVENESS_SECONDS = 5.0

_log = logging.getLogger("mxsql.thriftserver")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mxsql-thriftserver",
        description="Spark's Thrift JDBC/ODBC server (HiveServer2 protocol) with the mx "
                    "functions registered. Stops on SIGTERM or Ctrl-C.",
    )
    parser.add_argument("--host", help=f"address to listen on (default {DEFAULT_HOST}); "
                                       f"shorthand for --hiveconf {HOST_KEY}=HOST")
    parser.add_argument("--port", type=int, help=f"port to listen on (default 10000, 0 = any "
                                                 f"free port); shorthand for --hiveconf "
                                                 f"{PORT_KEY}=PORT")
    parser.add_argument("--conf", "-c", action="append", default=[], metavar="KEY=VALUE",
                        help="a Spark setting; overrides the properties file")
    parser.add_argument("--hiveconf", action="append", default=[], metavar="KEY=VALUE",
                        help="a Hive setting, passed to Spark as spark.hadoop.KEY")
    parser.add_argument("--properties-file", metavar="FILE",
                        help="Spark properties file (default: $SPARK_CONF_DIR/spark-defaults.conf, "
                             "else the one mxsql ships)")
    parser.add_argument("--master", help="Spark master URL (default: spark.master, else local[*])")
    return parser


def server_conf(
    *,
    conf: Sequence[str] = (),
    hiveconf: Sequence[str] = (),
    host: Optional[str] = None,
    port: Optional[int] = None,
    base: Optional[Mapping[str, str]] = None,
) -> Dict[str, str]:
    """The ``--conf`` settings a server session starts with, from its command line.

    ``conf`` and ``hiveconf`` hold ``KEY=VALUE`` texts; Hive keys become
    ``spark.hadoop.KEY``. ``base`` is what the properties file already sets: the default
    host (127.0.0.1) is added only when neither it nor the command line names one.
    Raises ConfigError for a malformed pair, for ``--host``/``--port`` that contradict a
    ``--hiveconf``, and for ``spark.sql.hive.thriftServer.singleSession=false``.
    """
    settings = {key: value.strip() for key, value in key_value_pairs("--conf", conf)}
    for key, value in key_value_pairs("--hiveconf", hiveconf):
        settings[key if key.startswith("spark.") else _HADOOP + key] = value.strip()
    for key, value, option in ((HOST_KEY, host, "--host"), (PORT_KEY, port, "--port")):
        if value is None:
            continue
        given = settings.get(_HADOOP + key)
        if given is not None and given != str(value):
            raise ConfigError(
                f"{option} {value} contradicts {key}={given}: give the address one way"
            )
        settings[_HADOOP + key] = str(value)
    effective = {**(base or {}), **settings}
    if _HADOOP + HOST_KEY not in effective:
        settings[_HADOOP + HOST_KEY] = DEFAULT_HOST
    single = effective.get(_SINGLE_SESSION, "true").strip().lower()
    if single != "true":
        raise ConfigError(
            f"{_SINGLE_SESSION}={single}: mxsql-thriftserver needs true, because JDBC "
            "connections see the mx functions only in the server's own session"
        )
    settings[_SINGLE_SESSION] = "true"
    # A server's stderr is a log: no console progress bar in it.
    if "spark.ui.showConsoleProgress" not in effective:
        settings["spark.ui.showConsoleProgress"] = "false"
    return settings


class ThriftServer:
    """A running HiveThriftServer2 inside a Python-owned session."""

    def __init__(self, spark, jserver):
        self._jserver = jserver
        thrift = spark._jvm.org.apache.hive.service.cli.thrift.ThriftCLIService._java_lang_class
        self._thrift = next(s for s in jserver.getServices() if thrift.isInstance(s))

    @property
    def address(self) -> Tuple[str, int]:
        """(host, port) the server listens on; the port is the bound one, also for port 0."""
        ip = self._thrift.getServerIPAddress()
        return ip.getHostAddress(), int(self._thrift.getPortNumber())

    @property
    def jdbc_url(self) -> str:
        host, port = self.address
        return f"jdbc:hive2://{host}:{port}/"

    def stop(self) -> None:
        """Stop accepting connections and close the server's sessions."""
        self._jserver.stop()


def start(spark) -> ThriftServer:
    """Start HiveThriftServer2 in ``spark``, which must have been built with singleSession,
    after registering the mx functions under the server's policy.

    Uses ``startWithSparkSession(session, exitOnError=false)``: ``startWithContext`` calls
    ``System.exit`` when the port is taken, which would kill the JVM under Python.
    """
    if spark.conf.get(_SINGLE_SESSION, "false").lower() != "true":
        raise ConfigError(
            f"{_SINGLE_SESSION} must be true before the session starts (a static setting): "
            "otherwise JDBC connections cannot see the mx functions"
        )
    _fix_model_sources(spark)
    # mxsql_s3's endpoint and profile options may only repeat the server's: otherwise a
    # JDBC user could read with another profile of this host's credentials, or send them
    # to another endpoint. No SQL statement can change a registered class.
    register_all(spark, fixed_by_server=True)
    _skip_hive_function_registry(spark)
    # Open the metastore now: a bad one (URL, JDBC driver, a Derby home another process
    # holds) fails the start, not the first query, and a new schema exists before anyone
    # connects.
    spark.catalog.databaseExists("default")
    thrift_server = spark._jvm.org.apache.spark.sql.hive.thriftserver.HiveThriftServer2
    jserver = thrift_server.startWithSparkSession(spark._jsparkSession, False)
    return ThriftServer(spark, jserver)


def _fix_model_sources(spark) -> None:
    """Make the ``spark.mxsql.*`` keys that SET may not change static in this JVM.

    Every connection shares the server's session: the workers would refuse a fixed key's
    new value at the next mx query of *every* connection. As a static key, Spark refuses
    the SET itself, in the connection that tried it. Covers the global fixed keys and
    every key of each configured model.
    """
    settings = settings_from_session(spark)
    keys = [PREFIX + key.name for key in GLOBAL_KEYS if not key.settable]
    keys += [model_key(m.name, key.name) for m in settings.models for key in MODEL_KEYS]
    sql_conf = spark._jvm.org.apache.spark.sql.internal.SQLConf
    for key in keys:
        if not sql_conf.isStaticConfigKey(key):
            sql_conf.buildStaticConf(key).doc(
                "Fixed when mxsql-thriftserver starts: where models are loaded from is the "
                "server's policy, not a connection's."
            ).stringConf().createOptional()


def _skip_hive_function_registry(spark) -> None:
    """Mark Hive's built-in functions as registered, so Hive never tries to register them.

    Closing a JDBC session can build a new ``Hive`` object (``SessionState.close`` calls
    ``Hive.get``), and the first one built registers Hive's ``FunctionRegistry``, whose
    static init needs hive-llap-common, which pyspark does not ship: CloseSession fails
    with NoClassDefFoundError, and every later ``Hive`` waits forever for the half-done
    registration. Spark SQL never uses that registry (Spark's own Hive client uses
    ``Hive.getWithoutRegisterFns``), so setting Hive 2.3's ``didRegisterAllFuncs`` to
    ``REG_FUNCS_DONE`` (2) is safe. py4j turns an AtomicInteger into a Python int, so
    the field is set by a method handle that runs in the JVM.
    """
    from py4j.protocol import Py4JJavaError

    jvm = spark._jvm
    handles = jvm.java.lang.invoke.MethodHandles
    try:
        hive = jvm.org.apache.hadoop.hive.ql.metadata.Hive._java_lang_class
        field = hive.getDeclaredField("didRegisterAllFuncs")
        field.setAccessible(True)
        lookup = handles.publicLookup()
        set_value = lookup.findVirtual(
            jvm.java.util.concurrent.atomic.AtomicInteger._java_lang_class, "set",
            jvm.java.lang.invoke.MethodType.methodType(jvm.java.lang.Void.TYPE,
                                                        jvm.java.lang.Integer.TYPE),
        )
        # The getter supplies set's receiver: the handle takes only the new value.
        handles.collectArguments(set_value, 0, lookup.unreflectGetter(field)) \
            .invokeWithArguments([2])
    except Py4JJavaError as e:
        _log.warning("could not mark Hive's functions as registered (%s): closing a JDBC "
                     "session may fail with NoClassDefFoundError", _java_reason(e))


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s mxsql-thriftserver: "
                                           "%(message)s", "%y/%m/%d %H:%M:%S"))
    _log.addHandler(handler)
    _log.setLevel(logging.INFO)
    _log.propagate = False


class _Stop:
    """Set by SIGTERM or SIGINT (Ctrl-C); remembers which signal came."""

    def __init__(self):
        self.event = threading.Event()
        self.signal_name = ""
        self.install()

    def install(self) -> None:
        """Take SIGTERM and SIGINT (again: a new SparkContext installs its own SIGINT
        handler, which cancels jobs and raises KeyboardInterrupt)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, signum, _frame):
        self.signal_name = signal.Signals(signum).name
        self.event.set()


def main(argv: Optional[List[str]] = None) -> int:
    """Run the server until SIGTERM or Ctrl-C; 0 on a clean stop, 1 if it cannot run."""
    args = _parser().parse_args(argv)
    _configure_logging()
    stop = _Stop()  # before the session starts: a signal while it starts stops it too

    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    from mxsql.registry.session import build_session, layered_conf

    try:
        base = layered_conf(properties_file=args.properties_file)
        conf = server_conf(conf=args.conf, hiveconf=args.hiveconf, host=args.host,
                           port=args.port, base=base)
        spark = build_session(conf, master=args.master, app_name="mxsql-thriftserver",
                              properties_file=args.properties_file, register=False)
    except (MxsqlError, OSError) as e:
        _log.error("%s", e)
        return 1
    stop.install()
    server = None
    status = 0
    try:
        if not stop.event.is_set():
            server = start(spark)
            _log.info("listening on %s:%d (%s)", *server.address, server.jdbc_url)
        while not stop.event.wait(_LIVENESS_SECONDS):
            if spark.sparkContext._jsc.sc().isStopped():
                _log.error("the Spark context stopped, so the server stops")
                status = 1
                break
    except (Py4JError, PySparkException, MxsqlError) as e:  # port taken, bad metastore
        _log.error("the Thrift server failed: %s", _java_reason(e))
        status = 1
    if stop.event.is_set():
        _log.info("%s received: stopping", stop.signal_name)
    try:
        if server is not None:
            server.stop()
    except Py4JError:
        # A signal sent to the whole process group also reached the JVM, whose own
        # shutdown hooks stop Spark and the server.
        _log.info("the server had already stopped")
    finally:
        try:
            spark.stop()
        except Py4JError:
            _log.info("Spark had already stopped")
    return status


def _java_reason(error: Exception) -> str:
    """The root cause's text when a Java exception is behind ``error``."""
    java = getattr(error, "java_exception", None) or getattr(error, "_origin", None)
    while java is not None and java.getCause() is not None:
        java = java.getCause()
    return str(java.toString()) if java is not None else str(error)


if __name__ == "__main__":
    sys.exit(main())
