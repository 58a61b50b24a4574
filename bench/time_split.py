"""Where the time goes: CPU milliseconds per image of each step of mx_classify's work
after Spark's hand-over, in one single-threaded process (as one task on one core).

Run as ``python -m bench.time_split`` with ``OMP_NUM_THREADS=1``: the files are read into
memory first (Spark's read is measured apart, by the "read" path of bench.spark_paths),
then each step runs over all of them in turn, mxsql's own code for each:

- decode: ``images.decode`` (a JPEG at reduced scale, orientation, conversion to RGB);
- resize: ``images.resized`` to the model's input;
- to tensor: ``checkpoint.model_input``, uint8 NHWC pixels to the network's float32 NCHW;
- network FP32 and network INT8: the network alone at the inference batch size, FP32 as
  MXNet runs it and the same checkpoint quantized by mxsql (``precision=int8``).

Prints one JSON object on stdout.
"""

import argparse
import json
import os
import sys
import time

import numpy as np


def _cpu_ms(step, items) -> float:
    """CPU milliseconds per item of ``step`` over ``items`` (after one untimed call)."""
    step(items[0])
    started = time.process_time()
    for item in items:
        step(item)
    return 1000 * (time.process_time() - started) / len(items)


def split(prefix: str, batch: int, files: list, calibration: str, cache_dir: str) -> dict:
    """CPU ms per image of each step over ``files`` (see the module's doc)."""
    from mxsql.udfs import engines, images
    from mxsql.udfs.checkpoint import Checkpoint, model_input
    from mxsql.udfs.config import parse_settings

    conf = {"spark.mxsql.model.resnet18.uri": prefix, "spark.mxsql.cacheDir": cache_dir}
    fp32 = parse_settings(conf)
    int8 = parse_settings({**conf, "spark.mxsql.model.resnet18.precision": "int8",
                           "spark.mxsql.model.resnet18.calibration": calibration})
    spec = fp32.model("resnet18")
    shape = dict(input_size=spec.input_size, channels=spec.channels, resize=spec.resize)
    contents = []
    for path in files:
        with open(path, "rb") as f:
            contents.append(f.read())
    decoded = [images.decode(c, max_pixels=fp32.max_image_pixels, **shape) for c in contents]
    pixels = np.stack([images.resized(img, **shape) for img in decoded])
    batches = [pixels[i:i + batch] for i in range(0, len(pixels) - batch + 1, batch)]
    if not batches:
        sys.exit(f"bench.time_split: {len(pixels)} images are fewer than a batch of {batch}")
    out = {
        "images": len(files),
        "decode": _cpu_ms(lambda c: images.decode(c, max_pixels=fp32.max_image_pixels, **shape),
                          contents),
        "resize": _cpu_ms(lambda img: images.resized(img, **shape), decoded),
        "to_tensor": _cpu_ms(lambda b: model_input(spec, b, batch), batches) / batch,
    }
    tensors = [model_input(spec, b, batch) for b in batches]
    for name, settings in (("network_fp32", fp32), ("network_int8", int8)):
        model_spec = settings.model("resnet18")
        checkpoint = Checkpoint(model_spec, model_spec.symbol_uri, model_spec.params_uri,
                                model_spec.labels_uri)
        network = engines.build(checkpoint, settings)
        network.run(tensors[0])  # oneDNN builds its kernels on the first pass
        out[name] = _cpu_ms(network.run, tensors) / batch
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--files", required=True, help="a file listing the images")
    parser.add_argument("--int8", nargs=2, required=True, metavar=("CALIBRATION", "CACHE"),
                        help="quantize from the images in CALIBRATION, kept in CACHE")
    args = parser.parse_args(argv)
    if os.environ.get("OMP_NUM_THREADS") != "1":
        sys.exit("bench.time_split: set OMP_NUM_THREADS=1 (one task on one core)")
    with open(args.files) as f:
        files = [line for line in f.read().split("\n") if line]
    print(json.dumps(split(args.prefix, args.batch, files, *args.int8)))


if __name__ == "__main__":
    main()
