"""Driver side of mxsql: the function catalog, configuration, sessions and front doors."""

from mxsql.registry.catalog import FUNCTIONS, register_all

__all__ = ["FUNCTIONS", "register_all"]
