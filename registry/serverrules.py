"""What a JDBC connection to ``mxsql-thriftserver`` may do: the server's rules.

A connection reads its images and tables and nothing else of the server's machine:

- files are read or written by path only under the warehouse and the prefixes of
  ``spark.mxsql.server.allowedPaths`` (``format.`path``` queries, ``CREATE … USING …
  OPTIONS (path …)``, ``LOCATION``, ``INSERT OVERWRITE DIRECTORY``, ``LOAD DATA``, an
  ``mxsql_s3`` view's path);
- ``reflect``, ``java_method`` and ``try_reflect`` (any Java method), ``ADD JAR|FILE|
  ARCHIVE`` and ``CREATE FUNCTION`` of a Java class (code loaded into the server; Hive's
  own reflect UDF is on the class path) are refused;
- script transforms (``TRANSFORM … USING 'command'``, which run shell commands on the
  server) are refused;
- data sources other than file formats (whose paths are checked), Hive tables and the
  server's own Python data sources (``mxsql_s3``) are refused, by whatever name or class
  the statement gives them: ``jdbc`` (network, and with Derby's embedded URLs files
  anywhere), streaming and state sources, any other class on the class path;
- ``ALTER TABLE … SET SERDE|SERDEPROPERTIES`` (a data source table's options: its JDBC
  URL) is refused;
- ``SET`` of a key that changes these rules or where models come from is refused, as are
  keys that reach Hadoop, Hive or Parquet (any key outside ``spark.*`` but Hive's
  harmless ``hive.server2.*``, ``hivevar:``/``hiveconf:`` variables and
  ``mapred.reduce.tasks``, and ``spark.hadoop.*``); a malformed ``SET spark.mxsql.…``
  fails at once naming the key. The same keys given in the connection's settings when it
  connects (a JDBC URL's ``?key=value`` or PyHive's ``configuration``, which Spark applies
  without a SET) refuse every statement of that connection.

The rules run where Spark analyses each statement (an injected check rule), in the
connection that sent it: the statement fails with one message, the server and the other
connections carry on. Paths are compared after normalising them (``..``, symbolic links,
``file:`` forms, the default file system for paths without a scheme), never by matching
the plan's text. The ``mxsql`` shell, one local user over their own files, has no rules.
"""

import os
import posixpath
import re
import threading
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

from mxsql.udfs.config import MODEL_PREFIX, PREFIX, Settings, global_keys, parse_settings
from mxsql.udfs.errors import ConfigError

__all__ = [
    "ALLOWED_PATHS_KEY",
    "REFUSED_FUNCTIONS",
    "Location",
    "PathRules",
    "set_problem",
    "connection_set_problem",
    "ServerRules",
]

ALLOWED_PATHS_KEY = PREFIX + "server.allowedPaths"
REFUSED_FUNCTIONS = ("reflect", "java_method", "try_reflect")
SERVER = "mxsql-thriftserver"

# One namespace for the schemes that reach the same objects.
_SAME_STORE = {"s3": "s3", "s3a": "s3", "s3n": "s3"}
_REMOTE = ("s3", "s3a", "s3n", "hdfs")
# Hadoop expands these in paths (GlobExpander, GlobPattern): a brace can hold "/" and "..",
# so a pattern could name folders that its text does not show. "*" and "?" match within
# one folder level only.
_GLOB_SPECIALS = re.compile(r"[{}\[\]\\]")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
# Keys whose SET would change these rules or reach code: the Hadoop file systems (the
# default one decides where a path without a scheme points; *.impl load classes) and
# catalog plugins (classes, and the stores they open).
_POLICY_KEY_PREFIXES = ("fs.", "spark.hadoop.fs.", "spark.sql.catalog.", PREFIX + "server.")


@dataclass(frozen=True)
class Location:
    """A path after normalising: ``store`` is ``file``, ``s3`` (s3, s3a, s3n) or another
    scheme; ``authority`` the bucket or name node ('' for local files); ``path`` absolute,
    with ``..`` resolved (and, for local files, symbolic links)."""

    store: str
    authority: str
    path: str

    def is_under(self, prefix: "Location") -> bool:
        if (self.store, self.authority) != (prefix.store, prefix.authority):
            return False
        base = prefix.path.rstrip("/")
        return self.path == prefix.path or self.path.startswith(base + "/")

    def __str__(self) -> str:
        if self.store == "file":
            return self.path
        return f"{self.store}://{self.authority}{self.path}"


