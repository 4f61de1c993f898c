"""Tabular layouts other protocols use (columns, split frames, CSV), read into native rows.

Every layout is turned into rows (lists in feature order, or objects of named features) and then
validated by the native FeatureRows field, so all protocols share one set of checks and messages.
"""

from __future__ import annotations

import csv
import io
from itertools import islice
from typing import Any, ClassVar

import numpy as np
from marshmallow import ValidationError
from marshmallow.experimental.context import Context

from ml_app.core.errors import BadRequest
from ml_app.core.validation import (
    FeatureRows,
    MatrixContext,
    check_row_count,
    check_value_count,
)


def columns_to_rows(columns: dict[str, Any], max_rows: int) -> list[dict[str, Any]]:
    """{"a": [1, 2], "b": [3, 4]} -> [{"a": 1, "b": 3}, {"a": 2, "b": 4}].

    The row count is checked against `max_rows` before any row is built.
    """
    problems = {
        name: ["Must be a list of values."] for name, v in columns.items() if type(v) is not list
    }
    if problems:
        raise ValidationError(problems)
    lengths = {len(values) for values in columns.values()}
    if len(lengths) > 1:
        raise ValidationError("Every column must have the same number of values.")
    check_row_count(next(iter(lengths), 0), max_rows)
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


class TabularRows(FeatureRows):
    """Rows as a list (like FeatureRows), or an object of named columns of equal length."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> np.ndarray:
        if isinstance(value, dict):
            context: MatrixContext = Context.get()
            value = columns_to_rows(value, context.max_rows)
        return super()._deserialize(value, attr, data, **kwargs)


class SplitFrame(FeatureRows):
    """pandas' split orientation: {"columns": [...], "data": [[...], ...], "index": [...]}."""

    default_error_messages: ClassVar[dict[str, str]] = {
        **FeatureRows.default_error_messages,
        "not_split": 'Must be an object with "data" (a list of rows) and optional "columns".',
        "bad_columns": '"columns" must be a list of distinct feature names.',
        "row_length": "Row {index} has {got} values for {expected} columns.",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> np.ndarray:
        if not isinstance(value, dict) or type(value.get("data")) is not list:
            raise self.make_error("not_split")
        rows, columns = value["data"], value.get("columns")
        context: MatrixContext = Context.get()
        check_row_count(len(rows), context.max_rows)  # before naming every cell
        if columns is not None:
            rows = self._name_cells(columns, rows)
        return super()._deserialize(rows, attr, data, **kwargs)

    def _name_cells(self, columns: Any, rows: list[Any]) -> list[Any]:
        if type(columns) is not list or not all(type(c) is str for c in columns):
            raise self.make_error("bad_columns")
        if len(set(columns)) != len(columns):
            raise self.make_error("bad_columns")
        named = []
        for index, row in enumerate(rows):
            if type(row) is not list or len(row) != len(columns):
                got = len(row) if type(row) is list else 1
                raise self.make_error("row_length", index=index, got=got, expected=len(columns))
            named.append(dict(zip(columns, row, strict=True)))
        return named


def csv_rows(raw: bytes, limits: MatrixContext) -> list[dict[str, float]]:
    """UTF-8 CSV with a header line of feature names -> rows of named numbers, as MLflow reads it.

    A leading byte-order mark is dropped, as MLflow (pandas) drops it. Cells are counted before
    parsing and reading stops once the records pass the header plus the row limit, so a refused
    body is never parsed whole.
    """
    check_value_count(raw, limits)
    # Decoded as read, so only the rows read are decoded (a StringIO of the whole text would
    # hold 4 bytes per character); "utf-8-sig" drops a leading byte-order mark.
    text = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8-sig", newline="")
    try:
        records = list(islice(filter(None, csv.reader(text)), limits.max_rows + 2))
    except UnicodeDecodeError:
        raise BadRequest("CSV body is not valid UTF-8.") from None
    except csv.Error as exc:
        raise ValidationError({"csv": [f"Not valid CSV: {exc}."]}) from None
    check_row_count(len(records) - 1, limits.max_rows, at_least=True)
    if len(records) < 2:
        raise ValidationError(
            {"csv": ["Send a header line of feature names and at least one row."]}
        )
    header, body = records[0], records[1:]
    rows = []
    for line, record in enumerate(body, start=2):
        if len(record) != len(header):
            message = f"Has {len(record)} values; the header names {len(header)} columns."
            raise ValidationError({f"csv.line {line}": [message]})
        rows.append(dict(zip(header, (_number(cell, line) for cell in record), strict=True)))
    return rows


def _number(cell: str, line: int) -> float:
    try:
        return float(cell)
    except ValueError:
        raise ValidationError({f"csv.line {line}": [f"{cell!r} is not a number."]}) from None
