"""mxsql on a real Spark standalone cluster, under the faults a cluster has.

One cluster serves the module: a Master and two Workers of one core and 1 GB each, all
JVMs of their own on 127.0.0.1 (tests/cluster.py). The package reaches the executors as
on a cluster where every node has it installed: their Python workers run this venv's
interpreter, which has mxsql pip-installed; nothing is shipped with --py-files.

The driver is ``mxsql -e`` once, then ``mxsql-thriftserver --master spark://…`` for the
rest, reached over JDBC (PyHive). The digits model is served over real HTTP from this
process, so every executor goes through the per-machine artifact cache. What happened
inside the executors is read from their own stderr files
(``WORK_DIR/APP/EXECUTOR/stderr``): model loads, artifact downloads, and, with
``MXSQL_LOG_LEVEL=DEBUG`` given to the executors, every batch the network runs on.
"""

import http.server
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections import Counter
from typing import Dict, List

import psutil
import pytest
from PIL import Image

from demo import digits as digits_demo
from mxsql.udfs.logs import parse_loaded_models
from tests import imagekit, servers
from tests.cluster import VENV_PYTHON, StandaloneCluster
from tests.test_inference_errors import _picky_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMR = os.path.join(ROOT, "sql", "emr")
_BATCH_ROWS = 64  # spark.sql.execution.arrow.maxRecordsPerBatch of every driver here
_BATCH_SIZE = 32  # spark.mxsql.batchSize
_DRIVER_MEMORY_MB = 1024  # spark.driver.memory of the Thrift server
# What YARN or Kubernetes would give that driver: spark.driver.memory plus Spark's default
# spark.driver.memoryOverhead, max(384 MB, 10%), for metaspace, threads and buffers.
_DRIVER_CONTAINER_MB = _DRIVER_MEMORY_MB + max(384, _DRIVER_MEMORY_MB // 10)
_FAULT_IMAGES = 2_000
_FLOW_IMAGES = 20_000
_WIDE_SIDE = 224  # input side of the 'wide' model: 224 x 224 RGB
_FETCHED = re.compile(r"fetched (\S+) into \S+ \((\d+) bytes\) in [\d.]+ s \(pid (\d+)\)")
_RUNS_ON = re.compile(r"DEBUG mxsql: model '(\w+)' runs on (\d+) rows \(pid (\d+)\)")
_LABEL_OF_PATH = r"regexp_extract(path, '([a-z]+)-[0-9]+\\.png$', 1)"


# --- the parts: cluster, model server, models, images --------------------------------

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with StandaloneCluster(str(tmp_path_factory.mktemp("cluster")), workers=2, cores=1,
                           memory="1g") as running:
        yield running


class _ModelServer(http.server.ThreadingHTTPServer):
    """Serves a folder over HTTP on 127.0.0.1 and counts the GETs of every path."""

    def __init__(self, folder: str):
        self.gets: Counter = Counter()
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=folder, **kwargs)

            def do_GET(self):
                server.gets[self.path] += 1
                super().do_GET()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture(scope="module")
def model_server(digits, tmp_path_factory):
    """The digits model's three files served at http://127.0.0.1:PORT/digits/."""
    folder = tmp_path_factory.mktemp("served")
    source = os.path.dirname(digits[0])
    shutil.copytree(source, folder / "digits")
    server = _ModelServer(str(folder))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join()
    server.server_close()


