"""Shared fixtures: one real SparkSession with Hive support, real models, real images.

Tests that need other static Spark settings (a cluster master, a single-session Thrift
server) start their own process instead of changing this session.
"""

import contextlib
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
# Sessions and shells started by tests use temporary cache directories: building a JVM
# start-up archive in each would only load the machine. tests/test_jvm_archive.py turns
# it on where it is tested.
os.environ.setdefault("MXSQL_JVM_ARCHIVE", "off")

from demo import digits as digits_demo  # noqa: E402
from demo import zoo  # noqa: E402


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="session")
def digits(artifacts_dir):
    """(prefix, held-out PNG paths) of the digits model trained on real handwriting."""
    return digits_demo.build(os.path.join(artifacts_dir, "digits"))


@pytest.fixture(scope="session")
def resnet18(artifacts_dir):
    """Prefix of a ResNet-18 checkpoint exported with random weights."""
    return zoo.export_resnet18(os.path.join(artifacts_dir, "resnet18"))


@pytest.fixture(scope="session")
def mxsql_home(tmp_path_factory):
    home = str(tmp_path_factory.mktemp("mxsql-home"))
    os.environ["MXSQL_HOME"] = home
    return home


@pytest.fixture(scope="session")
def spark(digits, resnet18, mxsql_home, artifacts_dir):
    """A local[2] Hive-enabled session; 'default' is the digits model, 'resnet18' ResNet-18."""
    from mxsql.registry.session import build_session

    conf = {
        **digits_demo.model_conf(digits[0]),
        **zoo.model_conf(resnet18),
        "spark.mxsql.cacheDir": os.path.join(artifacts_dir, "cache"),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": "4",
    }
    session = build_session(conf, master="local[2]", app_name="mxsql-tests")
    yield session
    session.stop()


@pytest.fixture
def mx_conf(spark):
    """Set spark.mxsql.* keys and re-register the functions; undone after the test."""
    from mxsql.registry import register_all

    changed = []

    def set_conf(settings):
        for key, value in settings.items():
            changed.append((key, spark.conf.get(key, None)))
            spark.conf.set(key, value)
        return register_all(spark)

    yield set_conf
    _restore_conf(spark, changed)


@pytest.fixture(scope="session")
def mx_conf_while(spark):
    """For module-scoped fixtures, which cannot use ``mx_conf``: ``with
    mx_conf_while(settings):`` sets spark.mxsql.* keys and re-registers the functions,
    and undoes both at the block's end."""
    from mxsql.registry import register_all

    @contextlib.contextmanager
    def while_set(settings):
        old = [(key, spark.conf.get(key, None)) for key in settings]
        try:
            for key, value in settings.items():
                spark.conf.set(key, value)
            yield register_all(spark)
        finally:
            _restore_conf(spark, old)

    return while_set


def _restore_conf(spark, old):
    """Put back each (key, value before) of ``old``, last set first, and re-register."""
    from mxsql.registry import register_all

    for key, value in reversed(old):
        if value is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, value)
    register_all(spark)


@pytest.fixture(scope="session")
def digits_table(spark, digits):
    """Temporary view `digits` over the held-out digit PNGs, read with binaryFile."""
    prefix, test_paths = digits
    folder = os.path.dirname(os.path.dirname(test_paths[0]))
    spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(folder) \
        .createOrReplaceTempView("digits")
    return "digits"
