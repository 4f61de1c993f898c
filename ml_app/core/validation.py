"""Request schemas: the JSON body, and one numpy-backed field for the whole feature matrix."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from itertools import chain
from typing import Any, ClassVar, NamedTuple

import numpy as np
import orjson
from marshmallow import Schema, ValidationError, fields, validates_schema
from marshmallow.experimental.context import Context

from ml_app.core.errors import BadRequest, PayloadTooLarge
from ml_app.core.model import LoadedModel

_NUMBER_TYPES = {int, float}  # bool is a subclass of int, but type() keeps them apart
_MAX_REPORTED = 20  # per-cell messages in one error body; enough to fix a payload, not a flood
# Up to this many cells, Python's math.isfinite over the parsed numbers beats numpy's ufunc and
# reduction machinery (a one-row request); beyond it numpy's single pass wins.
_SMALL_MATRIX_CELLS = 256
# Values, arrays and objects a valid body holds beyond its cells and rows: the body itself,
# its layout's wrappers and names, a few per tensor input and output.
_WRAPPERS_PER_FEATURE = 8
_WRAPPERS = 64


class MatrixContext(NamedTuple):
    """What validating a matrix needs to know: the model's features and the row limit."""

    model: LoadedModel
    max_rows: int


class FeatureRows(fields.Field):
    """Rows as lists of numbers or objects of named features -> a float64 matrix.

    The whole matrix is checked at once (types, lengths, finiteness) with set/map and numpy,
    so a 10,000-row batch validates in milliseconds; per-cell messages are built only on error.
    """

    default_error_messages: ClassVar[dict[str, str]] = {
        "not_list": "Must be a list of rows.",
        "empty": "Must contain at least one row.",
    }

    def __init__(self, *, single_row: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.single_row = single_row

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> np.ndarray:
        context: MatrixContext = Context.get()
        if self.single_row:
            rows = [value]
        elif not isinstance(value, list):
            raise self.make_error("not_list")
        elif not value:
            raise self.make_error("empty")
        else:
            check_row_count(len(value), context.max_rows)
            rows = value
        return _to_matrix(rows, context.model, self.single_row)


def check_row_count(rows: int, max_rows: int, *, at_least: bool = False) -> None:
    """413 when a batch has more rows than the limit; every layout calls it before building rows.

    `at_least`: the layout stopped counting once past the limit (CSV), so `rows` is a floor.
    """
    if rows > max_rows:
        count = f"more than {max_rows}" if at_least else str(rows)
        raise PayloadTooLarge(
            f"Batch has {count} rows; the limit is {max_rows} (ML_APP_MAX_BATCH_ROWS)."
        )


def check_cell_count(cells: int, limits: MatrixContext) -> None:
    """413 when a batch holds more values than the row limit's worth of the model's features."""
    allowed = limits.max_rows * limits.model.n_features
    if cells > allowed:
        raise PayloadTooLarge(
            f"Batch has {cells} values; the limit is {allowed} ({limits.max_rows} rows "
            f"(ML_APP_MAX_BATCH_ROWS) of {limits.model.n_features} features)."
        )


def check_value_count(raw: bytes, limits: MatrixContext | None) -> None:
    """413 before parsing a body with more values, or arrays and objects, than a batch can hold.

    Parsed, a value costs 8-32 bytes for its 2-4 bytes of text and an array or object 50-200
    bytes for 2-3, so a body of many short rows would grow a worker by 10-60 times its size
    before its row count could be read. Every value but the first follows a comma and every
    batch row is one array or object (nested tensor data: one per row and feature), so counting
    bytes bounds both, at a fraction of the cost of parsing. A comma or bracket inside a string
    counts too: bodies within the limits stay far below the bound even so.
    """
    if limits is None:
        return
    features = limits.model.n_features
    allowed = (limits.max_rows + _WRAPPERS_PER_FEATURE) * features + _WRAPPERS
    # Each counted byte needs another beside it ("1," or "[]"): short bodies cannot exceed it.
    if len(raw) <= 2 * allowed:
        return
    opened, closed = raw.count(b"[") + raw.count(b"{"), raw.count(b"]") + raw.count(b"}")
    # Unbalanced brackets are malformed JSON: the parser answers 400 for those, cheaply.
    if raw.count(b",") > allowed or min(opened, closed) > allowed:
        raise PayloadTooLarge(
            f"Request body holds more than {allowed} values; a batch is at most "
            f"{limits.max_rows} rows (ML_APP_MAX_BATCH_ROWS) of {features} features."
        )


def _to_matrix(rows: list[Any], model: LoadedModel, single_row: bool) -> np.ndarray:
    positional = _positional(rows, model)
    if positional is not None and set(map(type, chain.from_iterable(positional))) <= _NUMBER_TYPES:
        matrix = _finite_matrix(positional, model.n_features)
        if matrix is not None:
            return matrix
    raise ValidationError(_describe_errors(rows, model, single_row))


def _finite_matrix(positional: list[list[Any]], width: int) -> np.ndarray | None:
    """The numbers as a float64 matrix, or None when any is not finite (or too large)."""
    try:
        if len(positional) * width <= _SMALL_MATRIX_CELLS:
            if not all(map(math.isfinite, chain.from_iterable(positional))):
                return None
            return np.array(positional, dtype=np.float64)
        matrix = np.array(positional, dtype=np.float64)
    except OverflowError:  # an integer beyond float64's range
        return None
    return matrix if np.isfinite(matrix).all() else None


def _positional(rows: list[Any], model: LoadedModel) -> list[Any] | None:
    """Every row's values in feature order, or None when any row has the wrong shape."""
    if set(map(type, rows)) == {list}:
        # The common case, checked without a Python call per row: lists of the right length.
        return rows if set(map(len, rows)) == {model.n_features} else None
    positional = [_row_values(row, model) for row in rows]
    return None if None in positional else positional


def _row_values(row: Any, model: LoadedModel) -> list[Any] | None:
    """The row's values in feature order, or None when its shape is wrong."""
    if type(row) is list:
        return row if len(row) == model.n_features else None
    if type(row) is dict:
        if row.keys() != model.feature_index.keys():
            return None
        return [row[name] for name in model.feature_names]
    return None


def _describe_errors(rows: list[Any], model: LoadedModel, single_row: bool) -> dict[str, Any]:
    """Messages keyed by row index (batches) and column, for the first few bad places."""
    errors: dict[str, Any] = {}
    count = 0
    for index, row in enumerate(rows):
        for key, message in _row_problems(row, model):
            target = errors if single_row else errors.setdefault(str(index), {})
            target.setdefault(key, []).append(message)
            count += 1
            if count >= _MAX_REPORTED:
                return errors
    return errors or {"_schema": ["Values could not be read as numbers."]}


def _row_problems(row: Any, model: LoadedModel) -> list[tuple[str, str]]:
    if type(row) is dict:
        problems = [(k, "Unknown feature.") for k in row if k not in model.feature_index]
        problems += [(k, "Missing feature.") for k in model.feature_names if k not in row]
        items = [(k, row[k]) for k in model.feature_names if k in row]
    elif type(row) is list:
        if len(row) != model.n_features:
            return [("_schema", f"Expected {model.n_features} features, got {len(row)}.")]
        problems, items = [], [(str(i), v) for i, v in enumerate(row)]
    else:
        return [("_schema", "Must be a list of numbers or an object of named features.")]
    return problems + [(key, msg) for key, value in items if (msg := cell_problem(value))]


def cell_problem(value: Any) -> str | None:
    """Why one value cannot be a feature (not a number, not finite), or None when it can."""
    if type(value) not in _NUMBER_TYPES:
        kind = "null" if value is None else type(value).__name__
        return f"Must be a number, not {kind}."
    try:
        if np.isfinite(float(value)):
            return None
    except OverflowError:
        pass
    return "Not a finite number."


class PredictRequest(Schema):
    """One row under `features`, or a batch under `instances`: exactly one of the two."""

    features = FeatureRows(single_row=True)
    instances = FeatureRows()

    @validates_schema
    def _exactly_one(self, data: dict[str, Any], **kwargs: Any) -> None:
        if ("features" in data) == ("instances" in data):
            raise ValidationError(
                "Send exactly one of 'features' (one row) or 'instances' (a list of rows)."
            )


class BatchPredictRequest(Schema):
    """A batch of rows under `instances`."""

    instances = FeatureRows(required=True)


class SingleRowRequest(Schema):
    """One row under `features`: PredictRequest when the body has no `instances`."""

    features = FeatureRows(single_row=True, required=True)


# What JSON calls each parsed value's type: answers speak JSON, not Python.
_JSON_KINDS = {type(None): "null", bool: "a boolean", int: "a number", float: "a number"}
_JSON_KINDS |= {str: "a string", list: "an array", dict: "an object"}


def json_kind(value: Any) -> str:
    """A parsed JSON value's type as JSON names it ("null", "an array", ...)."""
    return _JSON_KINDS.get(type(value), type(value).__name__)


def parse_json_object(raw: bytes, limits: MatrixContext | None = None) -> dict[str, Any]:
    """A body's bytes as a JSON object; BadRequest when they are not one.

    With `limits`, a body too large for any batch within them is refused before it is parsed.
    """
    body = parse_json(raw, limits)
    if not isinstance(body, dict):
        raise BadRequest(f"Request body must be a JSON object, not {json_kind(body)}.")
    return body


def parse_json(raw: bytes, limits: MatrixContext | None = None) -> Any:
    """A body's bytes as any JSON value; BadRequest when empty or malformed (see above)."""
    if not raw.strip():
        raise BadRequest("Request body is empty; send a JSON object.")
    check_value_count(raw, limits)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # NaN and Infinity are not JSON, but clients send them; parse them so validation can
        # name the offending field (422) instead of rejecting the whole body as malformed.
        try:
            body = json.loads(raw)
            # The stdlib parser accepts lone surrogates ("\\ud800"), which orjson refuses and
            # no answer or log line can encode: refuse them here, once, for every route.
            json.dumps(body, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise BadRequest("Malformed JSON: a string holds a lone surrogate.") from None
        except (ValueError, RecursionError):
            raise BadRequest(f"Malformed JSON: {exc}.") from None
    return body


def load_for_model(
    schema: Schema, body: Mapping[str, Any], model: LoadedModel, max_rows: int
) -> dict[str, Any]:
    """`schema.load(body)` with the model and row limit its FeatureRows fields check against."""
    with Context(MatrixContext(model=model, max_rows=max_rows)):
        return schema.load(body)


def validate_matrix(
    schema: Schema, body: dict[str, Any], model: LoadedModel, max_rows: int
) -> tuple[np.ndarray, bool]:
    """Validate a native prediction body against the model: its matrix, and if it was one row.

    A body whose only member is one of the schema's row fields is what nearly every request
    sends: that field alone validates it, which is all `schema.load` would do for it, at a
    fraction of the cost. Anything else, and every failure, goes through `schema.load`, so
    every error keeps the schema's wording and paths.
    """
    with Context(MatrixContext(model=model, max_rows=max_rows)):
        if len(body) == 1:
            field = schema.fields.get(next(iter(body)))
            if isinstance(field, FeatureRows):
                try:
                    return field.deserialize(body[field.name], field.name, body), field.single_row
                except ValidationError:
                    pass  # reported by schema.load below, in the schema's terms
        data = schema.load(body)
    if "features" in data:
        return data["features"], True
    return data["instances"], False
