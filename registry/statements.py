"""SQL text to statements, as Spark's ``spark-sql`` splits it.

The shell runs what these return; the tests run the scripts in ``sql/`` the same way.
"""

from typing import Iterable, List

__all__ = ["split_statements", "script_text"]


def split_statements(text: str) -> List[str]:
    """Split ``text`` into statements on ``;`` outside quotes and comments.

    The rules are spark-sql's (``SparkSQLCLIDriver.splitSemiColon`` and ``processLine``):
    a ``\\;`` does not split, a piece that is only a comment is dropped, and each
    statement keeps its surrounding whitespace.
    """
    pieces = _split_semicolon(text)
    statements, pending = [], ""
    for piece in pieces:
        if piece.endswith("\\"):
            pending += piece[:-1] + ";"
            continue
        pending += piece
        if pending.strip():
            statements.append(pending)
        pending = ""
    return statements


def _split_semicolon(line: str) -> List[str]:
    in_single = in_double = in_simple_comment = False
    bracket_level = 0
    escape = leaving_bracket = is_statement = False
    begin = 0
    pieces = []
    for index, ch in enumerate(line):
        if leaving_bracket:
            bracket_level -= 1
            leaving_bracket = False
        in_comment = in_simple_comment or bracket_level > 0
        if ch == "'" and not in_comment:
            if not escape and not in_double:
                in_single = not in_single
        elif ch == '"' and not in_comment:
            if not escape and not in_single:
                in_double = not in_double
        elif ch == "-":
            if not (in_double or in_single or in_comment) and line[index + 1:index + 2] == "-":
                in_simple_comment = True
        elif ch == ";":
            if not (in_single or in_double or in_comment):
                if is_statement:
                    pieces.append(line[begin:index])
                begin = index + 1
                is_statement = False
        elif ch == "\n":
            if not escape:
                in_simple_comment = False
        elif ch == "/" and not in_simple_comment:
            if in_single or in_double:
                pass
            elif bracket_level > 0 and line[index - 1] == "*":
                leaving_bracket = True
            elif line[index + 1:index + 2] == "*":
                bracket_level += 1
        if escape:
            escape = False
        elif ch == "\\":
            escape = True
        in_comment = in_simple_comment or bracket_level > 0
        is_statement = is_statement or (not in_comment and index > begin and not ch.isspace())
    end_of_bracket = leaving_bracket and bracket_level == 1
    if not end_of_bracket and (is_statement or bracket_level > 0):
        pieces.append(line[begin:])
    return pieces


def script_text(lines: Iterable[str]) -> str:
    """A script's text as spark-sql reads a file: lines that start with ``--`` dropped."""
    return "".join(line if line.endswith("\n") else line + "\n"
                   for line in lines if not line.startswith("--"))
