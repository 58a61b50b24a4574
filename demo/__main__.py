"""The demo: a real model and a real image table, classified through SQL with `mxsql`.

Builds (once) a digits model and the held-out digit PNGs under ./demo-home, then runs
sql/create_image_table.sql and sql/evaluate.sql through the mxsql shell, with the
embedded Hive metastore in the same folder: the table stays there for later runs.
"""

import os
import subprocess
import sys

from demo import digits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    home = os.path.abspath(os.environ.get("MXSQL_HOME", os.path.join(ROOT, "demo-home")))
    print(f"building the digits model and images under {home} (first run only)", flush=True)
    prefix, test_paths = digits.build(os.path.join(home, "digits"))
    images = os.path.join(home, "digits", "images", "test")
    conf = ["--conf", "spark.sql.cli.print.header=true"]
    for key, value in digits.model_conf(prefix).items():
        conf += ["--conf", f"{key}={value}"]
    mxsql = os.path.join(os.path.dirname(sys.executable), "mxsql")
    command = [
        mxsql, *conf,
        "-d", "table=digit_images", "-d", f"path={images}", "-d", "glob=*.png",
        "-d", "recursive=true", "-d", "model=default",
        "-i", os.path.join(ROOT, "sql", "create_image_table.sql"),
        "-f", os.path.join(ROOT, "sql", "evaluate.sql"),
    ]
    print(f"classifying {len(test_paths)} held-out digits through SQL:", flush=True)
    return subprocess.run(command, env={**os.environ, "MXSQL_HOME": home}, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