def _split(text: str) -> Tuple[Optional[str], str, str]:
    """(scheme, authority, path) of a path or URI as Hadoop reads it."""
    match = _SCHEME.match(text)
    # A Windows drive letter is not a scheme, but the server runs on Linux.
    if match is None:
        return None, "", text
    scheme = match.group(1).lower()
    rest = text[match.end():]
    if rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        return scheme, authority, slash + path
    return scheme, "", rest


def normalise(scheme: Optional[str], authority: str, path: str, *,
              default_fs: str = "file:///", cwd: Optional[str] = None) -> Location:
    """Where ``scheme://authority/path`` points, for comparison with allowed prefixes.

    A path without a scheme is on the default file system (``fs.defaultFS``), relative
    ones under the server's working directory. Raises ValueError for what cannot be
    compared safely: a glob brace or bracket, a ``file:`` URI naming another host.
    """
    if _GLOB_SPECIALS.search(path):
        raise ValueError("glob braces, brackets and backslashes are not allowed in a path")
    if scheme is None:
        default_scheme, default_authority, _ = _split(default_fs)
        scheme, authority = default_scheme or "file", default_authority
    scheme = scheme.lower()
    if scheme == "file":
        if authority not in ("", "localhost"):
            raise ValueError(f"a file: URI names host {authority!r}")
        if not path.startswith("/"):
            path = os.path.join(cwd or os.getcwd(), path)
        return Location("file", "", os.path.realpath(path))
    if not path.startswith("/"):
        path = "/" + path
    return Location(_SAME_STORE.get(scheme, scheme), authority.lower(),
                    posixpath.normpath(path).replace("//", "/"))


def parse_location(text: str, *, default_fs: str = "file:///",
                   cwd: Optional[str] = None) -> Location:
    """``normalise`` of a path or URI given as text."""
    scheme, authority, path = _split(text.strip())
    return normalise(scheme, authority, path, default_fs=default_fs, cwd=cwd)


@dataclass(frozen=True)
class PathRules:
    """The prefixes under which a connection may read and write files by path."""

    allowed: Tuple[Location, ...]
    default_fs: str = "file:///"

    @classmethod
    def from_settings(cls, allowed_paths: Optional[str], warehouse: str, *,
                      default_fs: str = "file:///") -> "PathRules":
        """The warehouse and every entry of ``spark.mxsql.server.allowedPaths``, a comma
        list of absolute local folders and file://, s3://, s3a://, hdfs:// prefixes.
        Raises ConfigError naming the key for an entry that is none of these."""
        allowed = [parse_location(warehouse, default_fs=default_fs)]
        for entry in (allowed_paths or "").split(","):
            entry = entry.strip()
            if not entry:
                continue
            scheme, _, path = _split(entry)
            if scheme is None and not path.startswith("/"):
                raise ConfigError(
                    f"{ALLOWED_PATHS_KEY}: {entry!r} is not an absolute folder: give local "
                    "folders as absolute paths (or file:///…)"
                )
            if scheme not in (None, "file", *_REMOTE):
                raise ConfigError(
                    f"{ALLOWED_PATHS_KEY}: {entry!r} has scheme {scheme}: allowed are local "
                    "folders and file://, s3://, s3a://, hdfs:// prefixes"
                )
            try:
                allowed.append(parse_location(entry, default_fs="file:///"))
            except ValueError as e:
                raise ConfigError(f"{ALLOWED_PATHS_KEY}: {entry!r}: {e}") from e
        return cls(tuple(allowed), default_fs)

    def problem(self, scheme: Optional[str], authority: str, path: str, *,
                shown: str, action: str) -> Optional[str]:
        """Why ``action`` (e.g. "reading") of the path is refused, or None when allowed;
        ``shown`` is the path as the statement gave it."""
        try:
            location = normalise(scheme, authority, path, default_fs=self.default_fs)
        except ValueError as e:
            return f"{SERVER} forbids {action} {shown}: {e}"
        if any(location.is_under(prefix) for prefix in self.allowed):
            return None
        same = location.path == (path.rstrip("/") or "/")
        resolved = "" if same else f" (resolves to {location})"
        return (f"{SERVER} forbids {action} {shown}{resolved}: files may be read and "
                f"written by path only under the warehouse and {ALLOWED_PATHS_KEY}")


