"""The driver JVM's class-data-sharing archive: Spark's classes, loaded once per machine.

Every ``mxsql`` run is a fresh JVM that loads, parses and verifies the same ~20,000
classes of Spark, Hive and their libraries before its first query. Java 17 can dump the
classes one run loaded into a dynamic CDS archive (``-XX:ArchiveClassesAtExit``) that
later JVMs map instead (``-XX:SharedArchiveFile``): a one-shot ``mxsql -e`` starts
seconds sooner.

The archive is built once per machine and key, in the background, by a low-priority
process that runs a small representative ``mxsql`` script in a throw-away catalog; the
run that found no archive starts without one, and so loses nothing. The key covers what
the JVM checks before it maps an archive (the Java build, every jar on the class path
with its size and time, the JVM options that matter) so a stale or foreign archive is
never offered to it. A JVM maps a truncated or damaged archive and crashes (checked on
Java 17.0.15), so an archive is used only when its size and time still match what the
build recorded, and with ``-XX:+VerifySharedSpaces`` (a CRC of every region). A failed
build costs speed only: one warning line, then no new attempt for a day.

``MXSQL_JVM_ARCHIVE=off`` in the environment turns all of it off. ``python -m
mxsql.registry.jvmcache`` builds the archive in the foreground (for a machine image).
"""

import argparse
import fcntl
import glob
import hashlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Dict, List, Mapping, Optional, Tuple

__all__ = ["SWITCH", "ArchiveSpec", "archive_spec", "use_options", "with_archive", "build"]

SWITCH = "MXSQL_JVM_ARCHIVE"
# What the build script and the options below look like; a change gives a new key.
_FORMAT = 1
_RETRY_AFTER_S = 24 * 3600
_BUILD_TIMEOUT_S = 1800
_EXTRA = "spark.driver.extraJavaOptions"
_DEFAULT_OPTS = "spark.driver.defaultJavaOptions"
_CLASS_PATH = "spark.driver.extraClassPath"
_MEMORY = "spark.driver.memory"
# Options that say the user manages class-data sharing themselves.
_USER_CDS = ("-XX:SharedArchiveFile", "-XX:ArchiveClassesAtExit", "-Xshare")
# Environment the launcher puts on the driver's class path.
_CLASS_PATH_ENV = ("SPARK_CONF_DIR", "HADOOP_CONF_DIR", "YARN_CONF_DIR", "SPARK_DIST_CLASSPATH")
# The warnings of a JVM that cannot map an archive go to stdout, which must stay
# spark-sql's: they are turned off (the build verifies the archive instead).
_QUIET = "-Xlog:cds*=off"

_log = logging.getLogger("mxsql.jvmcache")


@dataclass(frozen=True)
class ArchiveSpec:
    """Where one archive lives and what its driver JVM is started with."""

    directory: str
    key: str
    class_path: Optional[str]  # spark.driver.extraClassPath
    java_options: Tuple[str, ...]  # the options that are part of the key
    driver_memory: Optional[str]

    def _file(self, suffix: str) -> str:
        return os.path.join(self.directory, f"driver-{self.key}{suffix}")

    @property
    def path(self) -> str:
        return self._file(".jsa")

    @property
    def meta_path(self) -> str:
        return self._file(".json")

    @property
    def lock_path(self) -> str:
        return self._file(".lock")

    @property
    def log_path(self) -> str:
        return self._file(".log")

    @property
    def failed_path(self) -> str:
        return self._file(".failed")


def _enabled() -> bool:
    return os.environ.get(SWITCH, "on").strip().lower() not in ("off", "false", "0", "no")


def _java_home() -> Optional[str]:
    """The JDK spark-class runs: ``$JAVA_HOME``, else the ``java`` on PATH."""
    if os.environ.get("JAVA_HOME"):
        return os.path.realpath(os.environ["JAVA_HOME"])
    java = shutil.which("java")
    return os.path.dirname(os.path.dirname(os.path.realpath(java))) if java else None


