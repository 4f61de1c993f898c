"""Open Inference Protocol tensors in JSON, and in the binary tensor data extension.

Binary extension (what tritonclient sends by default): the body is a JSON header of
`Inference-Header-Content-Length` bytes followed by the raw little-endian bytes of every tensor
whose `parameters.binary_data_size` is set, in order. Outputs asked for as binary are appended the
same way after the response's JSON header.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from ml_app.core.errors import BadRequest
from ml_app.core.validation import (
    MatrixContext,
    check_cell_count,
    check_row_count,
    check_value_count,
)

HEADER_LENGTH = "Inference-Header-Content-Length"
# Wire datatype -> little-endian numpy dtype. BYTES has no fixed width and is output-only here.
NUMERIC_DTYPES = {
    "BOOL": np.dtype("|b1"),
    "UINT8": np.dtype("|u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("|i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
DATATYPES = (*NUMERIC_DTYPES, "BYTES")
# Which numpy kinds JSON data may parse to for each datatype family.
_JSON_KINDS = {"BOOL": "b", "UINT": "iu", "INT": "iu", "FP": "iuf"}
# str.isdigit() is true for non-ASCII digits (superscripts, Arabic-Indic); a count is ASCII.
_BYTE_COUNT = re.compile(r"[0-9]{1,18}")
_MAX_DIMENSIONS = 64  # numpy's limit on an array's dimensions
# numpy refuses a shape whose sizes (zeros skipped) times the item size exceed its index
# range; inputs are read as float64, so this many elements at most.
_MAX_ELEMENTS = np.iinfo(np.intp).max // np.dtype(np.float64).itemsize


class InvalidTensor(BadRequest):
    """A tensor the protocol cannot read: shape, datatype, data or binary layout."""

    code = "invalid_input"


@dataclass(frozen=True)
class Tensor:
    """One decoded input: its name and a float64 array of its declared shape."""

    name: str
    array: np.ndarray


def split_body(
    raw: bytes,
    header_length: str | None,
    limits: MatrixContext | None = None,
    raw_input: dict[str, Any] | None = None,
) -> tuple[Any, memoryview]:
    """The parsed JSON header and the binary section that follows it.

    A header length of 0 is a raw binary request: the whole body is the one input described by
    `raw_input` (name, datatype, shape [-1, features] from the model's metadata).
    """
    length = len(raw)
    if header_length is not None:
        digits = header_length.strip()
        if not _BYTE_COUNT.fullmatch(digits) or int(digits) > len(raw):
            raise InvalidTensor(
                f"{HEADER_LENGTH} must be a whole number of bytes no larger than the body "
                f"({len(raw)}), not {header_length!r}."
            )
        length = int(digits)
        if length == 0 and raw_input is not None:
            return raw_request_header(len(raw), raw_input), memoryview(raw)
    header_bytes = raw[:length]
    check_value_count(header_bytes, limits)
    try:
        header = orjson.loads(header_bytes)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Malformed JSON: {exc}.") from None
    if not isinstance(header, dict):
        raise BadRequest(f"Request body must be a JSON object, not {type(header).__name__}.")
    return header, memoryview(raw)[length:]


def raw_request_header(size: int, spec: dict[str, Any]) -> dict[str, Any]:
    """The JSON header a raw binary body of `size` bytes stands for: rows from the byte count."""
    name, datatype, (_, width) = spec["name"], spec["datatype"], spec["shape"]
    row_bytes = width * NUMERIC_DTYPES[datatype].itemsize
    if size == 0 or size % row_bytes:
        raise InvalidTensor(
            f"Raw binary body of {size} bytes is not a whole number of rows of input {name!r} "
            f"({width} {datatype} values, {row_bytes} bytes per row)."
        )
    tensor = {"name": name, "datatype": datatype, "shape": [size // row_bytes, width]}
    return {"inputs": [{**tensor, "parameters": {"binary_data_size": size}}]}


def decode_inputs(
    inputs: list[dict[str, Any]], binary: memoryview, limits: MatrixContext | None = None
) -> list[Tensor]:
    """Every input as float64 of its declared shape; the binary section must be used exactly.

    Shapes are checked against numpy's limits and the batch limits before any data is read.
    """
    tensors, offset = [], 0
    for spec in inputs:
        _check_shape(spec, limits)
        size = (spec.get("parameters") or {}).get("binary_data_size")
        if size is None:
            array = _from_json(spec)
        else:
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise InvalidTensor(
                    f"Input {spec['name']!r}: binary_data_size {size!r} does not fit the "
                    f"{len(binary) - offset} bytes of binary data left."
                )
            array = _from_binary(spec, binary[offset : offset + size])
            offset += size
        tensors.append(Tensor(spec["name"], array))
    if offset != len(binary):
        raise InvalidTensor(f"{len(binary) - offset} bytes of binary data belong to no input.")
    return tensors


def _element_count(spec: dict[str, Any]) -> int:
    return math.prod(spec["shape"])


def _check_shape(spec: dict[str, Any], limits: MatrixContext | None) -> None:
    """400 for a shape numpy cannot hold, 413 for one larger than the batch limits."""
    name, shape = spec["name"], spec["shape"]
    if len(shape) > _MAX_DIMENSIONS:
        raise InvalidTensor(
            f"Input {name!r}: shape has {len(shape)} dimensions; at most {_MAX_DIMENSIONS}."
        )
    if math.prod(max(size, 1) for size in shape) > _MAX_ELEMENTS:
        raise InvalidTensor(f"Input {name!r}: shape {shape} is too large for an array.")
    if limits is not None:
        check_row_count(shape[0] if shape else 1, limits.max_rows)
        check_cell_count(_element_count(spec), limits)


def _from_json(spec: dict[str, Any]) -> np.ndarray:
    name, datatype = spec["name"], spec["datatype"]
    if "data" not in spec:
        raise InvalidTensor(f"Input {name!r} has neither data nor binary_data_size.")
    _numeric_only(name, datatype)
    data, count = spec["data"], _element_count(spec)
    if type(data) is list and len(data) > count:  # refused before numpy copies every value
        raise InvalidTensor(
            f"Input {name!r}: shape {spec['shape']} holds {count} values, but data has "
            f"{'more' if data and type(data[0]) is list else len(data)}."
        )
    try:
        array = np.array(data)
    except (ValueError, TypeError, OverflowError):
        raise InvalidTensor(f"Input {name!r}: data must be a (nested) list of numbers.") from None
    family = datatype.rstrip("0123456789")
    if array.size and array.dtype.kind not in _JSON_KINDS[family]:
        raise InvalidTensor(f"Input {name!r}: data does not hold {datatype} values.")
    # The model sees what the client declared: FP32 data is rounded to FP32, as in binary.
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is caught as not finite
        typed = array.astype(NUMERIC_DTYPES[datatype])
    if family in ("INT", "UINT") and not np.array_equal(typed, array):
        raise InvalidTensor(f"Input {name!r}: data holds values out of the {datatype} range.")
    return _shaped(spec, typed)


def _from_binary(spec: dict[str, Any], chunk: memoryview) -> np.ndarray:
    name, datatype = spec["name"], spec["datatype"]
    _numeric_only(name, datatype)
    dtype = NUMERIC_DTYPES[datatype]
    expected = _element_count(spec) * dtype.itemsize
    if len(chunk) != expected:
        raise InvalidTensor(
            f"Input {name!r}: {len(chunk)} bytes of binary data, but shape {spec['shape']} of "
            f"{datatype} needs {expected}."
        )
    return _shaped(spec, np.frombuffer(chunk, dtype=dtype))


def _numeric_only(name: str, datatype: str) -> None:
    if datatype not in NUMERIC_DTYPES:
        raise InvalidTensor(
            f"Input {name!r}: datatype {datatype} is not numeric; models take numbers."
        )


def _shaped(spec: dict[str, Any], array: np.ndarray) -> np.ndarray:
    count = _element_count(spec)
    if array.size != count:
        raise InvalidTensor(
            f"Input {spec['name']!r}: shape {spec['shape']} holds {count} values, "
            f"but data has {array.size}."
        )
    # A float64 binary input is used in place (read-only): no copy of a large batch.
    values = array.astype(np.float64, copy=False).reshape(spec["shape"])
    if not np.isfinite(values).all():
        raise InvalidTensor(f"Input {spec['name']!r}: data holds values that are not finite.")
    return values


@dataclass(frozen=True)
class OutputTensor:
    """One output to send: name, wire datatype and values (numbers or strings)."""

    name: str
    datatype: str
    array: np.ndarray

    def to_json(self, binary: bool) -> tuple[dict[str, Any], bytes | None]:
        """The output's JSON entry and, when sent as binary, its raw bytes."""
        entry: dict[str, Any] = {
            "name": self.name,
            "datatype": self.datatype,
            "shape": list(self.array.shape),
        }
        if not binary:
            flat = self.array.ravel()
            entry["data"] = flat.tolist() if self.datatype == "BYTES" else flat
            return entry, None
        raw = self._raw_bytes()
        entry["parameters"] = {"binary_data_size": len(raw)}
        return entry, raw

    def _raw_bytes(self) -> bytes:
        if self.datatype != "BYTES":
            return self.array.astype(NUMERIC_DTYPES[self.datatype]).tobytes()
        # BYTES elements are each a 4-byte little-endian length, then the UTF-8 bytes. Outputs
        # repeat a few class labels: each distinct one is encoded once, then they are joined.
        values = self.array.ravel().tolist()
        encoded = {value: _bytes_element(value) for value in set(values)}
        return b"".join(map(encoded.__getitem__, values))


def _bytes_element(value: Any) -> bytes:
    """One BYTES element: its UTF-8 length as 4 little-endian bytes, then the UTF-8 bytes."""
    text = str(value).encode()
    return struct.pack("<I", len(text)) + text


def datatype_of(values: np.ndarray) -> str:
    """The wire datatype for an output array: strings are BYTES, numbers keep their kind."""
    kind = values.dtype.kind
    if kind == "b":
        return "BOOL"
    if kind in "iu":
        return "INT64"
    if kind == "f":
        return "FP64"
    return "BYTES"
