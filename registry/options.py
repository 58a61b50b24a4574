"""``KEY=VALUE`` command-line options (``--conf``, ``--hiveconf``, ``--hivevar``), read once
for the shell and the Thrift server alike."""

from typing import Iterable, List, Tuple

from mxsql.udfs.errors import ConfigError

__all__ = ["key_value_pairs"]


def key_value_pairs(option: str, texts: Iterable[str]) -> List[Tuple[str, str]]:
    """(key, value) of each ``KEY=VALUE`` text given to ``option``, in order.

    The text is split at its first ``=``, as spark-submit splits ``--conf``: the key is
    stripped and the value kept as given. Raises ConfigError naming the option and the
    text when there is no ``=`` or no key.
    """
    pairs = []
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option} expects KEY=VALUE, got {text!r}")
        pairs.append((key.strip(), value))
    return pairs
