"""Path (1), the limit: MXNet's forward alone, and the decode+forward ceiling; (1o), the
same forward with ONNX Runtime (the optional engine); (1q), the forward of the same
checkpoint quantized to INT8 by mxsql (``precision=int8``), and the quantization itself.

Run as a child process (``python -m bench.limit``) so that ``OMP_NUM_THREADS`` is set
before MXNet is imported, as DECISIONS 16 asks. Prints one JSON object on stdout.
"""

import argparse
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def _executor(prefix: str, batch: int):
    import mxnet as mx

    symbol, arg_params, aux_params = mx.model.load_checkpoint(prefix, 0)
    exe = symbol.simple_bind(mx.cpu(), grad_req="null", data=(batch, 3, 224, 224))
    exe.copy_params_from(arg_params, aux_params, allow_extra_params=True)
    return exe


def _onnx_forward(prefix: str, cache_dir: str):
    """A function running the checkpoint with mxsql's ONNX Runtime engine (converted once
    into ``cache_dir``, threads from OMP_NUM_THREADS) on a numpy batch."""
    import mxnet as mx

    from mxsql.udfs import onnx_engine
    from mxsql.udfs.config import parse_settings

    spec = parse_settings({"spark.mxsql.model.resnet18.uri": prefix,
                           "spark.mxsql.model.resnet18.engine": "onnxruntime"}).model("resnet18")
    symbol, arg_params, aux_params = mx.model.load_checkpoint(prefix, 0)
    network = onnx_engine.load(spec, symbol, {**arg_params, **aux_params},
                               symbol_path=spec.symbol_uri, params_path=spec.params_uri,
                               cache_dir=cache_dir)
    return network.run


def _int8_model(prefix: str, calibration: str, cache_dir: str):
    """(checkpoint, settings) of the checkpoint at ``precision=int8``, calibrated on the
    images in ``calibration``, quantized into ``cache_dir``."""
    from mxsql.udfs.checkpoint import Checkpoint
    from mxsql.udfs.config import parse_settings

    settings = parse_settings({"spark.mxsql.model.resnet18.uri": prefix,
                               "spark.mxsql.model.resnet18.precision": "int8",
                               "spark.mxsql.model.resnet18.calibration": calibration,
                               "spark.mxsql.cacheDir": cache_dir})
    spec = settings.model("resnet18")
    return Checkpoint(spec, spec.symbol_uri, spec.params_uri, spec.labels_uri), settings


def _int8_forward(prefix: str, calibration: str, cache_dir: str):
    """A function running the checkpoint with mxsql's INT8 engine (quantized from the
    ``calibration`` folder once, into ``cache_dir``) on a numpy batch."""
    from mxsql.udfs import int8_engine

    return int8_engine.build(*_int8_model(prefix, calibration, cache_dir)).run


def quantize(prefix: str, calibration: str, cache_dir: str) -> dict:
    """Seconds mxsql's INT8 engine takes to quantize the checkpoint into the empty
    ``cache_dir`` (decoding the calibration images included), as a worker does once per
    machine; reading the checkpoint itself is not counted."""
    from mxsql.udfs import int8_engine

    if os.path.isdir(cache_dir) and os.listdir(cache_dir):
        sys.exit(f"bench.limit --quantize: {cache_dir} is not empty: the quantization "
                 "would be cached")
    checkpoint, settings = _int8_model(prefix, calibration, cache_dir)
    started, cpu = time.perf_counter(), time.process_time()
    int8_engine.build(checkpoint, settings)
    return {"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu,
            "images": checkpoint.spec.calibration_images}


def _mxnet_forward(prefix: str, batch: int):
    """A function running the bound checkpoint with MXNet on a numpy batch."""
    exe = _executor(prefix, batch)

    def forward(x):
        exe.forward(is_train=False, data=x)
        return exe.outputs[0].asnumpy()

    return forward