def set_problem(key: str, value: Optional[str],
                settings: Optional[Settings] = None) -> Optional[str]:
    """Why ``SET key=value`` is refused in a JDBC connection, or None when allowed.

    A settable ``spark.mxsql.*`` key must parse (the message names the key). A model's
    keys (``spark.mxsql.model.NAME.*``) may be SET only where ``settings``, the ones the
    functions were registered with, allow runtime models, and only to files under their
    allowed URIs; other ``spark.mxsql.*`` keys are the server's, as are the keys that
    change the path rules or load classes.
    """
    if value is None:
        return None
    if key.startswith(PREFIX):
        known = global_keys().get(key)
        if known is not None and known.settable:
            try:
                parse_settings({key: value})
            except ConfigError as e:
                return str(e)
            return None
        if known is None and not key.startswith(MODEL_PREFIX):
            try:
                parse_settings({key: value})
            except ConfigError as e:
                return str(e)
        if known is None:
            try:
                problem = (settings or Settings(runtime_models=False)).model_set_problem(
                    key, value)
            except ConfigError as e:
                return str(e)
            if problem is None:
                return None
            return f"{SERVER} forbids SET {key} in a connection: {problem}"
        return (f"{SERVER} forbids SET {key} in a connection: model sources, the model "
                "cache, S3 and the server's rules are the server's settings (its "
                "spark-defaults.conf or --conf)")
    if key.startswith(_POLICY_KEY_PREFIXES):
        return (f"{SERVER} forbids SET {key} in a connection: file systems and catalogs "
                "are the server's settings (its spark-defaults.conf or --conf)")
    return None


# Spark hands every session setting to the Hadoop configurations its reads and writes use
# (and Hive's: staging and scratch folders, SerDe and codec classes, Parquet's crypto
# factories), so in a connection only spark.* keys are the session's, and of those not
# spark.hadoop.*, nor the ones that hide secrets and stacks from clients or lift Spark's
# own SET limits. Hive's JDBC clients send hive.server2.* keys when they connect;
# variables and Spark's alias of spark.sql.shuffle.partitions are harmless.
_CONNECTION_KEYS = ("spark.", "hive.server2.", "hivevar:", "hiveconf:")
_SERVER_SPARK_KEYS = ("spark.hadoop.", "spark.sql.redaction.",
                      "spark.sql.legacy.setCommandRejectsSparkCoreConfs",
                      "spark.sql.execution.pyspark.udf.hideTraceback.enabled",
                      "spark.sql.pyspark.jvmStacktrace.enabled")
_HARMLESS_KEYS = ("mapred.reduce.tasks",)


def connection_set_problem(key: str, value: Optional[str],
                           settings: Optional[Settings] = None) -> Optional[str]:
    """Why ``SET key=value`` is refused in a JDBC connection, or None when allowed:
    ``set_problem``'s rules, and no keys that reach Hadoop, Hive or Parquet."""
    problem = set_problem(key, value, settings)
    if problem is not None or value is None or key in _HARMLESS_KEYS:
        return problem
    if not key.startswith(_CONNECTION_KEYS) or key.startswith(_SERVER_SPARK_KEYS):
        return (f"{SERVER} forbids SET {key} in a connection: Hadoop, Hive and Parquet "
                "settings, redaction, the stacks errors show and Spark's own limits on SET "
                "are the server's settings (its spark-defaults.conf or --conf)")
    return None


# --- the check rule over Spark's analysed plans ---------------------------------------

_DS = "org.apache.spark.sql.execution.datasources."
_CMD = "org.apache.spark.sql.execution.command."
_UNRESOLVED_RELATION = "org.apache.spark.sql.catalyst.analysis.UnresolvedRelation"
_LOGICAL = "org.apache.spark.sql.catalyst.plans.logical."
# Tables of providers that are not file formats (v2 ones: Python data sources, state).
_V2_CREATE_TABLE = tuple(_LOGICAL + name for name in (
    "CreateTable", "CreateTableAsSelect", "ReplaceTable", "ReplaceTableAsSelect"))
