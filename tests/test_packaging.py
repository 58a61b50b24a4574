"""Installing: `pip install .` and `-e .` both give mxsql.udfs and mxsql.registry, nothing else."""

import glob
import os
import subprocess
import sys
import sysconfig
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMPORTS = (
    "import mxsql.udfs, mxsql.registry, mxsql.udfs.functions, mxsql.registry.session, os\n"
    "print(os.path.dirname(mxsql.udfs.__file__))\n"
    "import importlib.util\n"
    "assert importlib.util.find_spec('udfs') is None, 'a generic top-level udfs was installed'\n"
    "assert importlib.util.find_spec('registry') is None\n"
    "from mxsql.registry.session import project_conf_file\n"
    "assert os.path.isfile(project_conf_file()), project_conf_file()\n"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), ROOT],
                   check=True, capture_output=True)
    (path,) = glob.glob(str(out / "mxsql-*.whl"))
    return path


def test_wheel_holds_only_the_mxsql_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"mxsql"}
    assert "mxsql/registry/spark-defaults.conf" in names
    assert "mxsql/udfs/functions.py" in names
    assert "mxsql/udfs/s3/client.py" in names


def test_regular_install_imports(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), wheel], check=True, capture_output=True)
    # Dependencies come from this virtualenv's site-packages, put on the path without its
    # .pth files, so the editable install of the work tree cannot answer the imports.
    deps = sysconfig.get_paths()["purelib"]
    env = {**os.environ, "PYTHONPATH": f"{target}{os.pathsep}{deps}"}
    done = subprocess.run([str(venv / "bin" / "python"), "-c", IMPORTS], env=env, cwd=str(tmp_path),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(target / "mxsql" / "udfs")


def test_editable_install_imports(tmp_path):
    done = subprocess.run([sys.executable, "-c", IMPORTS], cwd=str(tmp_path),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == os.path.join(ROOT, "udfs")
