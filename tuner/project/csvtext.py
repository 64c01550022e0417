"""Records (flat dicts with the same keys) as CSV text that reads back exactly.

Numbers are written as JSON writes them (every digit Python keeps), a missing value as an empty
cell, a list as a JSON list, and text as itself, quoted as JSON only when it would otherwise read
back as something else (a value "1", or an empty text). Standard library only.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any


def write_csv(columns: Sequence[str], records: Sequence[dict[str, Any]]) -> str:
    """`records` as CSV: a header of `columns`, then one row per record."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for record in records:
        writer.writerow([_csv_cell(record.get(name)) for name in columns])
    return out.getvalue()


def read_csv(text: str) -> list[dict[str, Any]]:
    """The records of `write_csv`'s output."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None) or []
    return [dict(zip(header, map(_csv_value, cells), strict=True)) for cells in reader]


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return json.dumps(value) if _csv_value(value) != value else value
    return json.dumps(value, allow_nan=False)


def _csv_value(cell: str) -> Any:
    if cell == "":
        return None
    try:
        return json.loads(cell)
    except ValueError:
        return cell
