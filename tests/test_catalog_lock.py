"""A second process on the embedded metastore stops at once with one line that says why.

Embedded Derby admits one process: without the check, ``mxsql`` beside a running server
printed thousands of lines of Derby traces over half a minute before failing.
"""

import subprocess
import sys

import pytest

from tests import shellkit

HOLDER = """
import sys
from mxsql.registry.session import build_session
spark = build_session({"spark.ui.enabled": "false"}, master="local[1]", register=False)
spark.sql("SHOW DATABASES").collect()  # boots the Derby metastore
print("holding", flush=True)
sys.stdin.read()
spark.stop()
"""


@pytest.mark.slow
def test_shell_on_a_catalog_another_process_holds_says_so_in_one_line(tmp_path):
    home = str(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True, env=shellkit.mxsql_env(home), cwd=home,
    )
    try:
        assert holder.stdout.readline() == "holding\n"
        run = shellkit.run_mxsql(["-e", "SELECT 1"], home=home)
    finally:
        holder.stdin.close()
        holder.wait(timeout=shellkit.TIMEOUT)
    assert run.returncode == 1
    assert run.stderr.startswith(
        f"CatalogInUseError: the catalog under $MXSQL_HOME ({tmp_path / 'metastore_db'}) is in "
        "use by another process")
    assert "PostgreSQL metastore (README, \"Catalog tables\"" in run.stderr
    assert len(run.stderr.splitlines()) == 1
    assert run.stdout == ""
