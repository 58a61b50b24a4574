"""precision=int8: the checkpoint quantized by oneDNN once per machine, measured against FP32.

The digits model is calibrated on its training images and scored on the held-out ones,
through SQL, beside the same model in FP32 (DECISIONS 24). Worker logs (one ``quantized
model`` line per quantization) are read from separate processes' stderr.
"""

import glob
import os
import re
import shutil

import numpy as np
import pytest

from demo import digits as digits_demo
from mxsql.udfs import int8_engine
from mxsql.udfs.config import model_key, parse_settings
from mxsql.udfs.errors import ConfigError, ModelLoadError
from mxsql.udfs.models import LoadedModel
from tests import worker_load
from tests.s3server import FAKE_CREDENTIALS, MotoServer

QUANTIZED = re.compile(r"quantized model '(\S+)' to int8 from (\d+) images in [\d.]+ s: (\S+) "
                       r"\(pid \d+\)")


@pytest.fixture(scope="module")
def calibration(digits, tmp_path_factory):
    """The digits' training images in one folder, in the data set's order (classes mixed):
    calibration reads a set in path order, and a folder per class would give one class."""
    train = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(digits[1][0]))),
                         "train")
    folder = tmp_path_factory.mktemp("calibration")
    for path in glob.glob(os.path.join(train, "*", "*.png")):
        shutil.copy(path, folder / os.path.basename(path))
    return str(folder)


def _int8_conf(prefix: str, calibration: str, name: str = "default", **more) -> dict:
    return {**digits_demo.model_conf(prefix, name), model_key(name, "precision"): "int8",
            model_key(name, "calibration"): calibration,
            **{model_key(name, k): str(v) for k, v in more.items()}}


def _load(conf: dict) -> LoadedModel:
    settings = parse_settings(conf)
    spec = settings.models[0]
    return LoadedModel(spec, spec.symbol_uri, spec.params_uri, spec.labels_uri,
                       settings=settings)


def _quantized_folders(cache) -> list:
    return sorted(p for p in glob.glob(os.path.join(str(cache), "digits-int8-*"))
                  if os.path.isdir(p))


@pytest.fixture(scope="module")
def int8_digits(mx_conf_while, digits, calibration):
    """'digits_int8': the session's digits model at precision=int8."""
    with mx_conf_while(_int8_conf(digits[0], calibration, "digits_int8")):
        yield


def test_int8_digits_agree_with_fp32_and_keep_its_accuracy_through_sql(spark, digits_table,
                                                                       int8_digits):
    rows = spark.sql(
        "SELECT path, mx_classify(content) AS f, mx_classify(content, 'digits_int8') AS q "
        f"FROM {digits_table}").collect()
    assert len(rows) == 360
    truth = [digits_demo.label_of(r.path) for r in rows]
    fp32 = [r.f.label for r in rows]
    int8 = [r.q.label for r in rows]
    agreement = np.mean([a == b for a, b in zip(fp32, int8)])
    accuracy_fp32 = np.mean([a == t for a, t in zip(fp32, truth)])
    accuracy_int8 = np.mean([a == t for a, t in zip(int8, truth)])
    assert agreement >= 0.99
    assert abs(accuracy_int8 - accuracy_fp32) <= 0.005
    # Another network ran: INT8's probabilities are not FP32's.
    assert max(abs(r.f.probability - r.q.probability) for r in rows) > 1e-3


def _load_in_processes(conf: dict, count: int) -> str:
    """Load model 'default' in ``count`` fresh processes at once; their stderr."""
    procs = [worker_load.start_load(conf) for _ in range(count)]
    results = [p.communicate(timeout=180) for p in procs]
    for out, err in results:
        assert out.strip() == "loaded 10", err[-2000:]
    return "".join(err for _, err in results)


def test_concurrent_workers_quantize_once_and_later_ones_never(digits, calibration, tmp_path):
    conf = {**_int8_conf(digits[0], calibration, calibrationImages=64),
            "spark.mxsql.cacheDir": str(tmp_path)}
    quantized = QUANTIZED.findall(_load_in_processes(conf, 2))
    assert len(quantized) == 1, quantized
    name, images, folder = quantized[0]
    assert (name, images) == ("default", "64")
    assert _quantized_folders(tmp_path) == [folder]
    stamp = os.stat(os.path.join(folder, "int8-0000.params")).st_mtime_ns
    assert QUANTIZED.findall(_load_in_processes(conf, 1)) == []
    assert os.stat(os.path.join(folder, "int8-0000.params")).st_mtime_ns == stamp


