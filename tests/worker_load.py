"""Loading a model in a fresh Python process, as a Spark worker would."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Loads the model 'default' of the settings in argv[1]; prints "loaded CLASSES" or the
# ModelLoadError.
LOAD = r"""
import json, sys
from mxsql.udfs import models
from mxsql.udfs.config import parse_settings
from mxsql.udfs.errors import ModelLoadError
settings = parse_settings(json.loads(sys.argv[1]))
try:
    model = models.get_model(settings.model("default"), settings)
except ModelLoadError as e:
    print("ModelLoadError:", e)
else:
    print("loaded", model.num_classes)
"""


def start_load(conf: dict, *, shim: str = "") -> subprocess.Popen:
    """A fresh process loading the model 'default' of ``conf`` (``spark.mxsql.*`` keys);
    ``shim`` is Python run before, e.g. to make an import fail. One OpenMP thread."""
    return subprocess.Popen([sys.executable, "-c", shim + LOAD, json.dumps(conf)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=ROOT)


def load(conf: dict, *, shim: str = "", timeout: float = 180):
    """(stdout, stderr) of :func:`start_load` run to its end."""
    return start_load(conf, shim=shim).communicate(timeout=timeout)