def _stat(path: str) -> Optional[Tuple[int, int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _class_path_entries(class_path: str) -> List[Tuple[str, object]]:
    """Each entry (a ``dir/*`` expanded as the JVM does) with its size and time."""
    entries = []
    for entry in filter(None, class_path.split(os.pathsep)):
        paths = sorted(glob.glob(entry[:-1] + "*.jar")) if entry.endswith("*") else [entry]
        entries += [(path, _stat(path)) for path in paths]
    return entries


def _key_options(settings: Mapping[str, str]) -> Tuple[str, ...]:
    """The JVM options that can change what an archive holds or whether it maps.

    System properties do not, except the JVM's own (``java.*``, ``jdk.*``), nor do logging
    options: LDAP or Derby properties must not split the shell's and the server's archives.
    """
    tokens = []
    for key in (_DEFAULT_OPTS, _EXTRA):
        tokens += shlex.split(settings.get(key, ""))
    return tuple(t for t in tokens
                 if not t.startswith(("-D", "-Xlog", "-verbose"))
                 or t.startswith(("-Djava.", "-Djdk.")))


def archive_spec(settings: Mapping[str, str], cache_dir: str) -> Optional[ArchiveSpec]:
    """The archive for a driver started with ``settings``; None when there can be none.

    None when the options already manage class-data sharing, or when no Java can be found.
    """
    options = _key_options(settings)
    if any(t.startswith(_USER_CDS) for t in options):
        return None
    java_home = _java_home()
    if java_home is None:
        return None
    from pyspark.find_spark_home import _find_spark_home

    spark_home = _find_spark_home()
    class_path = settings.get(_CLASS_PATH)
    memory = settings.get(_MEMORY) or os.environ.get("SPARK_DRIVER_MEMORY")
    identity = {
        "format": _FORMAT,
        "java": java_home,
        "java_release": _read(os.path.join(java_home, "release")),
        "libjvm": _stat(os.path.join(java_home, "lib", "server", "libjvm.so")),
        "spark_home": spark_home,
        "jars": _class_path_entries(os.path.join(spark_home, "jars", "*")),
        "extra_class_path": _class_path_entries(class_path or ""),
        "env": {name: os.environ.get(name) for name in _CLASS_PATH_ENV},
        "options": options,
        "memory": memory,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    directory = os.path.join(os.path.expanduser(cache_dir), "jvm")
    return ArchiveSpec(directory, digest[:20], class_path, options, memory)


def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _usable(spec: ArchiveSpec) -> bool:
    """The archive is there and is still the file its build verified."""
    try:
        with open(spec.meta_path, encoding="utf-8") as f:
            recorded = json.load(f)
    except (OSError, ValueError):
        return False
    stat = _stat(spec.path)
    return stat is not None and recorded == {"key": spec.key, "size": stat[0],
                                             "mtime_ns": stat[1]}


def _record(spec: ArchiveSpec, archive: str) -> None:
    """Remember the size and time of the verified ``archive`` (renamed to ``spec.path``)."""
    stat = os.stat(archive)
    meta = {"key": spec.key, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    with open(spec.meta_path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(meta, f)
    os.replace(spec.meta_path + ".tmp", spec.meta_path)


def use_options(spec: ArchiveSpec) -> List[str]:
    """The JVM options that map ``spec``'s archive."""
    return [f"-XX:SharedArchiveFile={spec.path}", "-Xshare:auto", "-XX:+VerifySharedSpaces",
            _QUIET]


def with_archive(settings: Dict[str, str]) -> Dict[str, str]:
    """``settings`` with the driver JVM mapping this machine's archive, when it has one.

    The archive lives under ``spark.mxsql.cacheDir``. Without one, a background build
    starts (one at a time) and ``settings`` come back as they are. Never raises: the
    archive only saves time.
    """
    from mxsql.udfs.config import parse_settings
    from mxsql.udfs.errors import ConfigError

    try:
        cache_dir = parse_settings(settings).cache_dir
    except ConfigError:
        return settings  # the run fails on it at registration, with its own message
    try:
        if not _enabled() or _jvm_running():
            return settings
        spec = archive_spec(settings, cache_dir)
        if spec is None:
            return settings
        if _usable(spec):
            extra = " ".join(
                [settings.get(_EXTRA, ""), *map(shlex.quote, use_options(spec))]).strip()
            return {**settings, _EXTRA: extra}
        _start_build(spec)
    except Exception as e:  # noqa: BLE001 - a start-up cache must never fail a run
        _log.warning("mxsql: the JVM start-up archive is not used (%s: %s)",
                     type(e).__name__, e)
    return settings


def _jvm_running() -> bool:
    """A JVM is up already (a context in this process, or launched by spark-submit)."""
    from pyspark import SparkContext

    return SparkContext._gateway is not None or "PYSPARK_GATEWAY_PORT" in os.environ


def _failed_recently(spec: ArchiveSpec) -> bool:
    """A build failed less than a day ago; the first run to see it says so once."""
    seen = spec.failed_path + "-seen"
    for path in (spec.failed_path, seen):
        stat = _stat(path)
        if stat is None or time.time() - stat[1] / 1e9 > _RETRY_AFTER_S:
            continue
        if path == spec.failed_path:
            try:
                os.replace(path, seen)
            except OSError:
                return True  # another run reported it
            reason = (_read(seen) or f"see {spec.log_path}").strip()
            _log.warning("mxsql: the JVM start-up archive could not be built (%s); runs start "
                         "without it, and the build is tried again in a day. %s=off stops "
                         "trying.", reason, SWITCH)
        return True
    return False


def _start_build(spec: ArchiveSpec) -> None:
    """Start the build in a detached process at the lowest CPU priority, unless one runs."""
    os.makedirs(spec.directory, exist_ok=True)
    if _failed_recently(spec) or _build_running(spec):
        return
    with open(spec.log_path, "ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "mxsql.registry.jvmcache", "--spec", json.dumps(asdict(spec))],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_lowest_priority,
            env={**os.environ, SWITCH: "off"},
        )
    _log.debug("building the JVM start-up archive %s in the background", spec.path)


def _build_running(spec: ArchiveSpec) -> bool:
    with open(spec.lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False


def _lowest_priority() -> None:
    """Run the build (and the JVM it starts) only on CPU time nothing else wants."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)


def build(spec: ArchiveSpec) -> bool:
    """Build and verify ``spec``'s archive under its lock; False when another build runs.

    The archive is dumped to a temporary name by the JVM of a representative ``mxsql``
    run in a throw-away catalog, mapped with ``-Xshare:on`` by ``spark-submit --version``
    (which fails if it cannot), and only then renamed into place. Raises on failure,
    after recording it so that runs stop trying for a day.
    """
    os.makedirs(spec.directory, exist_ok=True)
    with open(spec.lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        if _usable(spec):
            return True
        for leftover in glob.glob(spec.path + ".tmp-*"):
            os.remove(leftover)  # a build that was killed
        tmp = f"{spec.path}.tmp-{os.getpid()}"
        work = tempfile.mkdtemp(prefix="build-", dir=spec.directory)
        try:
            _dump(spec, tmp, work)
            _verify(spec, tmp)
            _record(spec, tmp)
            os.replace(tmp, spec.path)
            for marker in (spec.failed_path, spec.failed_path + "-seen"):
                if os.path.exists(marker):
                    os.remove(marker)
        except Exception as e:
            with open(spec.failed_path, "w", encoding="utf-8") as f:
                f.write(f"{type(e).__name__}: {e}; see {spec.log_path}\n")
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
            if os.path.exists(tmp):
                os.remove(tmp)
    return True


def _driver_conf(spec: ArchiveSpec, extra: List[str]) -> List[str]:
    """``--conf`` arguments that start a driver as the user's, plus ``extra`` options."""
    options = " ".join(map(shlex.quote, [*spec.java_options, *extra]))
    args = ["--conf", f"{_EXTRA}={options}"]
    if spec.class_path:
        args += ["--conf", f"{_CLASS_PATH}={spec.class_path}"]
    if spec.driver_memory:
        args += ["--conf", f"{_MEMORY}={spec.driver_memory}"]
    return args


def _dump(spec: ArchiveSpec, archive: str, work: str) -> None:
    """Run a small ``mxsql`` script whose JVM dumps the classes it loaded to ``archive``.

    It starts the session and the metastore, creates a table from files through a
    Python UDF and reads it back: the classes of a typical first query. The catalog is
    a fresh one in ``work``, never the user's. The JVM dumps when it exits, after the
    shell; the run ends when the JVM closes the output pipe it inherited.
    """
    from PIL import Image

    from mxsql.registry.session import project_conf_file

    images = os.path.join(work, "images")
    os.makedirs(images)
    for i, size in enumerate([(8, 6), (5, 7)]):
        Image.new("RGB", size, (i * 90, 40, 200)).save(os.path.join(images, f"{i}.png"))
    script = os.path.join(work, "warm.sql")
    with open(script, "w", encoding="utf-8") as f:
        f.write(
            "SELECT 1;\n"
            "CREATE TABLE images AS SELECT path, length(content) AS bytes,"
            f" mx_image_info(content).width AS width FROM binaryFile.`{images}`;\n"
            "SELECT count(*), max(width) FROM images;\n"
            "SHOW TABLES;\n"
        )
    command = [
        sys.executable, "-m", "mxsql.registry.shell", "-S",
        "--properties-file", project_conf_file(),
        "--conf", "spark.ui.showConsoleProgress=false",
        *_driver_conf(spec, [f"-XX:ArchiveClassesAtExit={archive}", _QUIET]),
        "-f", script,
    ]
    env = {**os.environ, "MXSQL_HOME": os.path.join(work, "home"), SWITCH: "off"}
    env.pop("SPARK_CONF_DIR", None)  # the user's metastore settings stay out of it
    run = subprocess.run(command, cwd=work, env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=_BUILD_TIMEOUT_S)
    sys.stdout.write(run.stdout.decode("utf-8", "replace"))
    if run.returncode != 0:
        raise RuntimeError(f"the archive's mxsql run failed with exit code {run.returncode}")
    if not os.path.isfile(archive):
        raise RuntimeError("the JVM wrote no archive")


def _verify(spec: ArchiveSpec, archive: str) -> None:
    """Map ``archive`` with ``-Xshare:on`` in a driver JVM, which fails if it cannot."""
    from pyspark.find_spark_home import _find_spark_home

    submit = os.path.join(_find_spark_home(), "bin", "spark-submit")
    options = [f"-XX:SharedArchiveFile={archive}", "-Xshare:on", "-XX:+VerifySharedSpaces"]
    run = subprocess.run([submit, *_driver_conf(spec, options), "--version"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, timeout=300)
    if run.returncode != 0:
        tail = run.stdout.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise RuntimeError(f"a JVM cannot map the archive it just wrote: {' / '.join(tail)}")


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m mxsql.registry.jvmcache``: build this machine's archive now."""
    parser = argparse.ArgumentParser(
        prog="python -m mxsql.registry.jvmcache",
        description="Build the driver JVM's class-data-sharing archive that mxsql and "
                    "mxsql-thriftserver start with (otherwise built in the background by "
                    "the first run).")
    parser.add_argument("--properties-file", help="the spark-defaults.conf the runs use")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--spec", help=argparse.SUPPRESS)  # the background build's
    args = parser.parse_args(argv)
    if args.spec:
        spec = ArchiveSpec(**{k: tuple(v) if isinstance(v, list) else v
                              for k, v in json.loads(args.spec).items()})
    else:
        from mxsql.registry.options import key_value_pairs
        from mxsql.registry.session import layered_conf

        settings = layered_conf(dict(key_value_pairs("--conf", args.conf)),
                                properties_file=args.properties_file)
        from mxsql.udfs.config import parse_settings

        spec = archive_spec(settings, parse_settings(settings).cache_dir)
        if spec is None:
            print("no archive: the driver's options manage class-data sharing, or no "
                  "Java was found", file=sys.stderr)
            return 1
    started = time.monotonic()
    if not build(spec):
        print(f"another process is building {spec.path}", file=sys.stderr)
        return 1
    print(f"{spec.path} ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