def _changed_image(model_dir, calibration_dir):
    first = sorted(os.listdir(calibration_dir))[0]
    with open(os.path.join(calibration_dir, first), "r+b") as f:
        data = bytearray(f.read())
        f.seek(0)
        f.write(bytes(data))  # same bytes, then a chunk the PNG decoder ignores
        f.write(b"\0")


def _changed_params(model_dir, calibration_dir):
    import mxnet as mx

    path = os.path.join(model_dir, "digits-0000.params")
    params = mx.nd.load(path)
    params["arg:fc2_bias"] = params["arg:fc2_bias"] + 0.5
    mx.nd.save(path, params)


def _renamed_image(model_dir, calibration_dir):
    first = sorted(os.listdir(calibration_dir))[0]
    os.rename(os.path.join(calibration_dir, first), os.path.join(calibration_dir, "0" + first))


@pytest.mark.parametrize("change", [_changed_image, _changed_params, _renamed_image])
def test_a_changed_checkpoint_or_calibration_set_is_quantized_again(digits, calibration,
                                                                    tmp_path, change):
    model_dir = tmp_path / "model"
    shutil.copytree(os.path.dirname(digits[0]), model_dir)
    calibration_dir = tmp_path / "calibration"
    os.makedirs(calibration_dir)
    for name in sorted(os.listdir(calibration))[:16]:
        shutil.copy(os.path.join(calibration, name), calibration_dir / name)
    conf = {**_int8_conf(str(model_dir / "digits"), str(calibration_dir), calibrationImages=16),
            "spark.mxsql.cacheDir": str(tmp_path / "cache")}
    _load(conf)
    _load(conf)
    assert len(_quantized_folders(tmp_path / "cache")) == 1
    change(str(model_dir), str(calibration_dir))
    _load(conf)
    assert len(_quantized_folders(tmp_path / "cache")) == 2


def test_calibration_reads_the_first_images_in_path_order_skipping_hidden_files(digits,
                                                                                tmp_path):
    source = digits[1]
    folder = tmp_path / "calibration"
    for relative in ("b/2.png", "a/1.png", "a.png", "c.png", "_SUCCESS", ".hidden.png"):
        os.makedirs(os.path.dirname(folder / relative), exist_ok=True)
        shutil.copy(source[0], folder / relative)
    conf = {**_int8_conf(digits[0], str(folder), calibrationImages=3),
            "spark.mxsql.cacheDir": str(tmp_path / "cache")}
    _load(conf)
    (quantized,) = _quantized_folders(tmp_path / "cache")
    with open(os.path.join(quantized, "calibration.txt")) as f:
        used = [line.split("\t")[0] for line in f]
    assert used == [str(folder / "a.png"), str(folder / "a/1.png"), str(folder / "b/2.png")]


def test_int8_without_calibration_is_refused_naming_both_keys(digits):
    conf = {**digits_demo.model_conf(digits[0]), "spark.mxsql.model.default.precision": "int8"}
    with pytest.raises(ConfigError, match=re.escape(
            "spark.mxsql.model.default.precision=int8 needs "
            "spark.mxsql.model.default.calibration")):
        parse_settings(conf)


def test_int8_on_onnxruntime_is_refused_naming_both_keys(digits, calibration):
    conf = {**_int8_conf(digits[0], calibration),
            "spark.mxsql.model.default.engine": "onnxruntime"}
    with pytest.raises(ConfigError, match=re.escape(
            "spark.mxsql.model.default.engine=onnxruntime cannot run "
            "spark.mxsql.model.default.precision=int8")):
        parse_settings(conf)


def test_an_empty_calibration_folder_names_the_key(digits, tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "_SUCCESS").write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"spark\.mxsql\.model\.default\.calibration: no "
                                             r"images under "):
        _load({**_int8_conf(digits[0], str(tmp_path / "empty")),
               "spark.mxsql.cacheDir": str(tmp_path / "cache")})


def test_a_missing_calibration_folder_names_the_key(digits, tmp_path):
    with pytest.raises(ModelLoadError, match=r"spark\.mxsql\.model\.default\.calibration: "
                                             r"\S+/nowhere is not a folder"):
        _load({**_int8_conf(digits[0], f"file://{tmp_path}/nowhere"),
               "spark.mxsql.cacheDir": str(tmp_path / "cache")})


