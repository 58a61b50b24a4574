"""The scripts in ``sql/`` do what their headers say, run as an analyst runs them:
``mxsql -d VAR=VALUE ... -f sql/SCRIPT.sql`` against the digits model.

The image table is a folder per class: the held-out digit PNGs, plus a truncated PNG
and a text file named .png (the undecodable ones), plus a .txt file the glob skips.
One catalog ($MXSQL_HOME) serves every run; the first run creates the table in it.
Each run starts Spark (10-30 s here): the quick run keeps create_image_table.sql,
evaluate.sql, compare_models.sql (the digits at precision=int8 against fp32) and the
EXPLAIN check; the other scripts run in the full suite.
"""

import os
import re
import shutil

import pytest

from demo import digits as digits_demo
from mxsql.registry.statements import script_text, split_statements
from tests import shellkit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SQL = os.path.join(ROOT, "sql")
SCRIPTS = sorted(name for name in os.listdir(SQL) if name.endswith(".sql"))
BAD_FILES = ("five/truncated.png", "notes/readme.png")


def _variables(path: str) -> set:
    with open(path, encoding="utf-8") as f:
        return set(re.findall(r"\$\{(\w+)\}", f.read()))


@pytest.fixture(scope="module")
def image_folder(digits, tmp_path_factory):
    """The held-out digits (folder per class) and the files that are not images."""
    _, test_paths = digits
    folder = tmp_path_factory.mktemp("images") / "digits"
    shutil.copytree(os.path.dirname(os.path.dirname(test_paths[0])), folder)
    with open(test_paths[0], "rb") as f:
        png = f.read()
    (folder / "five" / "truncated.png").write_bytes(png[: len(png) // 2])
    (folder / "notes").mkdir()
    (folder / "notes" / "readme.png").write_text("not an image\n")
    (folder / "notes" / "readme.txt").write_text("skipped by the glob\n")
    return str(folder), len(test_paths) + len(BAD_FILES)


@pytest.fixture(scope="module")
def model_args(digits, tmp_path_factory):
    """The digits model as 'default' (fp32), as 'digits_int8' (precision=int8, calibrated
    on the training digits in one folder, classes mixed in path order) and as
    'digits_shifted' (a wrong preprocessing: 200 subtracted from every pixel)."""
    calibration = tmp_path_factory.mktemp("calibration")
    train = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(digits[1][0]))),
                         "train")
    for folder, _, names in os.walk(train):
        for name in names:
            shutil.copy(os.path.join(folder, name), calibration / name)
    conf = {
        **digits_demo.model_conf(digits[0]),
        **digits_demo.model_conf(digits[0], "digits_int8"),
        "spark.mxsql.model.digits_int8.precision": "int8",
        "spark.mxsql.model.digits_int8.calibration": str(calibration),
        **digits_demo.model_conf(digits[0], "digits_shifted"),
        "spark.mxsql.model.digits_shifted.mean": "200",
        "spark.mxsql.cacheDir": str(tmp_path_factory.mktemp("cache")),
    }
    return shellkit.conf_args(conf)


@pytest.fixture(scope="module")
def catalog(image_folder, tmp_path_factory):
    """$MXSQL_HOME where create_image_table.sql made the table `images`; and its run."""
    home = str(tmp_path_factory.mktemp("scripts-home"))
    folder, _ = image_folder
    run = shellkit.run_mxsql([
        "-S", "-d", "table=images", "-d", f"path={folder}", "-d", "glob=*.png",
        "-d", "recursive=true", "-f", os.path.join(SQL, "create_image_table.sql"),
    ], home=home)
    assert run.returncode == 0, run.stderr
    return home, run


def run_script(catalog, model_args, name, **variables):
    home, _ = catalog
    args = ["-S", *model_args]
    for key, value in variables.items():
        args += ["-d", f"{key}={value}"]
    run = shellkit.run_mxsql([*args, "-f", os.path.join(SQL, name)], home=home)
    assert run.returncode == 0, run.stderr
    return [line.split("\t") for line in run.stdout.splitlines()]


def test_every_script_documents_its_variables_at_the_top():
    for name in SCRIPTS:
        path = os.path.join(SQL, name)
        with open(path, encoding="utf-8") as f:
            header = "".join(line for line in f if line.startswith("--"))
        for variable in _variables(path):
            assert re.search(rf"^--\s+{variable}\s", header, re.MULTILINE), (name, variable)


