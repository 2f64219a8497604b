"""What ``hub`` prints: sentences and aligned tables for people, JSON lines for scripts (``--json``).

With ``--json`` every line on stdout is one JSON object whose ``type`` says what it is: ``message`` (what
the text output says in a sentence), a table's row (``lead``, ``order``, ``schedule``, ...: the same
fields as the table's columns, under their JSON names), ``progress`` or a command's result. Errors go to
stderr as text in both modes; the exit code says whether the command did what it was asked.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

# Exit codes: 0 done; FAILED: the command ran but did not do what it was asked (a refused assignment,
# a failed redrive, a non-deterministic replay, a sync that ended failed); argparse uses 2 for bad usage.
FAILED = 1


class Output:
    def __init__(self, json_lines: bool) -> None:
        self.json_lines = json_lines

    def say(self, text: str) -> None:
        self.show("message", {"message": text}, text)

    def show(self, kind: str, fields: Mapping[str, Any], text: str) -> None:
        """``text`` for people, or ``{"type": kind, **fields}`` as one JSON line for scripts."""
        _print(json.dumps({"type": kind, **fields}, default=_plain) if self.json_lines else text)

    def table(self, kind: str, rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str]) -> None:
        """Rows as an aligned table (``columns``: field name -> header), or one JSON line per row."""
        if self.json_lines:
            for row in rows:
                _print(json.dumps({"type": kind, **row}, default=_plain))
            return
        cells = [[_cell(row.get(name)) for name in columns] for row in rows]
        widths = [max(len(text) for text in column) for column in zip(columns.values(), *cells, strict=False)]
        for line in [list(columns.values()), *cells]:
            _print("  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip())

    def fail(self, text: str) -> int:
        print(f"hub: {text}", file=sys.stderr, flush=True)
        return FAILED


def _print(text: str) -> None:
    print(text, flush=True)  # a pipe would hold the lines back otherwise: progress must show as it comes


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    return str(value)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")
