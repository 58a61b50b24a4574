"""mxsql: MXNet image classification as Spark SQL functions, a plugin for PySpark 4."""

from pathlib import Path

from setuptools import setup

# MXNet 1.9.1 installs only on Python <= 3.11 and needs numpy < 1.24 (it uses np.bool).
# There, the ONNX Runtime engine (spark.mxsql.model.NAME.engine=onnxruntime) is optional,
# pinned to the pair checked to run with numpy 1.23.5. On 3.12+, where MXNet cannot
# install, ONNX Runtime is the engine (our converter reads the checkpoints), with numpy 2;
# onnx 1.23 and onnxruntime 1.32 were checked there.
MXNET_PY = "python_version < '3.12'"
NO_MXNET_PY = "python_version >= '3.12'"
ONNX = [f"onnx==1.14.1; {MXNET_PY}", f"onnxruntime==1.32.0; {MXNET_PY}"]
BI = [
    "sqlalchemy>=2",
    "pyhive>=0.7",
    "thrift>=0.16",
    "thrift-sasl>=0.4",
    "pure-sasl>=0.6",
]

setup(
    name="mxsql",
    version="0.1.0",
    description="MXNet image classification as vectorized Spark SQL functions",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.9,<3.14",
    # One import namespace: the folders udfs/ and registry/ install as mxsql.udfs and
    # mxsql.registry; `mxsql` itself is a namespace package and nothing else is installed.
    packages=["mxsql.udfs", "mxsql.udfs.s3", "mxsql.registry"],
    package_dir={"mxsql.udfs": "udfs", "mxsql.udfs.s3": "udfs/s3", "mxsql.registry": "registry"},
    package_data={"mxsql.registry": ["spark-defaults.conf"]},
    install_requires=[
        "pyspark==4.3.0",
        f"mxnet==1.9.1; {MXNET_PY}",
        # mxnet 1.9.1 uses np.bool, removed in numpy 1.24.
        f"numpy==1.23.5; {MXNET_PY}",
        f"numpy>=2; {NO_MXNET_PY}",
        f"onnx>=1.23,<1.24; {NO_MXNET_PY}",
        f"onnxruntime>=1.32,<1.33; {NO_MXNET_PY}",
        # pandas 2.3 is the newest line that works with numpy 1.23.
        "pandas>=2.3,<2.4",
        # pyarrow 26 refuses numpy 1.x; 18-25 work with numpy 1.23.5.
        f"pyarrow>=18,<26; {MXNET_PY}",
        f"pyarrow>=18; {NO_MXNET_PY}",
        "pillow>=10",
        "boto3>=1.28",
    ],
    extras_require={
        "onnx": ONNX,
        # The mxsql:// SQLAlchemy dialect for BI tools (mxsql.registry.dialect).
        "bi": BI,
        "test": [
            *ONNX,
            *BI,
            "pytest>=8",
            "moto[server]>=5",
            # scikit-learn 1.6 needs a newer numpy; its bundled digits are real images.
            f"scikit-learn<1.6; {MXNET_PY}",
            f"scikit-learn>=1.6; {NO_MXNET_PY}",
            "psutil>=5",
        ],
    },
    entry_points={
        "console_scripts": [
            "mxsql=mxsql.registry.shell:main",
            "mxsql-thriftserver=mxsql.registry.thriftserver:main",
        ],
        "sqlalchemy.dialects": [
            "mxsql=mxsql.registry.dialect:MxsqlDialect",
        ],
    },
)