def test_an_undecodable_calibration_file_names_the_key_and_the_file(digits, tmp_path):
    folder = tmp_path / "calibration"
    folder.mkdir()
    shutil.copy(digits[1][0], folder / "a.png")
    (folder / "b.png").write_bytes(b"not a png")
    with pytest.raises(ModelLoadError, match=r"spark\.mxsql\.model\.default\.calibration: "
                                             r"\S+/b\.png is not an image the model can read"):
        _load({**_int8_conf(digits[0], str(folder)),
               "spark.mxsql.cacheDir": str(tmp_path / "cache")})
    assert _quantized_folders(tmp_path / "cache") == []


def test_a_cpu_without_avx2_is_an_error_that_says_how_to_go_back_to_fp32(digits, calibration,
                                                                         tmp_path, monkeypatch):
    """This CPU has AVX2: the check reads a copy of its /proc/cpuinfo without the flag."""
    with open("/proc/cpuinfo") as f:
        text = f.read()
    fake = tmp_path / "cpuinfo"
    fake.write_text(re.sub(r"\bavx2\b", "", text))
    monkeypatch.setattr(int8_engine, "_CPUINFO", str(fake))
    with pytest.raises(ModelLoadError, match=r"spark\.mxsql\.model\.default\.precision=int8: "
                                             r"this CPU cannot run .*lacks avx2.*set "
                                             r"spark\.mxsql\.model\.default\.precision=fp32"):
        _load({**_int8_conf(digits[0], calibration),
               "spark.mxsql.cacheDir": str(tmp_path / "cache")})
    assert not os.path.exists(tmp_path / "cache")
    assert int8_engine.cpu_lacks(str(tmp_path / "missing")) == ["x86-64 flags"]


def test_a_network_onednn_cannot_quantize_names_the_key(digits, calibration, tmp_path):
    """Its only layer sums each channel: no convolution or fully connected layer."""
    import mxnet as mx

    net = mx.sym.softmax(mx.sym.sum(mx.sym.Variable("data"), axis=(2, 3)))
    prefix = str(tmp_path / "sums")
    net.save(prefix + "-symbol.json")
    mx.nd.save(prefix + "-0000.params", {})
    (tmp_path / "synset.txt").write_text("a\n")
    conf = {model_key("default", "uri"): prefix, model_key("default", "inputSize"): "16",
            model_key("default", "channels"): "1", model_key("default", "precision"): "int8",
            model_key("default", "calibration"): calibration,
            "spark.mxsql.cacheDir": str(tmp_path / "cache")}
    with pytest.raises(ModelLoadError, match=r"spark\.mxsql\.model\.default\.precision=int8: "
                                             r"oneDNN cannot quantize any convolution or fully "
                                             r"connected layer of model 'default'"):
        _load(conf)


@pytest.fixture(scope="module")
def moto():
    with MotoServer() as server:
        yield server


def test_calibration_images_from_s3_are_quantized_once(digits, calibration, moto, tmp_path,
                                                       monkeypatch):
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    s3 = moto.client()
    s3.create_bucket(Bucket="calibration")
    for name in sorted(os.listdir(calibration))[:20]:
        with open(os.path.join(calibration, name), "rb") as f:
            s3.put_object(Bucket="calibration", Key=f"digits/{name}", Body=f.read())
    conf = {**_int8_conf(digits[0], "s3://calibration/digits/", calibrationImages=16),
            "spark.mxsql.cacheDir": str(tmp_path / "cache"),
            "spark.mxsql.s3.endpoint": moto.endpoint}
    model = _load(conf)
    (quantized,) = _quantized_folders(tmp_path / "cache")
    with open(os.path.join(quantized, "calibration.txt")) as f:
        used = [line.split("\t")[0] for line in f]
    assert used == [f"s3://calibration/digits/{n}" for n in sorted(os.listdir(calibration))[:16]]
    stamp = os.stat(os.path.join(quantized, "int8-0000.params")).st_mtime_ns
    _load(conf)
    assert _quantized_folders(tmp_path / "cache") == [quantized]
    assert os.stat(os.path.join(quantized, "int8-0000.params")).st_mtime_ns == stamp
    pixels = np.full((1, 16, 16, 1), 0, np.uint8)
    assert model.predict(pixels, 1).shape == (1, 10)
