"""The lines one process logs and another reads: each written and parsed by one module.

The writers are checked end to end where a real worker or server writes them
(test_worker_reuse, test_thriftserver); here, that the parser reads what the writer writes
inside a real log, and nothing else.
"""

import logging

import pytest

from mxsql.registry.serverprocess import (ThriftServerProcess, listening_message,
                                          parse_listening)
from mxsql.udfs.logs import (Classified, ModelLoad, classified_line, loaded_model_line,
                             parse_classified, parse_loaded_models)


def _logged(message: str) -> str:
    """``message`` as the mxsql logger's format writes it, between two other lines."""
    record = logging.LogRecord("mxsql", logging.INFO, __file__, 1, message, None, None)
    line = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s").format(record)
    return f"26/12/03 09:00:00 INFO Executor: Running task 0.0\n{line}\nnext line\n"


def test_a_loaded_model_line_reads_back_with_its_fields():
    log = _logged(loaded_model_line("resnet18", "/models/my nets/resnet18", 0.5061, 4242))
    assert parse_loaded_models(log) == [
        ModelLoad("resnet18", "/models/my nets/resnet18", 0.51, 4242)]


def test_every_loaded_model_line_of_a_log_is_read_in_order():
    log = "".join(_logged(loaded_model_line(name, f"s3://b/{name}", 1.0, pid))
                  for name, pid in (("default", 11), ("resnet18", 12), ("default", 13)))
    assert [(load.model, load.pid) for load in parse_loaded_models(log)] == [
        ("default", 11), ("resnet18", 12), ("default", 13)]


def test_a_log_without_loads_has_none():
    assert parse_loaded_models("loaded model without its fields\n") == []


def test_a_classified_line_reads_back_with_every_path():
    paths = ["file:/data/my photos/a.png", "s3://b/it's \"odd\"].png", "file:/ü/ß.jpg"]
    log = _logged(classified_line("default", 4242, paths)) + _logged(
        classified_line("resnet18", 7, []))
    assert parse_classified(log) == [Classified("default", 4242, tuple(paths)),
                                     Classified("resnet18", 7, ())]


def test_a_classified_line_cut_off_mid_write_is_not_read():
    line = classified_line("default", 1, ["file:/a.png", "file:/b.png"])
    assert parse_classified(_logged(line[:-8])) == []
    assert parse_classified(_logged(line)) == [Classified("default", 1, ("file:/a.png",
                                                                         "file:/b.png"))]


def test_the_listening_line_reads_back_as_host_and_port():
    line = listening_message("127.0.0.1", 41234, "jdbc:hive2://127.0.0.1:41234/")
    log = f"26/12/03 09:00:00 INFO mxsql-thriftserver: {line}\n"
    assert parse_listening("26/12/03 09:00:00 INFO starting\n" + log) == ("127.0.0.1", 41234)
    assert parse_listening("26/12/03 09:00:00 INFO starting\n") is None


def test_a_server_that_exits_at_once_is_reported_with_its_log(tmp_path):
    log = tmp_path / "server.log"
    server = ThriftServerProcess(["--no-such-option"], log_path=str(log), deadline=120)
    with pytest.raises(RuntimeError, match=r"(?s)exited with 2 .*unrecognized arguments: --no-such-option"):
        server.start()
    assert server.process.poll() == 2
