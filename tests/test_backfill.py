"""sql/backfill.sql keeps a predictions view current, classifying only what changed.

The real ``mxsql`` shell runs the script over real PNG files, as an analyst does; the
workers' log (``MXSQL_LOG_LEVEL=DEBUG``: one "classified" line per batch, with its paths)
shows which files went through the network. One catalog serves the whole story, step by
step: each test builds on the state the one before left (they run in file order).
"""

import os
import signal
import subprocess
import time

import numpy as np
import pytest
from PIL import Image

from demo import digits as digits_demo
from demo import zoo
from mxsql.udfs.logs import parse_classified
from tests import imagekit, shellkit

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKFILL = os.path.join(ROOT, "sql", "backfill.sql")
CREATE = os.path.join(ROOT, "sql", "create_image_table.sql")
BROKEN = "broken.png"  # not an image: a row with a reason, never sent to the network


def _write_png(path: str, seed: int, size: int = 12) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    with open(path, "wb") as f:
        f.write(imagekit.encode(Image.fromarray(pixels, "L"), "PNG"))


class Story:
    """The image folder, the catalog and the model settings every step shares."""

    def __init__(self, root, digits_prefix):
        self.folder = os.path.join(root, "images")
        self.home = os.path.join(root, "home")
        os.makedirs(self.folder)
        self.conf = {**digits_demo.model_conf(digits_prefix),
                     "spark.mxsql.cacheDir": os.path.join(root, "cache")}
        self.reader = os.path.join(root, "reader.sql")
        with open(self.reader, "w", encoding="utf-8") as f:
            f.write("SELECT 'row', path, length, fingerprint, label, error, run_id "
                    "FROM preds ORDER BY path;\n")
        self.seed = 0
        self.view = None  # what readers saw after the last run

    def add(self, name: str) -> str:
        self.seed += 1
        _write_png(os.path.join(self.folder, name), self.seed)
        return self.uri(name)

    def uri(self, name: str) -> str:
        return f"file:{os.path.join(self.folder, name)}"

    def command(self, *files: str, conf=None):
        args = [shellkit.MXSQL, "-S", *shellkit.conf_args({"spark.ui.enabled": "false",
                                                           **(conf or self.conf)}),
                "-d", "table=images", "-d", f"path={self.folder}", "-d", "glob=*.png",
                "-d", "recursive=false", "-d", "predictions=preds", "-d", "model=default",
                "-d", "partition_by=day"]
        *init, last = files
        for path in init:
            args += ["-i", path]
        return [*args, "-f", last]

    def env(self):
        return shellkit.mxsql_env(self.home, MXSQL_LOG_LEVEL="DEBUG")

    def run(self, *files: str, conf=None):
        """Run the files in one shell; (reader rows by path, paths classified, stdout)."""
        os.makedirs(self.home, exist_ok=True)
        done = subprocess.run(self.command(*files, conf=conf), capture_output=True, text=True,
                              env=self.env(), cwd=self.home, timeout=shellkit.TIMEOUT)
        assert done.returncode == 0, done.stderr[-5000:]
        self.view = _rows(done.stdout)
        return self.view, _classified(done.stderr), done.stdout

    def backfill(self, conf=None):
        return self.run(BACKFILL, self.reader, conf=conf)


def _rows(stdout: str):
    rows = {}
    for line in stdout.splitlines():
        if line.startswith("row\t"):
            _, path, length, fingerprint, label, error, run_id = line.split("\t")
            assert path not in rows, f"{path} twice in the view"
            rows[path] = dict(length=int(length), fingerprint=fingerprint, label=label,
                              error=error, run_id=run_id)
    return rows


def _classified(log: str):
    paths = [path for line in parse_classified(log) for path in line.paths]
    assert len(paths) == len(set(paths)), "a file went through the network twice"
    return set(paths)


@pytest.fixture(scope="module")
def story(tmp_path_factory, digits):
    story = Story(str(tmp_path_factory.mktemp("backfill")), digits[0])
    for i in range(399):
        story.add(f"img{i:04d}.png")
    with open(os.path.join(story.folder, BROKEN), "w") as f:
        f.write("not an image\n")
    return story


@pytest.fixture(scope="module")
def first_run(story):
    rows, classified, stdout = story.run(CREATE, BACKFILL, story.reader)
    return rows, classified, stdout