def _wide_model(folder: str) -> str:
    """A network on 224 x 224 RGB input that only averages each channel, then a dense layer.

    Its input is as large as ResNet's but it costs almost nothing to run, so 20,000
    images pass quickly while every batch still holds full-size decoded images.
    """
    import mxnet as mx

    data = mx.sym.Variable("data")
    pooled = mx.sym.Flatten(mx.sym.Pooling(data, kernel=(1, 1), global_pool=True, pool_type="avg"))
    net = mx.sym.softmax(mx.sym.FullyConnected(pooled, num_hidden=2, name="fc"))
    prefix = os.path.join(folder, "wide")
    net.save(prefix + "-symbol.json")
    mx.nd.save(prefix + "-0000.params", {"arg:fc_weight": mx.nd.array([[1, 0, 0], [0, 1, 0]]),
                                         "arg:fc_bias": mx.nd.zeros(2)})
    with open(os.path.join(folder, "synset.txt"), "w") as f:
        f.write("red\ngreen\n")
    return prefix


@pytest.fixture(scope="module")
def models(digits, resnet18, model_server, tmp_path_factory):
    """spark.mxsql.* settings: 'default' (digits over HTTP), 'resnet18', 'picky', 'wide'."""
    picky_dir = str(tmp_path_factory.mktemp("picky"))
    wide_dir = str(tmp_path_factory.mktemp("wide"))
    return {
        **digits_demo.model_conf(f"{model_server.url}/digits/digits"),
        "spark.mxsql.model.resnet18.uri": resnet18,
        "spark.mxsql.model.resnet18.inputSize": "112",  # a quarter of the work of 224
        "spark.mxsql.model.picky.uri": _picky_model(picky_dir),
        "spark.mxsql.model.picky.inputSize": "8",
        "spark.mxsql.model.picky.channels": "1",
        "spark.mxsql.model.wide.uri": _wide_model(wide_dir),
        "spark.mxsql.model.wide.inputSize": str(_WIDE_SIDE),
        "spark.mxsql.cacheDir": str(tmp_path_factory.mktemp("artifact-cache")),
    }


def _copies(folder, sources: List[str], count: int) -> str:
    """``count`` copies of the digit PNGs in one folder, the true label in each name."""
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        source = sources[i % len(sources)]
        shutil.copyfile(source, os.path.join(folder, f"{digits_demo.label_of(source)}-{i:05d}.png"))
    return str(folder)