def forward_only(prefix: str, batch: int, seconds: float, start_at: float,
                 onnx_cache: str = None, int8: tuple = None) -> dict:
    """Images/s of the network on one ready float32 NCHW tensor, run repeatedly: with MXNet,
    with ONNX Runtime when ``onnx_cache`` says where the converted model is kept, or
    quantized to INT8 when ``int8`` is (calibration folder, cache folder)."""
    if onnx_cache or int8:
        forward = (_onnx_forward(prefix, onnx_cache) if onnx_cache
                   else _int8_forward(prefix, *int8))
        x = np.random.default_rng(1).uniform(0, 255, (batch, 3, 224, 224)).astype(np.float32)
    else:
        import mxnet as mx

        forward = _mxnet_forward(prefix, batch)
        x = mx.nd.array(np.random.default_rng(1).uniform(0, 255, (batch, 3, 224, 224)))
    for _ in range(2):  # oneDNN builds its kernels on the first passes
        forward(x)
    _wait_until(start_at)
    started, cpu, done = time.perf_counter(), time.process_time(), 0
    while time.perf_counter() - started < seconds:
        forward(x)
        done += batch
    return {"images": done, "seconds": time.perf_counter() - started,
            "cpu_seconds": time.process_time() - cpu}


def decode_forward(prefix: str, batch: int, files: list, start_at: float) -> dict:
    """Images/s of decode (mxsql's load_pixels) plus forward in this one process.

    The next batch is decoded in a background thread while the network runs: the best
    a single process can do with both sharing the same cores.
    """
    from mxsql.udfs import images

    exe = _executor(prefix, batch)

    def decode(paths):
        pixels = np.zeros((batch, 224, 224, 3), np.uint8)
        for i, path in enumerate(paths):
            with open(path, "rb") as f:
                pixels[i] = images.load_pixels(f.read(), input_size=(224, 224), channels=3,
                                               resize="stretch", max_pixels=2 ** 31)
        return pixels.transpose(0, 3, 1, 2).astype(np.float32)

    chunks = [files[i:i + batch] for i in range(0, len(files), batch)]
    warm = decode(chunks[0])
    exe.forward(is_train=False, data=warm)
    exe.outputs[0].asnumpy()
    _wait_until(start_at)
    started, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(decode, chunks[0])
        for i in range(len(chunks)):
            x = pending.result()
            if i + 1 < len(chunks):
                pending = pool.submit(decode, chunks[i + 1])
            exe.forward(is_train=False, data=x)
            exe.outputs[0].asnumpy()
    return {"images": len(files), "seconds": time.perf_counter() - started,
            "cpu_seconds": time.process_time() - cpu}


def _wait_until(moment: float) -> None:
    # Processes measured side by side start timing together.
    delay = moment - time.time()
    if delay > 0:
        threading.Event().wait(delay)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--start-at", type=float, default=0)
    parser.add_argument("--files", help="a file listing images: measure decode+forward")
    parser.add_argument("--onnx-cache", help="run with ONNX Runtime, the converted model kept "
                                             "in this directory")
    parser.add_argument("--int8", nargs=2, metavar=("CALIBRATION", "CACHE"),
                        help="run quantized to INT8 from the images in CALIBRATION, the "
                             "quantized model kept in CACHE")
    parser.add_argument("--quantize", action="store_true",
                        help="with --int8: only time the quantization into an empty CACHE")
    args = parser.parse_args(argv)
    if not os.environ.get("OMP_NUM_THREADS"):
        sys.exit("bench.limit: set OMP_NUM_THREADS explicitly")
    if args.quantize:
        if not args.int8:
            parser.error("--quantize needs --int8")
        result = quantize(args.prefix, *args.int8)
    elif args.files:
        with open(args.files) as f:
            files = f.read().split("\n")
        result = decode_forward(args.prefix, args.batch, [p for p in files if p], args.start_at)
    else:
        result = forward_only(args.prefix, args.batch, args.seconds, args.start_at,
                              args.onnx_cache, args.int8)
    result["threads"] = int(os.environ["OMP_NUM_THREADS"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
