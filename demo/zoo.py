"""ResNet-18 from the MXNet model zoo, exported as a checkpoint with random weights.

For shapes and speed only, never for accuracy: nothing is downloaded.
"""

import os
from typing import Dict


def export_resnet18(root: str, *, classes: int = 1000) -> str:
    """Export resnet18_v1(pretrained=False) under root (once); return its prefix."""
    prefix = os.path.join(root, "resnet-18")
    if os.path.exists(os.path.join(root, "synset.txt")):  # written last
        return prefix
    import mxnet as mx
    from mxnet.gluon.model_zoo import vision

    os.makedirs(root, exist_ok=True)
    mx.random.seed(18)
    net = vision.resnet18_v1(pretrained=False, classes=classes)
    net.initialize(mx.init.Xavier())
    net.hybridize()
    net(mx.nd.zeros((1, 3, 224, 224)))
    net.export(prefix, epoch=0)
    with open(os.path.join(root, "synset.txt"), "w") as f:
        f.write("".join(f"n{i:08d} class {i}\n" for i in range(classes)))
    return prefix


def model_conf(prefix: str, name: str = "resnet18") -> Dict[str, str]:
    """The spark.mxsql.model.NAME.* settings for the exported ResNet-18."""
    from mxsql.udfs.config import model_key

    return {model_key(name, "uri"): prefix}