def test_first_run_classifies_every_file_once(story, first_run):
    rows, classified, _ = first_run
    assert len(rows) == 400
    assert classified == set(rows) - {story.uri(BROKEN)}
    assert len({r["fingerprint"] for r in rows.values()}) == 1
    assert len({r["run_id"] for r in rows.values()}) == 1
    broken = rows[story.uri(BROKEN)]
    assert broken["label"] == "NULL" and broken["error"] not in ("NULL", "")
    assert all(r["label"] in digits_demo.NAMES for p, r in rows.items()
               if p != story.uri(BROKEN))


@pytest.fixture(scope="module")
def second_run(story, first_run):
    added = {story.add(f"new{i:02d}.png") for i in range(50)}
    changed = set()
    for i in range(0, 100, 10):
        name = f"img{i:04d}.png"
        path = os.path.join(story.folder, name)
        before = os.stat(path)
        story.seed += 1
        _write_png(path, story.seed, size=20)  # another picture, another length
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 10 ** 9))
        changed.add(story.uri(name))
    rows, classified, _ = story.backfill()
    return added, changed, rows, classified


def test_rerun_classifies_exactly_the_new_and_changed_files(first_run, second_run):
    added, changed, rows, classified = second_run
    assert classified == added | changed


def test_reader_sees_each_file_once_and_the_changed_ones_updated(story, first_run,
                                                                 second_run):
    before, _, _ = first_run
    added, changed, rows, _ = second_run
    assert len(rows) == 450
    assert set(rows) == set(before) | added
    for path in changed:
        assert rows[path]["length"] == os.path.getsize(path[len("file:"):])
        assert rows[path]["length"] != before[path]["length"]
        assert rows[path]["run_id"] != before[path]["run_id"]
    for path in set(before) - changed:
        assert rows[path] == before[path], path


def test_a_changed_mean_classifies_everything_again(story, second_run):
    _, _, before, _ = second_run
    conf = {**story.conf, "spark.mxsql.model.default.mean": "3"}
    rows, classified, _ = story.backfill(conf=conf)
    assert classified == set(before) - {story.uri(BROKEN)}
    assert set(rows) == set(before)
    fingerprints = {r["fingerprint"] for r in rows.values()}
    assert len(fingerprints) == 1 and fingerprints.isdisjoint(
        r["fingerprint"] for r in before.values())
    story.conf = conf


def test_a_killed_run_leaves_the_view_and_a_rerun_completes(story, resnet18, tmp_path):
    before = story.view
    assert len(before) == 450
    # The default model becomes ResNet-18 (a new fingerprint: every file again), slow
    # enough here that the run is killed while its first statement still classifies.
    conf = {**story.conf, **zoo.model_conf(resnet18, name="default")}
    conf.pop("spark.mxsql.model.default.channels")
    conf.pop("spark.mxsql.model.default.inputSize")
    conf.pop("spark.mxsql.model.default.std")
    conf.pop("spark.mxsql.model.default.mean")
    log_path = tmp_path / "killed.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(story.command(BACKFILL, conf=conf), stdout=log,
                                   stderr=subprocess.STDOUT, env=story.env(), cwd=story.home,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + shellkit.TIMEOUT
        while not parse_classified(log_path.read_text()):
            assert process.poll() is None, log_path.read_text()[-5000:]
            assert time.monotonic() < deadline, "no batch was classified"
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    killed = _classified(log_path.read_text())
    assert 0 < len(killed) < 449, "the run was not killed while classifying"
    rows, _, _ = story.run(story.reader)
    assert rows == before

    gone = {story.uri("img0001.png"), story.uri("new07.png")}
    for path in gone:
        os.remove(path[len("file:"):])
    rows, classified, stdout = story.backfill(conf=conf)
    assert set(rows) == set(before) - gone
    assert classified == set(rows) - {story.uri(BROKEN)}
    assert len({r["fingerprint"] for r in rows.values()}) == 1
    assert {r["fingerprint"] for r in rows.values()} != {r["fingerprint"]
                                                           for r in before.values()}
    summary = [line.split("\t") for line in stdout.splitlines()
               if not line.startswith("row\t")][0]
    assert summary == [str(len(classified)), "1", "2"]  # classified, undecodable, deleted
