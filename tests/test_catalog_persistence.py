"""The embedded catalog: tables created by one ``mxsql`` run are there for the next.

Both runs are real ``mxsql`` processes sharing one ``$MXSQL_HOME``, started from a
different working directory each, so nothing depends on where the user stands.
"""

import os

import pytest

from tests import shellkit


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(home, first run, second run, working directories): the first run creates a
    database and a table, the second reads it."""
    home = str(tmp_path_factory.mktemp("catalog-home"))
    cwds = [str(tmp_path_factory.mktemp("cwd")) for _ in range(2)]
    first = shellkit.run_mxsql([
        "-e", "CREATE DATABASE shop;"
              "CREATE TABLE shop.items (id INT, name STRING) USING parquet;"
              "INSERT INTO shop.items VALUES (1, 'pen'), (2, 'ink')",
    ], home=home, cwd=cwds[0])
    second = shellkit.run_mxsql(
        ["--database", "shop", "-e", "SELECT id, name FROM items ORDER BY id;"
                                     "SELECT current_database()"],
        home=home, cwd=cwds[1],
    )
    return home, first, second, cwds


def test_a_table_created_by_one_run_is_there_for_the_next(runs):
    _, first, second, _ = runs
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("1\tpen\n2\tink\n")


def test_database_option_makes_it_current(runs):
    _, _, second, _ = runs
    assert second.stdout.endswith("\nshop\n")


def test_metastore_and_warehouse_live_in_mxsql_home(runs):
    home, _, _, _ = runs
    assert os.path.isdir(os.path.join(home, "metastore_db"))
    assert os.path.isdir(os.path.join(home, "warehouse", "shop.db", "items"))
    assert os.path.isfile(os.path.join(home, "derby.log"))


def test_nothing_is_written_to_the_working_directory(runs):
    _, _, _, cwds = runs
    assert [os.listdir(cwd) for cwd in cwds] == [[], []]
