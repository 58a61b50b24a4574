"""Build the SparkSession that the shell and the Thrift server share.

Configuration is layered as Spark's is: one properties file (``--properties-file``,
else ``$SPARK_CONF_DIR/spark-defaults.conf``, else the one mxsql ships), then the
caller's ``--conf`` settings. The catalog is a Hive metastore: embedded Derby under
``$MXSQL_HOME`` (default ``~/.mxsql``) unless the configuration names another.
"""

import os
import sys
from typing import Dict, Mapping, Optional

__all__ = [
    "project_conf_file",
    "read_properties",
    "layered_conf",
    "mxsql_home",
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
    malformed ``spark.mxsql.*`` setting.
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

    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.enableHiveSupport().getOrCreate()
    if register:
        from mxsql.registry.catalog import register_all

        register_all(spark)
    return spark
