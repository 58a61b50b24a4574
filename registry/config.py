"""The driver's side of the ``spark.mxsql.*`` keys: reading them from a session, declaring
them to Spark, and rendering the key tables the README and ``spark-defaults.conf`` show.

Key names, defaults, parsers and docs live in the tables of ``mxsql.udfs.config`` (workers
parse SET values with the same rules); everything here is made from them.
"""

import os
import textwrap
from typing import Dict, Iterable, List, Tuple

from mxsql.udfs.config import (
    MODEL_KEYS, Key, Settings, global_keys, model_key, parse_settings,
)

__all__ = [
    "settings_from_session",
    "declare_keys",
    "readme_key_table",
    "readme_option_table",
    "conf_key_block",
    "documents",
    "write_documents",
]

_FIXED = "Fixed when the mx functions are registered (the shell or server start)."


def settings_from_session(spark) -> Settings:
    """Parse and validate the session's ``spark.mxsql.*`` settings (raises ConfigError)."""
    return parse_settings(spark.conf.getAll)


def declare_keys(spark) -> None:
    """Declare every global ``spark.mxsql.*`` key to Spark's SQLConf, once per JVM.

    ``SET key`` then shows the value in effect (the default when none was set) instead of
    ``<undefined>``, and ``SET -v`` lists each key with its doc. A declared default is not
    a value that was set: ``spark.conf.getAll`` still holds only keys given explicitly.
    The keys are not static: who may SET which is decided by the workers (a session) or
    the server's rules (``mxsql.registry.serverrules``). A key already declared in this
    JVM is left as it is: SQLConf refuses a second declaration.
    """
    internal = spark._jvm.org.apache.spark.sql.internal
    sql_conf = internal.SQLConf
    declared = getattr(getattr(internal, "SQLConf$"), "MODULE$")
    for name, key in global_keys().items():
        if declared.containsConfigKey(name):
            continue
        doc = key.doc if key.settable else f"{key.doc} {_FIXED}"
        builder = sql_conf.buildConf(name).doc(doc).stringConf()
        if key.default is None:
            builder.createOptional()
        else:
            builder.createWithDefaultString(key.default)


def _shown_default(key: Key) -> str:
    if key.required:
        return "required"
    return "unset" if key.default is None else f"`{key.default}`"


def _markdown_table(header: str, rows: Iterable[Tuple[str, Key, str]]) -> str:
    lines = [header, "|---|---|---|"]
    lines += [f"| `{name}` | {_shown_default(key)} | {marker}{key.doc} |"
              for name, key, marker in rows]
    return "\n".join(lines) + "\n"


def readme_key_table() -> str:
    """The README's table of every ``spark.mxsql.*`` key, model keys under ``NAME``."""
    rows = [(name, key, "SET. " if key.settable else "") for name, key in global_keys().items()]
    rows += [(model_key("NAME", key.name), key, "") for key in MODEL_KEYS]
    return _markdown_table("| key | default | |", rows)


def readme_option_table() -> str:
    """The README's table of the ``mxsql_s3`` data source's options."""
    from mxsql.udfs.s3.options import OPTIONS

    rows = [(key.name, key, "Reading only. " if key.reading_only else "") for key in OPTIONS]
    return _markdown_table("| option | default | |", rows)


def _conf_lines(name: str, key: Key, marker: str) -> List[str]:
    lines = textwrap.wrap(marker + key.doc, width=88, initial_indent="# ",
                          subsequent_indent="# ", break_on_hyphens=False)
    shown = key.default if key.default is not None else key.example
    return lines + [f"# {name:<44} {shown}"]


def conf_key_block() -> str:
    """The commented ``spark.mxsql.*`` block of ``spark-defaults.conf``: each key's doc,
    then the key with its default (or an example value), ready to uncomment."""
    lines = []
    for name, key in global_keys().items():
        lines += _conf_lines(name, key, "[SET] " if key.settable else "")
    for key in MODEL_KEYS:
        lines += _conf_lines(model_key("default", key.name), key, "")
    return "\n".join(lines) + "\n"


# Each generated region follows its marker line and ends at the next blank line.
_REGIONS = {
    "README.md": (
        ("<!-- generated from the key table by `make docs` -->\n", readme_key_table),
        ("<!-- generated from the mxsql_s3 options table by `make docs` -->\n",
         readme_option_table),
    ),
    "spark-defaults.conf": (
        ("# Generated from the key table in udfs/config.py by `make docs`.\n", conf_key_block),
    ),
}


def documents(root: str) -> Dict[str, str]:
    """README.md and spark-defaults.conf under ``root`` as they should read, their
    generated regions rendered from the key tables (the rest is kept as written)."""
    texts = {}
    for name, regions in _REGIONS.items():
        with open(os.path.join(root, name), encoding="utf-8") as f:
            text = f.read()
        for marker, render in regions:
            start = text.index(marker) + len(marker)
            end = text.index("\n\n", start) + 1
            text = text[:start] + render() + text[end:]
        texts[name] = text
    return texts


def write_documents(root: str) -> None:
    """Rewrite the generated regions of README.md and spark-defaults.conf under ``root``."""
    for name, text in documents(root).items():
        with open(os.path.join(root, name), "w", encoding="utf-8") as f:
            f.write(text)