_HIVE = "org.apache.spark.sql.hive.execution."
_CATALOG_TABLE_OF = {  # command class -> method that returns its CatalogTable
    _CMD + "CreateDataSourceTableCommand": "table",
    _CMD + "CreateDataSourceTableAsSelectCommand": "table",
    _CMD + "CreateTableCommand": "table",
    _DS + "CreateTable": "tableDesc",
    _HIVE + "CreateHiveTableAsSelectCommand": "tableDesc",
    _HIVE + "OptimizedCreateHiveTableAsSelectCommand": "tableDesc",
}
_STORAGE_OF = (_CMD + "InsertIntoDataSourceDirCommand", _HIVE + "InsertIntoHiveDirCommand")
_REFUSED_COMMANDS = {
    _CMD + "AddJarsCommand": "ADD JAR (loading code into the server)",
    _CMD + "AddFilesCommand": "ADD FILE",
    _CMD + "AddArchivesCommand": "ADD ARCHIVE",
    _CMD + "CreateFunctionCommand":
        "CREATE FUNCTION of a Java class (with or without USING JAR: classes on the "
        "server's class path include Hive's reflect UDF)",
    _LOGICAL + "ScriptTransformation":
        "TRANSFORM … USING (script transforms run commands on the server)",
    _CMD + "AlterTableSerDePropertiesCommand":
        "ALTER TABLE … SET SERDE|SERDEPROPERTIES (a table's storage and its data source's "
        "options are set when it is created)",
}
# Data sources a connection may name (USING, CREATE TABLE … USING, INSERT … DIRECTORY):
# file formats, whose paths the rules check, Spark's no-op sink and the server's own
# Python data sources. Anything else reaches what paths do not show: jdbc (other hosts,
# and files through Derby's embedded URLs), streaming and state sources, any class.
_FILE_SOURCES = (_DS + "FileFormat", _DS + "v2.FileDataSourceV2")
_OTHER_SOURCES = (_DS + "noop.NoopDataSource", _DS + "v2.python.PythonDataSourceV2")


# An analyzer rule that calls a check and leaves the plan as it is (Rule is an abstract
# class, which py4j cannot implement; Janino is the compiler Spark ships).
_RULE_SOURCE = """
public class MxsqlCheckingRule extends org.apache.spark.sql.catalyst.rules.Rule {
    private scala.Function1 check;

    public MxsqlCheckingRule withCheck(scala.Function1 check) {
        this.check = check;
        return this;
    }

    public org.apache.spark.sql.catalyst.trees.TreeNode apply(
            org.apache.spark.sql.catalyst.trees.TreeNode plan) {
        check.apply(plan);
        return plan;
    }
}
"""
_rule_classes: dict = {}
_rule_lock = threading.Lock()


