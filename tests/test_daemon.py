"""The worker daemon (``spark.python.daemon.module = mxsql.udfs.daemon``): workers are
forked from it, it has imported what they need, and what they compute is unchanged."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mxsql.udfs import daemon


def _worker_facts(spark):
    """(daemon command line, shared libraries the daemon has mapped) seen from a worker."""
    from pyspark.sql.functions import udf

    @udf("string")
    def parent(_):
        ppid = os.getppid()
        with open(f"/proc/{ppid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode()
        with open(f"/proc/{ppid}/maps", encoding="utf-8") as f:
            libraries = sorted({line.split()[-1].rsplit("/", 1)[-1] for line in f
                                if line.rstrip().endswith(".so") or ".so." in line})
        return cmdline + "\n" + " ".join(libraries)

    cmdline, libraries = spark.range(1).select(parent("id")).first()[0].split("\n")
    return cmdline, libraries.split()


def test_workers_fork_from_the_mxsql_daemon_that_imported_their_libraries(spark):
    assert spark.conf.get("spark.python.daemon.module") == "mxsql.udfs.daemon"
    cmdline, libraries = _worker_facts(spark)
    assert "-m mxsql.udfs.daemon" in cmdline
    # The daemon itself has loaded Arrow and, with one OpenMP thread per worker (the
    # shipped spark.task.cpus=1), MXNet: a forked worker finds them in place.
    assert any(lib.startswith("libarrow.so") for lib in libraries), libraries
    assert "libmxnet.so" in libraries, libraries


def test_classification_through_the_daemon_matches_the_network_run_directly(spark, digits_table,
                                                                            digits):
    rows = spark.sql(
        "SELECT c.class_index, c.probability FROM "
        "(SELECT path, mx_classify(content) AS c FROM digits ORDER BY path LIMIT 40)"
    ).collect()
    from mxsql.registry.config import settings_from_session
    from mxsql.udfs import images, models

    settings = settings_from_session(spark)
    spec = settings.model("default")
    paths = sorted(p if p.startswith("file:") else "file:" + p for p in digits[1])[:40]
    pixels = np.stack([
        images.load_pixels(open(p[len("file:"):], "rb").read(), input_size=spec.input_size,
                           channels=spec.channels, resize=spec.resize,
                           max_pixels=settings.max_image_pixels)
        for p in paths])
    expected = models.get_model(spec, settings).predict(pixels, settings.batch_size)
    assert [r.class_index for r in rows] == list(expected.argmax(axis=1))
    np.testing.assert_allclose([r.probability for r in rows], expected.max(axis=1), rtol=1e-5)


def test_mxnet_is_preloaded_only_for_one_openmp_thread():
    assert daemon.mxnet_preload_safe({"OMP_NUM_THREADS": "1"})
    assert not daemon.mxnet_preload_safe({"OMP_NUM_THREADS": "2"})
    assert not daemon.mxnet_preload_safe({})


_FORKS = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    from mxsql.udfs import daemon
    from mxsql.udfs.checkpoint import import_mxnet

    mode, prefix, out, forks = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

    def forward(path):
        mx = import_mxnet()
        sym, args, auxs = mx.model.load_checkpoint(prefix, 0)
        exe = sym.simple_bind(mx.cpu(), grad_req="null", data=(4, 3, 224, 224))
        exe.copy_params_from(args, auxs, allow_extra_params=True)
        x = np.random.RandomState(0).uniform(0, 1, (4, 3, 224, 224)).astype(np.float32)
        exe.forward(is_train=False, data=x)
        np.save(path, exe.outputs[0].asnumpy())

    if mode == "fresh":
        forward(os.path.join(out, "fresh.npy"))
        sys.exit(0)
    daemon.preload()
    import_mxnet()  # whatever OMP_NUM_THREADS says: this is the safety check
    for batch in range(0, forks, 2):  # two workers at a time, as on two cores
        pids = []
        for i in range(batch, min(batch + 2, forks)):
            pid = os.fork()
            if pid == 0:
                try:
                    forward(os.path.join(out, f"child-{i}.npy"))
                finally:
                    os._exit(0)
            pids.append(pid)
        deadline = time.monotonic() + 600
        for pid in pids:
            while os.waitpid(pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:
                    os.kill(pid, 9)
                    sys.exit(f"worker {pid} hung")
                time.sleep(0.05)
""")


@pytest.mark.slow
@pytest.mark.parametrize("threads", ["2", "1"])
def test_workers_forked_after_mxnet_import_run_the_network_correctly(resnet18, tmp_path, threads):
    """DECISIONS 8: fork after MXNet's import must neither hang nor change results."""
    env = {**os.environ, "OMP_NUM_THREADS": threads}
    forks = 8
    for mode in ("fresh", "preload"):
        subprocess.run([sys.executable, "-c", _FORKS, mode, resnet18, str(tmp_path), str(forks)],
                       env=env, check=True, timeout=1800)
    fresh = np.load(tmp_path / "fresh.npy")
    for i in range(forks):
        np.testing.assert_allclose(np.load(tmp_path / f"child-{i}.npy"), fresh, rtol=1e-4,
                                   atol=1e-5)
