"""The driver JVM's class-data-sharing archive (``registry/jvmcache.py``): keyed, built once
under a lock, verified, never used stale or damaged, and off on request."""

import fcntl
import logging
import os
import shutil
import subprocess
import sys

import pytest

from mxsql.registry import jvmcache
from mxsql.registry.session import layered_conf

EXTRA = "spark.driver.extraJavaOptions"


@pytest.fixture
def archive_on(monkeypatch):
    """The switch on (tests/conftest.py turns it off), and no JVM of this process in the way."""
    monkeypatch.setenv(jvmcache.SWITCH, "on")
    monkeypatch.setattr(jvmcache, "_jvm_running", lambda: False)


@pytest.fixture
def builds(monkeypatch):
    """Background builds the code under test starts, recorded instead of run."""
    started = []
    monkeypatch.setattr(jvmcache.subprocess, "Popen",
                        lambda command, **kwargs: started.append((command, kwargs)))
    return started


def _settings(cache_dir, **conf):
    return {"spark.mxsql.cacheDir": str(cache_dir), **conf}


def _fake_archive(spec):
    """An archive file the build would have verified (the JVM-level checks are below)."""
    os.makedirs(spec.directory, exist_ok=True)
    with open(spec.path, "wb") as f:
        f.write(b"\0" * 4096)
    jvmcache._record(spec, spec.path)


def test_key_follows_the_class_path_and_its_jars(tmp_path):
    jar = tmp_path / "driver.jar"
    jar.write_bytes(b"x" * 10)
    plain = jvmcache.archive_spec({}, str(tmp_path))
    with_jar = jvmcache.archive_spec({"spark.driver.extraClassPath": str(jar)}, str(tmp_path))
    jar.write_bytes(b"x" * 20)
    changed_jar = jvmcache.archive_spec({"spark.driver.extraClassPath": str(jar)}, str(tmp_path))
    assert len({plain.key, with_jar.key, changed_jar.key}) == 3
    assert plain.path == os.path.join(str(tmp_path), "jvm", f"driver-{plain.key}.jsa")


def test_key_ignores_system_properties_and_logging_but_not_heap_or_gc(tmp_path):
    def key(options):
        return jvmcache.archive_spec({EXTRA: options}, str(tmp_path)).key

    base = key("")
    assert key("-Dderby.system.home=/x -Dhive.server2.authentication.ldap.url=ldap://h "
               "-Xlog:class+load:file=/tmp/l") == base
    assert key("-Xmx48g") != base
    assert key("-XX:+UseParallelGC") != base


def test_options_that_manage_sharing_themselves_are_left_alone(tmp_path, archive_on, builds):
    settings = _settings(tmp_path, **{EXTRA: "-Xshare:off"})
    assert jvmcache.archive_spec(settings, str(tmp_path)) is None
    assert jvmcache.with_archive(settings) == settings
    assert builds == []


def test_off_switch_neither_uses_nor_builds(tmp_path, archive_on, builds, monkeypatch):
    settings = _settings(tmp_path)
    _fake_archive(jvmcache.archive_spec(settings, str(tmp_path)))
    monkeypatch.setenv(jvmcache.SWITCH, "off")
    assert jvmcache.with_archive(settings) == settings
    os.remove(jvmcache.archive_spec(settings, str(tmp_path)).path)
    assert jvmcache.with_archive(settings) == settings
    assert builds == []


def test_archive_is_mapped_after_the_options_already_set(tmp_path, archive_on, builds):
    settings = _settings(tmp_path, **{EXTRA: "-Dderby.system.home=/h"})
    spec = jvmcache.archive_spec(settings, str(tmp_path))
    _fake_archive(spec)
    options = jvmcache.with_archive(settings)[EXTRA]
    assert options.startswith("-Dderby.system.home=/h ")
    assert f"-XX:SharedArchiveFile={spec.path}" in options
    # Never a JVM that crashes on a damaged archive, nor one that prints on stdout.
    assert "-XX:+VerifySharedSpaces" in options and "-Xlog:cds*=off" in options
    assert builds == []


