"""Read the session's ``spark.mxsql.*`` configuration on the driver.

Key names, defaults and parsing live in ``mxsql.udfs.config`` (workers parse SET
values with the same rules); this module is the driver's door to them.
"""

from mxsql.udfs.config import PREFIX, Settings, describe_keys, parse_settings

__all__ = ["settings_from_session", "describe_keys"]


def settings_from_session(spark) -> Settings:
    """Parse and validate the session's ``spark.mxsql.*`` settings (raises ConfigError)."""
    conf = {k: v for k, v in spark.conf.getAll.items() if k.startswith(PREFIX)}
    return parse_settings(conf)