def test_create_image_table_reads_matching_files_in_every_folder(catalog, image_folder):
    _, run = catalog
    _, expected = image_folder
    images, _ = run.stdout.split()
    assert int(images) == expected


@pytest.mark.slow
def test_classify_gives_the_label_of_the_first_images(spark, catalog, model_args, image_folder):
    folder, _ = image_folder
    files = sorted(os.path.join(d, f) for d, _, names in os.walk(folder) for f in names
                   if f.endswith(".png"))
    bad = {os.path.join(folder, name) for name in BAD_FILES}
    # The first images by path, up to and including the first undecodable one.
    first = files[:1 + min(files.index(path) for path in bad)]
    rows = run_script(catalog, model_args, "classify.sql", table="images", model="default",
                      limit=len(first))
    assert [row[0] for row in rows] == [f"file:{path}" for path in first]
    expected = {r.path: r.c for r in spark.createDataFrame(
        [(p, open(p, "rb").read()) for p in first], "path string, content binary",
    ).selectExpr("path", "mx_classify(content) AS c").collect()}
    for (_, label, probability), path in zip(rows, first):
        if path in bad:
            assert (label, probability) == ("NULL", "NULL"), path
        else:
            assert label == expected[path].label, path
            assert float(probability) == pytest.approx(expected[path].probability, abs=1e-4)


@pytest.mark.slow
def test_top_k_ranks_k_classes_per_image_best_first(catalog, model_args):
    rows = run_script(catalog, model_args, "top_k.sql", table="images", model="default",
                      k=3, limit=4)
    assert len(rows) == 4 * 3
    for start in range(0, len(rows), 3):
        image = rows[start:start + 3]
        assert {row[0] for row in image} == {image[0][0]}
        assert [row[1] for row in image] == ["1", "2", "3"]
        probabilities = [float(row[3]) for row in image]
        assert probabilities == sorted(probabilities, reverse=True)


@pytest.mark.slow
def test_find_undecodable_lists_the_files_that_are_not_images(catalog, model_args,
                                                             image_folder):
    rows = run_script(catalog, model_args, "find_undecodable.sql", table="images")
    folder, _ = image_folder
    assert [row[0] for row in rows] == [f"file:{folder}/{name}" for name in BAD_FILES]
    assert all(row[2] not in ("", "NULL") for row in rows)


