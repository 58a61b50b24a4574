"""mxsql: MXNet image classification as Spark SQL functions, a plugin for PySpark 4."""

from pathlib import Path

from setuptools import setup

# The optional ONNX Runtime engine (spark.mxsql.model.NAME.engine=onnxruntime), pinned to
# the pair checked to install and run together with numpy 1.23.5 on Python 3.11:
# mxnet 1.9.1's mxnet.onnx converter needs onnx < 1.15 (1.14.1 is the last of them);
# onnxruntime 1.32.0 asks only numpy >= 1.21.6.
ONNX = ["onnx==1.14.1", "onnxruntime==1.32.0"]

setup(
    name="mxsql",
    version="0.1.0",
    description="MXNet image classification as vectorized Spark SQL functions",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.9,<3.12",
    # One import namespace: the folders udfs/ and registry/ install as mxsql.udfs and
    # mxsql.registry; `mxsql` itself is a namespace package and nothing else is installed.
    packages=["mxsql.udfs", "mxsql.registry"],
    package_dir={"mxsql.udfs": "udfs", "mxsql.registry": "registry"},
    package_data={"mxsql.registry": ["spark-defaults.conf"]},
    install_requires=[
        "pyspark==4.3.0",
        "mxnet==1.9.1",
        # mxnet 1.9.1 uses np.bool, removed in numpy 1.24.
        "numpy==1.23.5",
        # pandas 2.3 is the newest line that works with numpy 1.23.
        "pandas>=2.3,<2.4",
        # pyarrow 26 refuses numpy 1.x; 18-25 work with numpy 1.23.5.
        "pyarrow>=18,<26",
        "pillow>=10",
        "boto3>=1.28",
    ],
    extras_require={
        "onnx": ONNX,
        "test": [
            *ONNX,
            "pytest>=8",
            "moto[server]>=5",
            # scikit-learn 1.6 needs a newer numpy; its bundled digits are real images.
            "scikit-learn<1.6",
            "pyhive>=0.7",
            "thrift>=0.16",
            "thrift-sasl>=0.4",
            "pure-sasl>=0.6",
            "psutil>=5",
        ],
    },
    entry_points={
        "console_scripts": [
            "mxsql=mxsql.registry.shell:main",
            "mxsql-thriftserver=mxsql.registry.thriftserver:main",
        ],
    },
)
