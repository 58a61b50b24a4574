"""SQLAlchemy's ``mxsql://`` dialect: what BI tools (Apache Superset, anything on
SQLAlchemy) use to reach ``mxsql-thriftserver``.

It is PyHive's ``hive://`` dialect with what a Spark Thrift server answers differently
from HiveServer2 put right:

- the table list: Spark's ``SHOW TABLES`` gives ``namespace, tableName, isTemporary``,
  and ``hive://`` reads the first column, so every table came back as its database;
- ``BINARY`` columns (an image's ``content``) reflect as binary, not as text;
- ``has_table`` asks about a table, not whatever text it is given: ``hive://`` runs
  ``DESCRIBE <text>``, which Spark answers for a query too (``DESCRIBE QUERY``), so
  ``pandas.read_sql("SELECT …", engine)`` took its query for a table and failed with
  "Could not reflect";
- TLS with LDAP login from the URL alone: ``mxsql://USER:PASSWORD@HOST:PORT/DB?
  ssl_ca=/path/server.pem`` (PyHive takes TLS only as a hand-built transport).

Registered with SQLAlchemy by the package (entry point ``sqlalchemy.dialects``); needs
``pip install 'mxsql[bi]'``.
"""

import re

from pyhive import hive
from pyhive.sqlalchemy_hive import HiveDialect, _type_map
from sqlalchemy import exc, types

__all__ = ["MxsqlDialect", "tls_transport"]

_TYPES = {**_type_map, "binary": types.LargeBinary, "void": types.NullType}


def tls_transport(host: str, port: int, certificate: str, user: str, password: str):
    """A Thrift transport for ``pyhive.hive.connect(thrift_transport=…)``: TLS that
    trusts ``certificate`` (a PEM file), then SASL PLAIN with ``user`` and ``password``
    (the server's LDAP login)."""
    import ssl

    import thrift_sasl
    from pyhive.hive import get_installed_sasl
    from thrift.transport import TSSLSocket

    context = ssl.create_default_context(cafile=certificate)
    socket = TSSLSocket.TSSLSocket(host, port, ssl_context=context)
    return thrift_sasl.TSaslClientTransport(
        lambda: get_installed_sasl(host=host, sasl_auth="PLAIN", username=user,
                                   password=password),
        "PLAIN", socket)


class MxsqlDialect(HiveDialect):
    """``mxsql://USER[:PASSWORD]@HOST:PORT/DATABASE[?ssl_ca=PEM]``.

    With a password the login is LDAP (``auth=LDAP``); with ``ssl_ca`` the connection
    is TLS, trusting that certificate.
    """

    name = "mxsql"
    driver = "thrift"
    supports_statement_cache = False

    @classmethod
    def import_dbapi(cls):
        return hive

    def create_connect_args(self, url):
        args, kwargs = super().create_connect_args(url)
        if kwargs.get("password") is not None:
            kwargs.setdefault("auth", "LDAP")
        return args, kwargs

    def connect(self, *cargs, **cparams):
        certificate = cparams.pop("ssl_ca", None)
        if certificate is None:
            return hive.connect(*cargs, **cparams)
        transport = tls_transport(cparams["host"], cparams["port"], certificate,
                                  cparams.get("username"), cparams.get("password"))
        return hive.connect(thrift_transport=transport, username=cparams.get("username"),
                            database=cparams.get("database", "default"))

    def get_table_names(self, connection, schema=None, **kw):
        return [name for name, temporary in self._tables(connection, schema) if not temporary]

    def get_temp_table_names(self, connection, schema=None, **kw):
        return [name for name, temporary in self._tables(connection, schema) if temporary]

    def get_view_names(self, connection, schema=None, **kw):
        query = "SHOW VIEWS"
        if schema:
            query += " IN " + self.identifier_preparer.quote_identifier(schema)
        # namespace, viewName, isTemporary
        return [row[1] for row in connection.exec_driver_sql(query) if not row[2]]

    def _tables(self, connection, schema):
        query = "SHOW TABLES"
        if schema:
            query += " IN " + self.identifier_preparer.quote_identifier(schema)
        # namespace, tableName, isTemporary
        return [(row[1], bool(row[2])) for row in connection.exec_driver_sql(query)]

    def _get_table_columns(self, connection, table_name, schema):
        quote = self.identifier_preparer.quote_identifier
        full_table = quote(table_name) if not schema else f"{quote(schema)}.{quote(table_name)}"
        try:
            return connection.exec_driver_sql(f"DESCRIBE TABLE {full_table}").fetchall()
        except exc.DBAPIError as e:
            if re.search(r"TABLE_OR_VIEW_NOT_FOUND|SCHEMA_NOT_FOUND", str(e)):
                raise exc.NoSuchTableError(full_table) from e
            raise

    def get_columns(self, connection, table_name, schema=None, **kw):
        columns = []
        for row in self._get_table_columns(connection, table_name, schema):
            name, data_type = (row[0] or "").strip(), (row[1] or "").strip()
            if not name or name.startswith("#"):
                if name == "# Partition Information":
                    break
                continue
            base = re.match(r"^\w+", data_type).group(0).lower()
            columns.append({"name": name, "type": _TYPES.get(base, types.NullType),
                            "nullable": True, "default": None})
        return columns