class ServerRules:
    """The check rule of one JDBC session: ``check(plan)`` throws, in the JVM, a
    ``SecurityException`` saying what the server forbids, or a malformed SET's error."""

    def __init__(self, spark, paths: PathRules, settings: Optional[Settings] = None):
        self._spark = spark
        self._jvm = spark._jvm
        self.paths = paths
        self.settings = settings  # as registered: the policy for runtime models
        # The server's own values of the keys a connection may not set, as its session
        # and a new one hold them (from spark-defaults.conf): a connection may not change
        # them.
        self._server_conf = {}
        for session in (spark._jsparkSession, spark._jsparkSession.newSession()):
            for key, value in self._conf_values(session).items():
                self._server_conf.setdefault(key, set()).add(value)
        self._source_bases = [self._jvm.java.lang.Class.forName(name)
                              for name in _FILE_SOURCES]

    def session_check(self, session):
        """The check rule of ``session`` (a JVM ``SparkSession``): ``check`` of each
        plan, after the settings the connection gave when it connected."""
        seen = {}

        def check(plan) -> None:
            self._check_session_conf(session, seen)
            self.check(plan, session)

        return check

    def file_query_check(self, session):
        """The early check of ``session``'s ``format.`path``` queries, for the analyzer's
        hint batch, which runs before Spark resolves them: Spark reads a file's footer or
        first lines to learn its schema there, and its errors (a Parquet file's last
        bytes, whether a path exists) would reach the client before the check rule
        runs. Refuses a path outside the rules; anything else is left to the check rule."""
        from mxsql.registry.callbacks import JavaThrow

        def check(plan) -> None:
            try:
                for node in self._nodes(plan):
                    if node.getClass().getName() == _UNRESOLVED_RELATION:
                        problem = self._file_query_problem(session, node)
                        if problem is not None:
                            raise self.refusal(problem)
            except JavaThrow:
                raise
            except Exception:  # noqa: BLE001 - the check rule still sees the statement
                return

        return check

    def file_query_rule(self, session):
        """``file_query_check(session)`` as the JVM analyzer ``Rule`` that the hint
        batch takes (it leaves the plan as it is)."""
        from mxsql.registry.callbacks import scala_function

        gateway = self._spark.sparkContext._gateway
        with _rule_lock:
            cls = _rule_classes.get(id(gateway))
            if cls is None:
                compiler = self._jvm.org.codehaus.janino.SimpleCompiler()
                compiler.setParentClassLoader(
                    self._jvm.org.apache.spark.util.Utils.getContextOrSparkClassLoader())
                compiler.cook(_RULE_SOURCE)
                cls = _rule_classes[id(gateway)] = \
                    compiler.getClassLoader().loadClass("MxsqlCheckingRule")
        no_types = gateway.new_array(self._jvm.java.lang.Class, 0)
        no_args = gateway.new_array(self._jvm.java.lang.Object, 0)
        return cls.getConstructor(no_types).newInstance(no_args).withCheck(
            scala_function(self._spark, self.file_query_check(session)))

    def _file_query_problem(self, session, node) -> Optional[str]:
        parts = self._seq(node.multipartIdentifier())
        if len(parts) != 2:
            return None
        provider, path = (str(part) for part in parts)
        try:
            found = self._jvm.org.apache.spark.sql.execution.datasources.DataSource \
                .lookupDataSource(provider, session.sessionState().conf())
        except Exception:  # noqa: BLE001 - not a data source: a database's table
            return None
        if not any(base.isAssignableFrom(found) for base in self._source_bases):
            return None
        problem = next(self._path_problems_of([("reading", "text", path)]), None)
        if problem is not None and session.catalog().tableExists(provider, path):
            return None  # a table in a database named like a format
        return problem

    def check(self, plan, session=None) -> None:
        """Walk ``plan`` (its children and the plans inside it: subqueries, a command's
        query) and refuse the statement at the first thing the server forbids.

        Anything the walk did not expect refuses the statement too (one line naming the
        plan node), rather than letting it through unchecked."""
        from mxsql.registry.callbacks import JavaThrow

        node = plan
        try:
            for node in self._nodes(plan):
                if node.getClass().getName() == _CMD + "SetCommand":
                    self._check_set(node)
                    continue
                problem = self._problem(node, session)
                if problem is not None:
                    raise self.refusal(problem)
        except JavaThrow:
            raise
        except Exception as e:  # py4j's message holds a Java stack: the class is enough
            raise self.refusal(f"{SERVER} could not check a {_node_name(node)} "
                               f"({type(e).__name__}), so it refuses the statement") from e

    def refusal(self, message: str, *, malformed: bool = False):
        """A ``JavaThrow`` of ``SecurityException(message)`` (``IllegalArgumentException``
        when ``malformed``): one line in any client."""
        from mxsql.registry.callbacks import JavaThrow

        lang = self._jvm.java.lang
        error = lang.IllegalArgumentException if malformed else lang.SecurityException
        return JavaThrow(error(message))

    def refuse_function(self, name: str):
        """A function builder that refuses every call of ``name``."""
        from mxsql.registry.callbacks import scala_function

        def build(_arguments):
            raise self.refusal(f"{SERVER} forbids {name}: a connection may not call Java "
                               "methods")

        return scala_function(self._spark, build)

    def _seq(self, seq) -> List:
        return list(self._jvm.scala.jdk.javaapi.CollectionConverters.asJava(seq))

    def _nodes(self, plan) -> Iterator:
        stack = [plan]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(self._seq(node.children()))
            stack.extend(self._seq(node.innerChildren()))

    def _problem(self, node, session=None) -> Optional[str]:
        name = node.getClass().getName()
        if name in _REFUSED_COMMANDS:
            return f"{SERVER} forbids {_REFUSED_COMMANDS[name]}"
        for what, provider in self._providers(node, name):
            problem = self._provider_problem(provider, what, session)
            if problem is not None:
                return problem
        return next(self._path_problems(node, name), None)

    def _check_set(self, node) -> None:
        kv = node.kv()
        if kv.isEmpty():
            return
        key, value = kv.get()._1(), kv.get()._2()
        problem = connection_set_problem(key, None if value.isEmpty() else value.get(),
                                         self.settings)
        if problem is not None:
            raise self.refusal(problem, malformed=not problem.startswith(SERVER))

    def _conf_values(self, session) -> dict:
        """The values of ``session``'s settings, read one key at a time (a value may
        hold any character, so no joined text of them could be split back safely)."""
        conf = session.conf()
        # Each key begins a line: a key holding a newline adds a line that names no key.
        keys = str(conf.getAll().keys().mkString("\n")).split("\n")
        values = {}
        for key in keys:
            if key.startswith(PREFIX) or connection_set_problem(key, "x") is not None:
                value = conf.getOption(key)
                if value.isDefined():
                    values[key] = str(value.get())
        return values

    def _check_session_conf(self, session, seen: dict) -> None:
        """Refuse the statement while ``session`` holds a setting it could not SET: the
        settings a client gives when it connects (Hive's ``set:hiveconf:`` and
        ``set:hivevar:``, a JDBC URL's ``?key=value``) reach the session without a SET."""
        conf = session.conf().getAll()
        fingerprint = (conf.size(), conf.hashCode())
        if seen.get("fingerprint") == fingerprint:
            problem = seen.get("problem")
            if problem:
                raise self.refusal(problem, malformed=not problem.startswith(SERVER))
            return
        problem = None
        for key, value in self._conf_values(session).items():
            if value in self._server_conf.get(key, ()):
                continue
            problem = connection_set_problem(key, value, self.settings)
            if problem is not None:
                problem = (f"{problem} (given in this connection's settings when it "
                           "connected: connect without it)")
                break
        seen.update(fingerprint=fingerprint, problem=problem)
        if problem is not None:
            raise self.refusal(problem, malformed=not problem.startswith(SERVER))

    def _providers(self, node, name: str) -> Iterator[Tuple[str, str]]:
        """(what, provider name) for every data source ``node`` names."""
        if name == _DS + "CreateTempViewUsing":
            yield "a view", node.provider()
        elif name in _CATALOG_TABLE_OF:
            provider = getattr(node, _CATALOG_TABLE_OF[name])().provider()
            if provider.isDefined():
                yield "a table", provider.get()
        elif name == _CMD + "InsertIntoDataSourceDirCommand":
            yield "writing a directory", node.provider()
        elif name == _CMD + "CreateTableLikeCommand" and node.provider().isDefined():
            yield "a table", node.provider().get()
        elif name in _V2_CREATE_TABLE and node.tableSpec().provider().isDefined():
            yield "a table", node.tableSpec().provider().get()

    def _provider_problem(self, provider: str, what: str, session) -> Optional[str]:
        """Why ``provider`` (a data source name or class) is refused, or None."""
        if provider.lower() == "hive":
            return None
        jvm = self._jvm
        conf = (session.sessionState().conf() if session is not None
                else jvm.org.apache.spark.sql.internal.SQLConf.get())
        try:
            found = jvm.org.apache.spark.sql.execution.datasources.DataSource \
                .lookupDataSource(provider, conf)
        except Exception:  # noqa: BLE001 - an unknown name; a Python source is allowed
            if session is not None and \
                    session.sessionState().dataSourceManager().dataSourceExists(provider):
                return None
            found = None
        if found is not None:
            if found.getName() in _OTHER_SOURCES:
                return None
            if any(base.isAssignableFrom(found) for base in self._source_bases):
                return None
        shown = provider if found is None or found.getName() == provider \
            else f"{provider} ({found.getName()})"
        return (f"{SERVER} forbids {what} USING {shown}: a connection may use file formats "
                "over allowed paths and the server's own data sources, not JDBC or other "
                "connections to other systems")

    def _path_problems(self, node, name: str) -> Iterator[str]:
        return self._path_problems_of(self._paths(node, name))

    def _path_problems_of(self, paths) -> Iterator[str]:
        for action, kind, value in paths:
            if kind == "text":
                scheme, authority, path = _split(value)
            else:  # a java.net.URI
                scheme, authority, path = value.getScheme(), value.getAuthority() or "", \
                    value.getPath() or ""
                value = path if scheme == "file" else str(value.toString())
            problem = self.paths.problem(scheme, authority, path, shown=value, action=action)
            if problem is not None:
                yield problem

    def _paths(self, node, name: str) -> Iterator[Tuple[str, str, object]]:
        """(action, "text" or "uri", path) for every path ``node`` reads or writes by path."""
        if name == _DS + "LogicalRelation":
            relation = node.relation()
            if node.catalogTable().isEmpty() and \
                    relation.getClass().getName() == _DS + "HadoopFsRelation":
                for path in self._seq(relation.location().rootPaths()):
                    yield "reading", "uri", path.toUri()
        elif name == "org.apache.spark.sql.execution.datasources.v2.DataSourceV2Relation":
            if node.identifier().isEmpty():
                options = node.options()
                for key in ("path", "paths"):
                    for path in _option_paths(options.get(key)):
                        yield "reading", "text", path
        elif name == _DS + "CreateTempViewUsing":
            options = self._jvm.scala.jdk.javaapi.CollectionConverters.asJava(node.options())
            for key in options.keySet():
                if str(key).lower() in ("path", "paths"):
                    for path in _option_paths(options.get(key)):
                        yield f"a {node.provider()} view over", "text", path
        elif name in _CATALOG_TABLE_OF:
            yield from self._table_paths(getattr(node, _CATALOG_TABLE_OF[name])())
        elif name in _STORAGE_OF:
            location = node.storage().locationUri()
            if location.isDefined():
                yield "writing to", "uri", location.get()
        elif name == _DS + "InsertIntoHadoopFsRelationCommand":
            if node.catalogTable().isEmpty():
                yield "writing to", "uri", node.outputPath().toUri()
        elif name == _CMD + "LoadDataCommand":
            path = str(node.path())
            if node.isLocal() and _split(path)[0] is None:
                path = "file:" + (path if path.startswith("/") else
                                  os.path.join(os.getcwd(), path))
            yield "LOAD DATA from", "text", path
        elif name == _CMD + "AlterTableSetLocationCommand":
            yield "a table LOCATION", "text", str(node.location())
        elif name == _CMD + "AlterTableAddPartitionCommand":
            for spec_and_location in self._seq(node.partitionSpecsAndLocs()):
                location = spec_and_location._2()
                if location.isDefined():
                    yield "a partition LOCATION", "text", str(location.get())
        elif name in _V2_CREATE_TABLE:
            spec = node.tableSpec()
            if spec.location().isDefined():
                yield "a table LOCATION", "text", str(spec.location().get())
            options = self._jvm.scala.jdk.javaapi.CollectionConverters.asJava(spec.options())
            for key in options.keySet():
                if str(key).lower() in ("path", "paths"):
                    for path in _option_paths(options.get(key)):
                        yield "a table over", "text", path
        elif name == _CMD + "CreateDatabaseCommand" and node.path().isDefined():
            yield "a database LOCATION", "text", str(node.path().get())
        elif name == _LOGICAL + "CreateNamespace":
            location = node.properties().get("location")
            if location.isDefined():
                yield "a database LOCATION", "text", str(location.get())
        elif name == _LOGICAL + "SetNamespaceLocation":
            yield "a database LOCATION", "text", str(node.location())
        elif name == _CMD + "CreateTableLikeCommand":
            location = node.fileFormat().locationUri()
            if location.isDefined():
                yield "a table LOCATION", "uri", location.get()

    def _table_paths(self, table) -> Iterator[Tuple[str, str, object]]:
        storage = table.storage()
        location = storage.locationUri()
        if location.isDefined():
            yield "a table LOCATION", "uri", location.get()
        properties = self._jvm.scala.jdk.javaapi.CollectionConverters.asJava(
            storage.properties())
        for key in properties.keySet():
            if str(key).lower() in ("path", "paths"):
                for path in _option_paths(properties.get(key)):
                    yield "a table over", "text", path


def _node_name(node) -> str:
    try:
        return str(node.getClass().getSimpleName())
    except Exception:  # noqa: BLE001 - not a JVM object after all
        return type(node).__name__


def _option_paths(value: Optional[str]) -> Sequence[str]:
    """The paths in a ``path`` option, or in a ``paths`` option (a JSON list as
    DataFrameReader writes it, else one path)."""
    if value is None:
        return ()
    text = str(value).strip()
    if text.startswith("["):
        import json

        try:
            listed = json.loads(text)
        except ValueError:
            return (text,)
        return tuple(str(p) for p in listed) if isinstance(listed, list) else (text,)
    return (text,)