@pytest.mark.slow
def test_backfill_partitions_by_the_chosen_column_and_skips_done_images(
        catalog, model_args, image_folder):
    home, _ = catalog
    _, expected = image_folder
    backfill = os.path.join(SQL, "backfill.sql")
    args = ["-S", *model_args, "-d", "table=images", "-d", "predictions=by_label",
            "-d", "model=default", "-d", "partition_by=label"]
    # -i runs the backfill once, -f again in the same session: the second adds nothing.
    run = shellkit.run_mxsql([*args, "-i", backfill, "-f", backfill], home=home)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    first, second = lines[: len(lines) // 2], lines[len(lines) // 2:]
    # Each run: classified, undecodable, deleted; then the view's rows per partition.
    assert first[0].split("\t") == [str(expected - len(BAD_FILES)), str(len(BAD_FILES)), "0"]
    assert second[0].split("\t") == ["0", "0", "0"]
    assert first[1:] == second[1:]
    counts = dict(line.split("\t") for line in first[1:])
    assert sum(int(n) for n in counts.values()) == expected
    assert counts["NULL"] == str(len(BAD_FILES))
    partitions = os.listdir(os.path.join(home, "warehouse", "by_label_history"))
    assert {f"label={name}" for name in digits_demo.NAMES} <= set(partitions)


@pytest.mark.slow
def test_backfill_can_partition_by_day(catalog, model_args, image_folder):
    home, _ = catalog
    _, expected = image_folder
    summary, *rows = run_script(catalog, model_args, "backfill.sql", table="images",
                                predictions="by_day", model="default", partition_by="day")
    assert summary == [str(expected - len(BAD_FILES)), str(len(BAD_FILES)), "0"]
    assert sum(int(row[1]) for row in rows) == expected
    partitions = [name for name in os.listdir(os.path.join(home, "warehouse", "by_day_history"))
                  if not name.startswith(("_", "."))]
    assert partitions
    assert all(re.fullmatch(r"day=\d{4}-\d{2}-\d{2}", name) for name in partitions)


def test_evaluate_reports_each_image_each_class_and_the_accuracy(catalog, model_args,
                                                                 image_folder):
    rows = run_script(catalog, model_args, "evaluate.sql", table="images", model="default")
    _, expected = image_folder
    per_image = [row for row in rows if row[0].startswith("file:")]
    per_class = [row for row in rows if len(row) == 4 and not row[0].startswith("file:")]
    images, correct, accuracy = rows[-1]
    assert len(per_image) == expected
    assert {row[0] for row in per_class} == set(digits_demo.NAMES) | {"notes"}
    assert int(images) == expected
    assert float(accuracy) == pytest.approx(int(correct) / expected, abs=1e-4)
    assert float(accuracy) > 0.9


def test_compare_models_reports_int8_against_fp32(catalog, model_args, image_folder):
    rows = run_script(catalog, model_args, "compare_models.sql", table="images",
                      model="digits_int8", reference="default")
    _, expected = image_folder
    images, accuracy, reference_accuracy, agreeing, agreement = rows[-1]
    differing = rows[:-1]
    assert int(images) == expected
    # The undecodable files are NULL for both models: they agree, and count as wrong.
    assert int(agreeing) == expected - len(differing)
    assert float(agreement) == pytest.approx(int(agreeing) / expected, abs=1e-4)
    assert float(agreement) >= 0.99
    assert abs(float(accuracy) - float(reference_accuracy)) <= 0.005
    assert float(reference_accuracy) > 0.9
    for path, _, predicted, _, reference_predicted, _ in differing:
        assert path.startswith("file:") and predicted != reference_predicted


@pytest.mark.slow
def test_compare_models_lists_the_images_where_the_models_differ(catalog, model_args,
                                                                 image_folder):
    rows = run_script(catalog, model_args, "compare_models.sql", table="images",
                      model="digits_shifted", reference="default")
    _, expected = image_folder
    *differing, (images, accuracy, reference_accuracy, agreeing, _) = rows
    assert int(images) == expected
    assert 0 < len(differing) == expected - int(agreeing)
    assert float(accuracy) < float(reference_accuracy)
    assert [row[0] for row in differing] == sorted(row[0] for row in differing)
    for path, truth, predicted, _, reference_predicted, _ in differing:
        assert path.startswith("file:") and path.split("/")[-2] == truth
        assert predicted != reference_predicted


def test_each_image_goes_through_each_function_once(spark, digits):
    """EXPLAIN every statement of the scripts that calls an mx function: one Python
    evaluation per call, and where images are picked, exactly the picked ones below it."""
    _, test_paths = digits
    values = {
        "table": "explain_images", "path": os.path.dirname(os.path.dirname(test_paths[0])),
        "glob": "*.png", "recursive": "true", "model": "default", "limit": "5", "k": "3",
        "predictions": "explain_predictions", "partition_by": "label",
        "reference": "other",
    }
    setup = re.compile(
        r"^\s*(CREATE TABLE|CACHE TABLE|DROP VIEW|CREATE OR REPLACE VIEW|DECLARE|SET VAR)",
        re.IGNORECASE)
    checked = 0
    try:
        for name in sorted(SCRIPTS, key=lambda n: n != "create_image_table.sql"):
            with open(os.path.join(SQL, name), encoding="utf-8") as f:
                text = re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], script_text(f))
            for statement in split_statements(text):
                # Row functions only: a table function (mx_models()) is no ArrowEvalPython.
                calls = len(re.findall(r"\bmx_(?:classify|top_k|image_info)\(", statement))
                if not calls:
                    if setup.match(statement):
                        spark.sql(statement)
                    continue
                query = re.sub(r"^\s*(CACHE TABLE \w+ AS|INSERT INTO \w+ BY NAME)", "",
                               statement)
                plan = spark.sql("EXPLAIN " + query).first()[0]
                assert plan.count("ArrowEvalPython") == calls, (name, plan)
                if "mx_picked" in statement:
                    below = plan[plan.index("ArrowEvalPython"):]
                    assert "TakeOrderedAndProject(limit=5," in below, (name, plan)
                checked += 1
    finally:
        spark.sql("DROP VIEW IF EXISTS mx_picked")
        spark.sql("DROP VIEW IF EXISTS explain_predictions")
        for table in ("explain_images", "explain_predictions_history",
                      "explain_predictions_runs"):
            spark.sql(f"DROP TABLE IF EXISTS {table}")
    assert checked == 7
