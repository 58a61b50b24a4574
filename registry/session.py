"""Build the SparkSession that the shell and the Thrift server share.

Configuration is layered as Spark's is: one properties file (``--properties-file``,
else ``$SPARK_CONF_DIR/spark-defaults.conf``, else the one mxsql ships), then the
caller's ``--conf`` settings. The catalog is a Hive metastore: embedded Derby under
``$MXSQL_HOME`` (default ``~/.mxsql``) unless the configuration names another.
"""

import fcntl
import os
import sys
from typing import Dict, Mapping, Optional

from mxsql.udfs.errors import CatalogInUseError

__all__ = [
    "project_conf_file",
    "read_properties",
    "layered_conf",
    "mxsql_home",
    "check_catalog_free",
    "build_session",
]


def project_conf_file() -> str:
    """The spark-defaults.conf shipped with mxsql."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "spark-defaults.conf")


def read_properties(path: str) -> Dict[str, str]:
    """Parse a Spark properties file: ``key value`` or ``key=value`` lines, # comments."""
    conf = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", "!")):
                continue
            key, value = _split_property(line)
            conf[key] = value
    return conf


def _split_property(line: str):
    for i, ch in enumerate(line):
        if ch in "=: \t":
            rest = line[i:].lstrip(" \t")
            if rest[:1] in ("=", ":"):
                rest = rest[1:]
            return line[:i], rest.strip()
    return line, ""


def layered_conf(
    conf: Optional[Mapping[str, str]] = None, *, properties_file: Optional[str] = None
) -> Dict[str, str]:
    """The settings a session starts with: one properties file, then ``conf`` over it."""
    if properties_file is None:
        conf_dir = os.environ.get("SPARK_CONF_DIR")
        candidate = os.path.join(conf_dir, "spark-defaults.conf") if conf_dir else None
        properties_file = candidate if candidate and os.path.isfile(candidate) else project_conf_file()
    layered = read_properties(properties_file)
    layered.update(conf or {})
    return layered


def mxsql_home() -> str:
    """Where the embedded metastore and warehouse live: ``$MXSQL_HOME`` or ``~/.mxsql``."""
    return os.path.abspath(os.path.expanduser(os.environ.get("MXSQL_HOME", "~/.mxsql")))


def _catalog_defaults(conf: Mapping[str, str]) -> Dict[str, str]:
    home = mxsql_home()
    defaults = {
        "spark.sql.catalogImplementation": "hive",
        "spark.sql.warehouse.dir": os.path.join(home, "warehouse"),
    }
    url_keys = ("spark.hadoop.javax.jdo.option.ConnectionURL", "javax.jdo.option.ConnectionURL")
    if not any(k in conf for k in url_keys):
        db = os.path.join(home, "metastore_db")
        defaults["spark.hadoop.javax.jdo.option.ConnectionURL"] = (
            f"jdbc:derby:;databaseName={db};create=true"
        )
        # derby.log beside the database, not in whatever directory the user is in.
        defaults["spark.driver.extraJavaOptions"] = f"-Dderby.system.home={home}"
    return defaults


def _derby_database(conf: Mapping[str, str]) -> Optional[str]:
    """The embedded Derby database directory the metastore will open, if it is one."""
    url = conf.get("spark.hadoop.javax.jdo.option.ConnectionURL") or conf.get(
        "javax.jdo.option.ConnectionURL", "")
    prefix = "jdbc:derby:"
    if not url.startswith(prefix) or url.startswith(prefix + "//"):  # //host: a Derby server
        return None
    for part in url[len(prefix):].split(";"):
        if part.startswith("databaseName="):
            return part[len("databaseName="):]
    return url[len(prefix):].split(";", 1)[0] or None


def check_catalog_free(database: str) -> None:
    """Raise CatalogInUseError when another process has the Derby ``database`` open.

    Embedded Derby holds an exclusive lock on ``dbex.lck`` in the database directory
    while it is booted; a second process would otherwise retry for half a minute and
    print thousands of lines of Derby and DataNucleus traces before failing.
    """
    lock_file = os.path.join(database, "dbex.lck")
    try:
        fd = os.open(lock_file, os.O_RDWR)
    except FileNotFoundError:
        return  # not booted by anyone (or not created yet)
    try:
        # The same POSIX record lock Java's FileChannel.tryLock takes.
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        raise CatalogInUseError(
            f"the catalog under $MXSQL_HOME ({database}) is in use by another process (an "
            "mxsql shell or mxsql-thriftserver): its embedded Derby metastore admits one "
            "process at a time. Stop that process, set MXSQL_HOME to another directory, or "
            "share one catalog through a PostgreSQL metastore (README, \"Catalog tables\": "
            "the spark.hadoop.javax.jdo.option.* keys in spark-defaults.conf)"
        ) from e
    finally:
        os.close(fd)  # also drops the lock, if this process took it


def _prepare_environment(master: str) -> None:
    # Workers must run this interpreter, which has mxsql installed, not the first
    # python3 on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if master.startswith("local") and "SPARK_LOCAL_IP" not in os.environ:
        # Here the host name resolves to an external interface: keep a local driver's
        # ports (RPC, block manager, UI) on loopback.
        os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"


def build_session(
    conf: Optional[Mapping[str, str]] = None,
    *,
    master: Optional[str] = None,
    app_name: str = "mxsql",
    properties_file: Optional[str] = None,
    register: bool = True,
    defaults: Optional[Mapping[str, str]] = None,
):
    """A Hive-enabled SparkSession with the mx functions registered.

    ``conf`` holds the command line's settings; they override the properties file.
    ``defaults`` are the caller's fallbacks, used where neither sets a key (the
    shell's progress bar follows the terminal this way). Raises ConfigError for a
    malformed ``spark.mxsql.*`` setting, CatalogInUseError when another process has the
    embedded metastore open.
    """
    settings = layered_conf(conf, properties_file=properties_file)
    for key, value in (defaults or {}).items():
        settings.setdefault(key, value)
    master = master or settings.get("spark.master") or "local[*]"
    settings["spark.master"] = master  # else a spark.master in the file beats --master
    _prepare_environment(master)
    if master.startswith("local") and "spark.driver.bindAddress" not in settings:
        settings["spark.driver.host"] = settings.get("spark.driver.host", "127.0.0.1")
    for key, value in _catalog_defaults(settings).items():
        settings.setdefault(key, value)
    os.makedirs(mxsql_home(), exist_ok=True)
    from mxsql.registry.jvmcache import with_archive

    settings = with_archive(settings)  # the JVM start-up archive, once built (README)

    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    database = _derby_database(settings)
    # A context this process already runs is reused (its JVM may hold the lock itself).
    if database is not None and SparkContext._active_spark_context is None:
        check_catalog_free(database)

    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.enableHiveSupport().getOrCreate()
    if register:
        from mxsql.registry.catalog import register_all

        register_all(spark)
    return spark