@pytest.mark.parametrize("damage", ["truncate", "rewrite"])
def test_changed_archive_is_not_used_and_a_build_starts(tmp_path, archive_on, builds, damage):
    settings = _settings(tmp_path)
    spec = jvmcache.archive_spec(settings, str(tmp_path))
    _fake_archive(spec)
    if damage == "truncate":  # a JVM crashes (SIGBUS) mapping a truncated archive
        os.truncate(spec.path, 1024)
    else:
        with open(spec.path, "r+b") as f:
            f.seek(100)
            f.write(b"garbage")
        st = os.stat(spec.path)
        os.utime(spec.path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert jvmcache.with_archive(settings) == settings
    (command, kwargs), = builds
    assert command[1:4] == ["-m", "mxsql.registry.jvmcache", "--spec"]
    assert kwargs["start_new_session"] and kwargs["env"][jvmcache.SWITCH] == "off"


def test_one_build_at_a_time(tmp_path, archive_on, builds):
    settings = _settings(tmp_path)
    spec = jvmcache.archive_spec(settings, str(tmp_path))
    os.makedirs(spec.directory)
    with open(spec.lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a build in progress
        assert jvmcache.with_archive(settings) == settings
        assert builds == []
        assert jvmcache.build(spec) is False
    jvmcache.with_archive(settings)
    assert len(builds) == 1


def test_failed_build_costs_one_warning_and_no_retry(tmp_path, archive_on, builds, monkeypatch,
                                                     caplog):
    def broken(spec, archive, work):
        with open(archive, "wb") as f:
            f.write(b"half")
        raise RuntimeError("the archive's mxsql run failed with exit code 1")

    monkeypatch.setattr(jvmcache, "_dump", broken)
    settings = _settings(tmp_path)
    spec = jvmcache.archive_spec(settings, str(tmp_path))
    with pytest.raises(RuntimeError):
        jvmcache.build(spec)
    assert not os.path.exists(spec.path)
    assert [n for n in os.listdir(spec.directory) if ".tmp" in n or n.startswith("build-")] == []
    with caplog.at_level(logging.WARNING, logger="mxsql.jvmcache"):
        assert jvmcache.with_archive(settings) == settings
        assert jvmcache.with_archive(settings) == settings
    warnings = [r.getMessage() for r in caplog.records if r.name == "mxsql.jvmcache"]
    assert len(warnings) == 1 and "exit code 1" in warnings[0]
    assert builds == []


# ---- with a real archive: one build, shared by the tests below ---------------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(cache dir, spec) of an archive built in the foreground, as an operator would."""
    cache = str(tmp_path_factory.mktemp("jvm-cache"))
    conf = {"spark.mxsql.cacheDir": cache}
    assert jvmcache.main(["--conf", f"spark.mxsql.cacheDir={cache}"]) == 0
    return cache, jvmcache.archive_spec(layered_conf(conf), cache)


def _mxsql(cache, home, env_switch, extra_options, sql):
    env = {**os.environ, jvmcache.SWITCH: env_switch, "MXSQL_HOME": home}
    command = [os.path.join(os.path.dirname(sys.executable), "mxsql"), "-S",
               "--conf", f"spark.mxsql.cacheDir={cache}", "--conf", f"{EXTRA}={extra_options}",
               "-e", sql]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_built_archive_is_keyed_verified_and_complete(built):
    cache, spec = built
    assert os.path.isfile(spec.path) and jvmcache._usable(spec)
    left = [n for n in os.listdir(spec.directory) if ".tmp" in n or n.startswith("build-")]
    assert left == []


@pytest.mark.slow
def test_shell_maps_the_archive_and_prints_the_same(built, tmp_path):
    cache, spec = built
    sql = ("SELECT 1, 'a', CAST(NULL AS INT), array(1, 2), named_struct('x', 1.5D); "
           "SELECT date'2020-01-01', 10 / 4; SHOW DATABASES")
    loaded = tmp_path / "classes.log"
    shared = _mxsql(cache, str(tmp_path / "h1"), "on",
                    f"-Xlog:class+load:file={loaded}", sql)
    plain = _mxsql(cache, str(tmp_path / "h2"), "off", "", sql)
    assert shared.returncode == 0, shared.stderr
    assert shared.stdout == plain.stdout
    assert "source: shared objects file (top)" in loaded.read_text()


@pytest.mark.slow
def test_damaged_archive_the_size_check_cannot_see_is_refused_by_the_jvm(built, tmp_path):
    cache, spec = built
    damaged = str(tmp_path / "damaged.jsa")
    shutil.copyfile(spec.path, damaged)
    with open(damaged, "r+b") as f:  # same size: only the JVM's own CRC check sees it
        f.seek(os.path.getsize(damaged) // 2)
        f.write(os.urandom(1 << 20))
    copy = jvmcache.ArchiveSpec(str(tmp_path), spec.key, spec.class_path, spec.java_options,
                                spec.driver_memory)
    shutil.move(damaged, copy.path)
    options = jvmcache.use_options(copy)
    from pyspark.find_spark_home import _find_spark_home

    run = subprocess.run(
        [os.path.join(_find_spark_home(), "bin", "spark-submit"),
         *jvmcache._driver_conf(copy, options), "--version"],
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "cds" not in run.stdout