@pytest.fixture(scope="module")
def folders(digits, tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    return {
        "faults": _copies(root / "faults", digits[1], _FAULT_IMAGES),
        "flow": _copies(root / "flow", digits[1], _FLOW_IMAGES),
    }


def _driver_conf(models: Dict[str, str]) -> Dict[str, str]:
    return {
        **models,
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(_BATCH_ROWS),
        "spark.mxsql.batchSize": str(_BATCH_SIZE),
        # 125 images a task: enough tasks that both executors always have work.
        "spark.sql.files.maxPartitionBytes": str(125 * 131072),
        "spark.sql.shuffle.partitions": "4",
        "spark.executorEnv.MXSQL_LOG_LEVEL": "DEBUG",
        "spark.ui.enabled": "false",
    }


def _conf_args(conf: Dict[str, str]) -> List[str]:
    return [arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")]


# --- the shell, as a step on a cluster runs it -----------------------------------------
# First: the Thrift server below holds every core of the cluster while it runs.

@pytest.mark.slow
def test_mxsql_shell_classifies_on_the_cluster(cluster, models, folders, tmp_path):
    assert not cluster.state()["activeapps"], "another application holds the cluster's cores"
    done = subprocess.run(
        [os.path.join(os.path.dirname(VENV_PYTHON), "mxsql"), "--master", cluster.url, "-S",
         "--name", "mxsql-shell-on-cluster", *_conf_args(_driver_conf(models)), "-e",
         f"SELECT count(*), count(c.label), sum(if(c.label = {_LABEL_OF_PATH}, 1, 0)) FROM "
         f"(SELECT path, mx_classify(content) c FROM binaryFile.`{folders['faults']}`)"],
        env={**os.environ, "MXSQL_HOME": str(tmp_path), "SPARK_LOCAL_IP": "127.0.0.1"},
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    images, classified, right = (int(v) for v in done.stdout.split())
    assert images == classified == _FAULT_IMAGES
    assert right >= 0.9 * images
    (app,) = [a for a in cluster.state()["completedapps"] if a["name"] == "mxsql-shell-on-cluster"]
    loads = [load.pid for load in cluster.model_loads(app["id"]) if load.model == "default"]
    assert len(loads) == 2, "each executor's Python worker loads the model once"


# --- the Thrift server on the cluster --------------------------------------------------

@pytest.fixture(scope="module")
def picky_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("picky-images")


@pytest.fixture(scope="module")
def server(cluster, models, folders, digits, picky_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("thriftserver")
    # The tables below are over the held-out digits, the copies and the picky images: the
    # server's connections may read files only there (and under the warehouse).
    allowed = [os.path.dirname(os.path.dirname(digits[1][0])), *folders.values(),
               str(picky_folder)]
    conf = {**_driver_conf(models), "spark.driver.memory": f"{_DRIVER_MEMORY_MB}m",
            "spark.mxsql.server.allowedPaths": ",".join(allowed),
            # Asynchronous statements, so that a client that drops its connection has its
            # query cancelled (test_eight_jdbc_clients...); the server's default is
            # synchronous, for one-line errors (README, "The Thrift JDBC/ODBC server").
            "spark.sql.hive.thriftServer.async": "true"}
    args = ["--master", cluster.url, "--port", "0", *_conf_args(conf)]
    env = {"MXSQL_HOME": str(root / "home"), "SPARK_LOCAL_IP": "127.0.0.1"}
    with servers.ThriftServerProcess(args, log_path=str(root / "server.log"), env=env) as s:
        cluster.wait_for_executors(2)
        yield s


@pytest.fixture(scope="module")
def app_id(cluster, server):
    (app,) = [a["id"] for a in cluster.state()["activeapps"] if a["name"] == "mxsql-thriftserver"]
    return app


@pytest.fixture(scope="module")
def tables(server, folders, digits):
    """Tables over the held-out digits, the 2,000 and the 20,000 copies."""
    digit_folder = os.path.dirname(os.path.dirname(digits[1][0]))
    _sql(server, f"CREATE TABLE digits USING binaryFile "
                 f"OPTIONS (path '{digit_folder}', recursiveFileLookup 'true')")
    _sql(server, f"CREATE TABLE faults USING binaryFile OPTIONS (path '{folders['faults']}')")
    _sql(server, f"CREATE TABLE flow USING binaryFile OPTIONS (path '{folders['flow']}')")


def _sql(server, statement: str, *, user: str = "tester") -> list:
    return servers.pyhive_rows(server.host, server.port, statement, user=user)


def _rows_run(cluster, app_id: str, model: str) -> Counter:
    """Rows the network of ``model`` has run on so far, per Python worker pid."""
    rows = Counter()
    for name, n, pid in cluster.grep_executor_logs(_RUNS_ON, app_id):
        if name == model:
            rows[int(pid)] += int(n)
    return rows


@pytest.mark.slow
def test_executors_run_the_installed_package_with_the_venvs_python(cluster, server, app_id,
                                                                    tables):
    before = _rows_run(cluster, app_id, "default")
    rows = _sql(server, "SELECT count(mx_classify(content).label) FROM faults")
    assert rows == [(_FAULT_IMAGES,)]
    ran_in = set(_rows_run(cluster, app_id, "default") - before)
    workers = {p.pid: p for p in cluster.python_workers()}
    assert ran_in and ran_in <= set(workers), "the executors' Python workers ran mxsql"
    assert {os.path.realpath(workers[pid].exe()) for pid in ran_in} == \
        {os.path.realpath(VENV_PYTHON)}
    assert _sql(server, "SET spark.submit.pyFiles") == [("spark.submit.pyFiles", "")]


@pytest.mark.slow
def test_model_loads_once_per_python_worker_and_is_fetched_once_per_machine(
        cluster, server, app_id, tables, model_server):
    results = []
    for _ in range(3):
        results.append(sorted(_sql(server, f"SELECT path, mx_classify(content).label, "
                                           f"{_LABEL_OF_PATH} FROM faults")))
    assert results[0] == results[1] == results[2]
    assert sum(label == truth for _, label, truth in results[0]) >= 0.9 * _FAULT_IMAGES
    loads = Counter(load.pid for load in cluster.model_loads(app_id) if load.model == "default")
    assert loads and set(loads.values()) == {1}, f"loads per Python worker: {loads}"
    executors_loading = [path for path, text in cluster.executor_logs(app_id).items()
                         if any(load.model == "default" for load in parse_loaded_models(text))]
    assert len(executors_loading) >= 2, "the model was loaded on each executor"
    fetched = Counter(uri for uri, _, _ in cluster.grep_executor_logs(_FETCHED))
    served = {f"{model_server.url}/digits/{name}" for name in
              ("digits-symbol.json", "digits-0000.params", "synset.txt")}
    assert fetched == Counter({uri: 1 for uri in served}), "one download per artifact and host"
    assert model_server.gets == Counter({uri[len(model_server.url):]: 1 for uri in served})


# --- faults in the middle of a CTAS ----------------------------------------------------

def _ctas_with_fault(cluster, server, app_id, table: str, fault) -> None:
    """CREATE TABLE AS classifying the 2,000 images, calling ``fault()`` once it is under way."""
    _sql(server, f"DROP TABLE IF EXISTS {table}")
    before = sum(_rows_run(cluster, app_id, "resnet18").values())
    outcome = {}

    def run():
        try:
            _sql(server, f"CREATE TABLE {table} USING parquet AS "
                         f"SELECT path, mx_classify(content, 'resnet18') AS c FROM faults")
        except Exception as e:  # reported below, in the test's thread
            outcome["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    servers.poll(lambda: not thread.is_alive()
                 or sum(_rows_run(cluster, app_id, "resnet18").values()) - before
                 >= _FAULT_IMAGES // 10,
                 deadline=300, what="the CTAS to classify a tenth of its images")
    assert thread.is_alive(), f"the CTAS ended before the fault: {outcome}"
    fault()
    assert thread.is_alive(), "the fault came after the CTAS had finished"
    thread.join(600)
    assert "error" not in outcome, outcome.get("error")
    rows, paths, classified = _sql(
        server, f"SELECT count(*), count(DISTINCT path), count(c.label) FROM {table}")[0]
    assert rows == paths == classified == _FAULT_IMAGES


@pytest.mark.slow
def test_killed_executor_jvm_mid_ctas_loses_and_doubles_no_row(cluster, server, app_id, tables):
    cluster.wait_for_executors(2)
    log_start = server.log_size()
    killed = []

    def kill_an_executor():
        victim = cluster.executors()[0]
        victim.kill()
        victim.wait(30)
        killed.append(victim.pid)

    _ctas_with_fault(cluster, server, app_id, "out_executor_killed", kill_an_executor)
    assert killed and killed[0] not in {e.pid for e in cluster.executors()}
    assert "Lost executor" in server.log(log_start)


@pytest.mark.slow
def test_killed_python_worker_mid_ctas_loses_and_doubles_no_row(cluster, server, app_id, tables):
    executors = {e.pid for e in cluster.wait_for_executors(2)}
    log_start = server.log_size()
    killed = []

    def kill_a_python_worker():
        victim = cluster.python_workers()[0]
        victim.kill()
        victim.wait(30)
        killed.append(victim.pid)

    _ctas_with_fault(cluster, server, app_id, "out_worker_killed", kill_a_python_worker)
    assert killed
    assert {e.pid for e in cluster.executors()} == executors, "only the Python worker died"
    assert "Python worker exited unexpectedly" in server.log(log_start)


# --- a network that raises inside MXNet -------------------------------------------------

@pytest.fixture(scope="module")
def picky_table(server, digits, picky_folder):
    """Five dark digits, which the 'picky' model classifies, and one white image it rejects."""
    folder = picky_folder
    for path in digits[1][:5]:
        shutil.copyfile(path, folder / f"dark-{os.path.basename(path)}")
    (folder / "white.png").write_bytes(imagekit.encode(Image.new("L", (32, 32), 255), "PNG"))
    _sql(server, f"CREATE TABLE picky_images USING binaryFile OPTIONS (path '{folder}')")
    return "picky_images"


@pytest.mark.slow
def test_mxnet_error_fails_task_attempts_naming_the_model_with_on_error_fail(
        cluster, server, picky_table):
    from pyhive import hive

    executors = {e.pid for e in cluster.wait_for_executors(2)}
    log_start = server.log_size()
    connection = hive.connect(host=server.host, port=server.port, auth="NONE", username="ops")
    cursor = connection.cursor()
    try:
        cursor.execute("SET spark.mxsql.onError=fail")
        with pytest.raises(hive.OperationalError) as failure:
            cursor.execute(f"SELECT path, mx_classify(content, 'picky') FROM {picky_table}")
    finally:
        cursor.execute("RESET spark.mxsql.onError")
        connection.close()
    message = failure.value.args[0].status.errorMessage  # PyHive keeps the response
    assert "InferenceError: model 'picky'" in message
    assert "spotrf failed in lapack" in message
    retried = re.search(r"Task \d+ in stage [\d.]+ failed 4 times; aborting job",
                        server.log(log_start))
    assert retried, "each attempt of the task failed, and Spark retried it (spark.task.maxFailures)"
    assert {e.pid for e in cluster.executors()} == executors, "no executor was lost"


@pytest.mark.slow
def test_mxnet_error_gives_null_and_the_query_finishes_with_on_error_null(server, picky_table):
    rows = dict(_sql(server,
                     f"SELECT path, mx_classify(content, 'picky').label FROM {picky_table}"))
    white = [path for path in rows if path.endswith("/white.png")]
    assert len(rows) == 6 and len(white) == 1
    assert rows.pop(white[0]) is None
    assert set(rows.values()) <= {"dark", "less dark"} and None not in rows.values()


# --- many JDBC users at once -------------------------------------------------------------

_TRUTH = r"regexp_extract(path, '/([a-z]+)/[0-9]+\\.png$', 1)"
_CONCURRENT_QUERIES = (
    "SELECT c.label, count(*) FROM (SELECT mx_classify(content) c FROM digits) "
    "GROUP BY c.label ORDER BY c.label",
    f"SELECT count(*), sum(if(mx_classify(content).label = {_TRUTH}, 1, 0)) FROM digits",
    "SELECT path, transform(mx_top_k(content, 3), x -> x.label) FROM digits "
    "WHERE path LIKE '%/seven/%' ORDER BY path",
    "SELECT i.format, i.width, i.height, count(*) FROM "
    "(SELECT mx_image_info(content) i FROM digits) GROUP BY 1, 2, 3",
    "SELECT path, round(mx_classify(content).probability, 4) FROM digits "
    "WHERE path LIKE '%/three/%' ORDER BY path",
)


class _RssSampler:
    """Samples the RSS of each of ``processes()`` every ``interval`` seconds, in a thread."""

    def __init__(self, processes, interval: float = 0.2):
        self.processes = processes
        self.interval = interval
        self.samples: List[tuple] = []  # (monotonic time, {pid: rss})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.interval):
            rss = {}
            for process in self.processes():
                try:
                    rss[process.pid] = process.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            self.samples.append((time.monotonic(), rss))

    def __enter__(self) -> "_RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.slow
def test_eight_jdbc_clients_get_correct_results_while_one_disconnects_mid_query(
        cluster, server, app_id, tables):
    from pyhive import hive

    cluster.wait_for_executors(2)
    reference = [_sql(server, query) for query in _CONCURRENT_QUERIES]
    assert reference[1][0][1] >= 0.9 * reference[1][0][0]
    python = psutil.Process(server.process.pid)
    (jvm,) = [p for p in python.children() if p.name() == "java"]
    python_baseline = python.memory_info().rss

    quitter = hive.connect(host=server.host, port=server.port, auth="NONE", username="quitter")
    before = sum(_rows_run(cluster, app_id, "resnet18").values())
    log_start = server.log_size()
    quitter.cursor().execute("SELECT count(mx_classify(content, 'resnet18').label) FROM faults",
                           async_=True)
    servers.poll(lambda: sum(_rows_run(cluster, app_id, "resnet18").values()) > before,
                 deadline=120, what="the quitter's query to run")

    results: Dict[int, list] = {}
    errors: Dict[int, Exception] = {}

    def client(i):
        try:
            results[i] = [_sql(server, _CONCURRENT_QUERIES[(i + j) % len(_CONCURRENT_QUERIES)],
                               user=f"client{i}") for j in range(len(_CONCURRENT_QUERIES))]
        except Exception as e:  # reported below, in the test's thread
            errors[i] = e

    with _RssSampler(lambda: [python, jvm]) as sampler:
        clients = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for thread in clients:
            thread.start()
        quitter._transport.close()  # drops the socket, as a killed client would
        for thread in clients:
            thread.join(600)
    assert not errors, errors
    for i in range(8):
        expected = [reference[(i + j) % len(reference)] for j in range(len(reference))]
        assert results[i] == expected, f"client{i}"
    python_peak = max(rss.get(python.pid, 0) for _, rss in sampler.samples)
    jvm_peak = max(rss.get(jvm.pid, 0) for _, rss in sampler.samples)
    assert python_peak <= python_baseline + 32 * 2**20, "the server's Python process does no work"
    assert jvm_peak <= _DRIVER_CONTAINER_MB * 2**20, (
        f"the server's JVM peaked at {jvm_peak / 2**20:.0f} MB")
    assert "SPARK_JOB_CANCELLED" in server.log(log_start), "the quitter's query was cancelled"
    assert _sql(server, "SELECT count(*) FROM digits") == [(reference[1][0][0],)]


# --- memory of the Python workers over 20,000 images -----------------------------------

_DECODED_BYTES = _WIDE_SIDE * _WIDE_SIDE * 3  # one image as the network's uint8 input
# What one Python worker holds beyond its state after a first query (model loaded, MXNet's
# executor bound, which includes its input and activations), counted in Arrow batches of
# decoded images (_BATCH_ROWS x _DECODED_BYTES): the batch the network runs on (1), the
# one the consumer has not let go of yet (1), the next one being decoded in the prefetch
# thread, twice while its rows are stacked into one array (2), and the float32 tensor of
# batchSize = _BATCH_ROWS / 2 images at 4 bytes a value (2). The PNG bytes are small.
_BATCHES_HELD = 6
# Flat: the second half's peak may pass the first half's by one batch of decoded images.
_FLAT_MARGIN = _BATCH_ROWS * _DECODED_BYTES


@pytest.mark.slow
def test_python_worker_memory_is_bounded_and_flat_over_20000_images(cluster, server, app_id,
                                                                    tables):
    cluster.wait_for_executors(2)
    warm = _sql(server, "SELECT count(mx_classify(content, 'wide').label) FROM digits")
    assert warm[0][0] > 0
    baseline = max(p.memory_info().rss for p in cluster.python_workers())
    runs_before = _rows_run(cluster, app_id, "wide")
    outcome = {}

    def run():
        outcome["rows"] = _sql(server, "SELECT count(mx_classify(content, 'wide').label) FROM flow")

    with _RssSampler(cluster.python_workers) as sampler:
        thread = threading.Thread(target=run)
        thread.start()
        thread.join(900)
    assert outcome.get("rows") == [(_FLOW_IMAGES,)]
    ran_in = set(_rows_run(cluster, app_id, "wide") - runs_before)
    sampled = {pid for _, rss in sampler.samples for pid in rss}
    assert ran_in and ran_in <= sampled, "every worker that ran the network was measured"

    bound = baseline + _BATCHES_HELD * _BATCH_ROWS * _DECODED_BYTES
    middle = (sampler.samples[0][0] + sampler.samples[-1][0]) / 2
    first = max(max(rss.values(), default=0) for t, rss in sampler.samples if t < middle)
    second = max(max(rss.values(), default=0) for t, rss in sampler.samples if t >= middle)
    mb = 2 ** 20
    report = (f"baseline {baseline / mb:.0f} MB, bound {bound / mb:.0f} MB, peaks "
              f"{first / mb:.0f} MB then {second / mb:.0f} MB over {len(sampler.samples)} samples")
    assert max(first, second) <= bound, report
    assert second <= first + _FLAT_MARGIN, report


# --- EMR: nothing here can run EMR, YARN or Glue; the files must at least agree ----------

def _emr_classifications() -> Dict[str, dict]:
    with open(os.path.join(EMR, "configurations.json"), encoding="utf-8") as f:
        return {c["Classification"]: c for c in json.load(f)}


def _bootstrap_setting(name: str) -> str:
    with open(os.path.join(EMR, "bootstrap.sh"), encoding="utf-8") as f:
        (value,) = re.findall(rf"^{name}=(\S+)$", f.read(), re.MULTILINE)
    return value


def test_emr_bootstrap_is_valid_bash():
    done = subprocess.run(["bash", "-n", os.path.join(EMR, "bootstrap.sh")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_emr_configuration_uses_the_bootstrapped_python_cache_and_glue():
    from mxsql.udfs.config import parse_settings

    classes = _emr_classifications()
    defaults = classes["spark-defaults"]["Properties"]
    python = _bootstrap_setting("venv") + "/bin/python"
    assert defaults["spark.pyspark.python"] == defaults["spark.pyspark.driver.python"] == python
    (export,) = classes["spark-env"]["Configurations"]
    assert export["Properties"]["PYSPARK_PYTHON"] == python
    settings = parse_settings(defaults)  # a malformed spark.mxsql.* key raises ConfigError
    assert settings.cache_dir == _bootstrap_setting("cache")
    assert settings.model("default").uri.startswith("s3://")
    assert classes["spark-hive-site"]["Properties"]["hive.metastore.client.factory.class"] == \
        "com.amazonaws.glue.catalog.metastore.AWSGlueDataCatalogHiveClientFactory"


def test_emr_executor_sizing_follows_the_rule():
    from mxsql.udfs.config import parse_settings

    defaults = _emr_classifications()["spark-defaults"]["Properties"]
    cores, task_cpus = int(defaults["spark.executor.cores"]), int(defaults["spark.task.cpus"])
    assert cores % task_cpus == 0, "tasks per executor x spark.task.cpus = executor cores"
    workers = cores // task_cpus
    spec = parse_settings(defaults).model("default")
    height, width = spec.input_size
    batch_memory = (_BATCHES_HELD * int(defaults["spark.sql.execution.arrow.maxRecordsPerBatch"])
                    * height * width * spec.channels)
    heap_mb = int(defaults["spark.executor.memory"].rstrip("g")) * 1024
    overhead_mb = int(defaults["spark.executor.memoryOverhead"].rstrip("g")) * 1024
    yarn_allowance_mb = max(384, heap_mb // 10)
    resnet18_worker_mb = 700  # one Python process, ResNet-18 loaded and one batch of 32 run
    assert overhead_mb >= workers * (resnet18_worker_mb + batch_memory / 2**20) + yarn_allowance_mb
