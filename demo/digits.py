"""A real model on real images: an MXNet network trained on scikit-learn's digits.

scikit-learn bundles 1,797 handwritten digits (8x8, 16 grey levels). They are written
as PNG files, one folder per class, and the network is trained on the training files
decoded by mxsql's own image pipeline, so SQL sees exactly what training saw.
"""

import os
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
IMAGE_SIZE = 32  # pixels a side of the PNG files
INPUT_SIZE = 16  # pixels a side of the network input
EPOCH = 0


def model_conf(prefix: str, name: str = "default") -> Dict[str, str]:
    """The spark.mxsql.model.NAME.* settings that describe the digits model."""
    from mxsql.udfs.config import model_key

    return {
        model_key(name, "uri"): prefix,
        model_key(name, "epoch"): str(EPOCH),
        model_key(name, "inputSize"): str(INPUT_SIZE),
        model_key(name, "channels"): "1",
        model_key(name, "std"): "255",
    }


def write_images(root: str) -> Tuple[List[str], List[str]]:
    """Write every digit as a PNG under root/{train,test}/NAME/; return (train, test) paths.

    One image in five is held out for testing; the split is fixed.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    train, test = [], []
    for i, (pixels, target) in enumerate(zip(digits.images, digits.target)):
        split = "test" if i % 5 == 0 else "train"
        folder = os.path.join(root, split, NAMES[target])
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{i:04d}.png")
        grey = (pixels * (255.0 / 16.0)).round().astype(np.uint8)
        Image.fromarray(grey, "L").resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR).save(path)
        (test if split == "test" else train).append(path)
    return train, test


def label_of(path: str) -> str:
    """The true class of an image written by write_images: its folder's name."""
    return os.path.basename(os.path.dirname(path))


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _network():
    import mxnet as mx

    data = mx.sym.Variable("data")
    net = mx.sym.Flatten(data)
    net = mx.sym.FullyConnected(net, num_hidden=128, name="fc1")
    net = mx.sym.Activation(net, act_type="relu", name="relu1")
    net = mx.sym.FullyConnected(net, num_hidden=len(NAMES), name="fc2")
    return mx.sym.SoftmaxOutput(net, name="softmax")


def train(image_paths: List[str], prefix: str, *, epochs: int = 40) -> None:
    """Train the digits network on image_paths and save PREFIX-symbol.json, -0000.params
    and synset.txt beside them."""
    import mxnet as mx

    from mxsql.udfs.images import load_pixels

    x = np.stack([
        load_pixels(_read(p), input_size=(INPUT_SIZE, INPUT_SIZE), channels=1,
                    resize="stretch", max_pixels=1 << 30)
        for p in image_paths
    ]).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    y = np.array([NAMES.index(label_of(p)) for p in image_paths], dtype=np.float32)

    mx.random.seed(7)
    np.random.seed(7)
    batches = mx.io.NDArrayIter(x, y, batch_size=32, shuffle=True, label_name="softmax_label")
    module = mx.mod.Module(_network(), context=mx.cpu())
    module.fit(batches, num_epoch=epochs, optimizer="adam",
               optimizer_params={"learning_rate": 0.002},
               initializer=mx.init.Xavier(), eval_metric="acc")
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    module.save_checkpoint(prefix, EPOCH)
    with open(os.path.join(os.path.dirname(prefix), "synset.txt"), "w") as f:
        f.write("".join(f"{name}\n" for name in NAMES))


def build(root: str) -> Tuple[str, List[str]]:
    """Build (once) the digits images and model under root; return (prefix, test paths)."""
    prefix = os.path.join(root, "model", "digits")
    test_dir = os.path.join(root, "images", "test")
    # synset.txt is written last: its presence means a whole earlier build.
    if os.path.exists(os.path.join(root, "model", "synset.txt")) and os.path.isdir(test_dir):
        test = sorted(
            os.path.join(d, f) for d, _, files in os.walk(test_dir) for f in files
        )
        return prefix, test
    train_paths, test = write_images(os.path.join(root, "images"))
    train(train_paths, prefix)
    return prefix, sorted(test)
