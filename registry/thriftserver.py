"""``mxsql-thriftserver``: Spark's Thrift JDBC/ODBC server with the mx functions, for a team.

Spark's own server cannot call Python functions, so this process owns the session: it
builds it with :func:`mxsql.registry.session.build_session`, registers the functions and
starts ``HiveThriftServer2`` inside it. Each JDBC connection gets its own session (Spark's
default multi-session mode): its own ``SET``s, current database and temporary views, with
the mx functions and the server's rules (:mod:`mxsql.registry.serverrules`) injected into
every one (:mod:`mxsql.registry.sessions`). ``spark.sql.hive.thriftServer.singleSession=
true`` makes every connection share one session instead, rules included.

Host and port come from Spark's own settings, ``hive.server2.thrift.bind.host`` and
``hive.server2.thrift.port`` (``--hiveconf``), with ``--host``/``--port`` as shorthands;
the default host is 127.0.0.1, not every interface as Spark's. Login (``hive.server2.
authentication=LDAP`` and its ``…ldap.*`` keys) and TLS (``hive.server2.use.SSL``, the
keystore keys) are Hive's settings; the server refuses to listen beyond loopback without
a login.
"""

import argparse
import logging
import signal
import sys
import threading
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from mxsql.registry.catalog import register_all
from mxsql.registry.javaerrors import root_cause_text
from mxsql.registry.options import key_value_pairs
from mxsql.registry.serverprocess import listening_message
from mxsql.registry.serverrules import ALLOWED_PATHS_KEY, PathRules, ServerRules
from mxsql.registry.sessions import prepare_sessions
from mxsql.udfs.config import RUNTIME_MODELS_KEY
from mxsql.udfs.errors import ConfigError, MxsqlError

__all__ = ["HOST_KEY", "PORT_KEY", "AUTH_KEY", "server_conf", "start", "ThriftServer", "main"]

HOST_KEY = "hive.server2.thrift.bind.host"
PORT_KEY = "hive.server2.thrift.port"
AUTH_KEY = "hive.server2.authentication"
DEFAULT_HOST = "127.0.0.1"
_HADOOP = "spark.hadoop."
_SINGLE_SESSION = "spark.sql.hive.thriftServer.singleSession"
# Hive's LDAP provider reads its settings from a fresh HiveConf, which sees JVM system
# properties but neither --hiveconf nor spark.hadoop.* keys (FACTS.md).
_AUTH_PREFIX = AUTH_KEY + "."
_NO_LOGIN = ("NONE", "NOSASL")
_LOOPBACK = ("127.", "::1", "localhost", "0:0:0:0:0:0:0:1")
_LIVENESS_SECONDS = 5.0
_SERVER_DEFAULTS = {
    # A server's stderr is a log: no console progress bar in it.
    "spark.ui.showConsoleProgress": "false",
    # Run each statement in the Thrift call that sent it: an asynchronous statement's
    # error reaches the client with the server's whole Java stack in its message (Spark's
    # GetOperationStatus sends stringifyException), a synchronous one as its message.
    "spark.sql.hive.thriftServer.async": "false",
    # An mx function's error reaches the client as its message, without the worker's
    # Python traceback.
    "spark.sql.execution.pyspark.udf.hideTraceback.enabled": "true",
    # A JDBC user may not make the workers fetch a model unless the operator says so.
    RUNTIME_MODELS_KEY: "false",
}

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
    ``--hiveconf``, and for an address beyond loopback without a login
    (``hive.server2.authentication`` NONE or NOSASL).
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
    effective = {**(base or {}), **settings}
    host = effective[_HADOOP + HOST_KEY].strip()
    auth = effective.get(_HADOOP + AUTH_KEY, "NONE").strip().upper()
    if auth in _NO_LOGIN and not host.startswith(_LOOPBACK):
        raise ConfigError(
            f"{HOST_KEY}={host} with {AUTH_KEY}={auth}: anyone who reaches the port would be "
            f"in; set {AUTH_KEY}=LDAP (with its ldap.url and ldap.baseDN keys), or listen on "
            "loopback only (--host 127.0.0.1)"
        )
    for key, value in _SERVER_DEFAULTS.items():
        if key not in effective:
            settings[key] = value
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
    """Start HiveThriftServer2 in ``spark`` with the mx functions and the server's rules in
    every JDBC session.

    Each connection gets a new session made from ``spark`` (or, with
    ``spark.sql.hive.thriftServer.singleSession=true``, all share one new session), so the
    functions, the rules and the login settings are in place before the server starts.
    Uses ``startWithSparkSession(session, exitOnError=false)``: ``startWithContext`` calls
    ``System.exit`` when the port is taken, which would kill the JVM under Python. Raises
    ConfigError for a malformed ``spark.mxsql.*`` setting.
    """
    # mxsql_s3's endpoint and profile options may only repeat the server's: otherwise a
    # JDBC user could read with another profile of this host's credentials, or send them
    # to another endpoint. No SQL statement can change a registered class.
    settings = register_all(spark, fixed_by_server=True)
    prepare_sessions(spark, ServerRules(spark, _path_rules(spark), settings))
    _login_settings_for_hive(spark)
    _skip_hive_function_registry(spark)
    # Open the metastore now: a bad one (URL, JDBC driver, a Derby home another process
    # holds) fails the start, not the first query, and a new schema exists before anyone
    # connects.
    spark.catalog.databaseExists("default")
    session = spark._jsparkSession
    if spark.conf.get(_SINGLE_SESSION, "false").strip().lower() == "true":
        # A session made after prepare_sessions has the rules; spark itself has none.
        session = session.newSession()
    thrift_server = spark._jvm.org.apache.spark.sql.hive.thriftserver.HiveThriftServer2
    jserver = thrift_server.startWithSparkSession(session, False)
    return ThriftServer(spark, jserver)


def _path_rules(spark) -> PathRules:
    """The warehouse and ``spark.mxsql.server.allowedPaths``, on the default file system."""
    default_fs = spark._jsc.hadoopConfiguration().get("fs.defaultFS", "file:///")
    return PathRules.from_settings(
        spark.conf.get(ALLOWED_PATHS_KEY, None), spark.conf.get("spark.sql.warehouse.dir"),
        default_fs=default_fs,
    )


def _login_settings_for_hive(spark) -> None:
    """Give Hive's authentication providers the ``hive.server2.authentication.*`` keys as
    JVM system properties, where the fresh ``HiveConf`` each login builds finds them.

    Hive users give these with ``--hiveconf`` or in the properties file (here
    ``spark.hadoop.`` keys), which that ``HiveConf`` never sees: without this, every LDAP
    login fails. None of these keys holds a password (Hive 2.3's LDAP provider binds as
    the user who logs in).
    """
    system = spark._jvm.java.lang.System
    prefix = _HADOOP + _AUTH_PREFIX
    for key, value in spark.conf.getAll.items():
        if key.startswith(prefix):
            system.setProperty(key[len(_HADOOP):], value)


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
                     "session may fail with NoClassDefFoundError", root_cause_text(e))


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
            _log.info("%s", listening_message(*server.address, server.jdbc_url))
        while not stop.event.wait(_LIVENESS_SECONDS):
            if spark.sparkContext._jsc.sc().isStopped():
                _log.error("the Spark context stopped, so the server stops")
                status = 1
                break
    except (Py4JError, PySparkException, MxsqlError) as e:  # port taken, bad metastore
        _log.error("the Thrift server failed: %s", root_cause_text(e))
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


if __name__ == "__main__":
    sys.exit(main())
