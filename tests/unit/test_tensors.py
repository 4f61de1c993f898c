"""The V2 tensor codec on its own: every numeric datatype, JSON and binary, and BYTES outputs."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from ml_app.core.tensors import (
    NUMERIC_DTYPES,
    InvalidTensor,
    OutputTensor,
    datatype_of,
    decode_inputs,
)

VALUES = np.array([[0, 1, 2], [3, 4, 5]])


@pytest.mark.parametrize("datatype", sorted(set(NUMERIC_DTYPES) - {"BOOL"}))
def test_every_numeric_datatype_decodes_from_json_and_binary(datatype):
    raw = VALUES.astype(NUMERIC_DTYPES[datatype]).tobytes()
    as_json = {"name": "x", "shape": [2, 3], "datatype": datatype, "data": VALUES.ravel().tolist()}
    as_binary = {
        "name": "y",
        "shape": [2, 3],
        "datatype": datatype,
        "parameters": {"binary_data_size": len(raw)},
    }
    first, second = decode_inputs([as_json, as_binary], memoryview(raw))
    assert first.array.dtype == np.float64
    assert first.array.tolist() == second.array.tolist() == VALUES.tolist()


def test_bool_decodes_and_numbers_are_not_bools():
    spec = {"name": "b", "shape": [2], "datatype": "BOOL", "data": [True, False]}
    assert decode_inputs([spec], memoryview(b""))[0].array.tolist() == [1.0, 0.0]
    with pytest.raises(InvalidTensor, match="does not hold BOOL"):
        decode_inputs([{**spec, "data": [1, 0]}], memoryview(b""))


def test_integers_out_of_range_and_fractions_are_refused():
    spec = {"name": "i", "shape": [1], "datatype": "INT8", "data": [300]}
    with pytest.raises(InvalidTensor, match="out of the INT8 range"):
        decode_inputs([spec], memoryview(b""))
    with pytest.raises(InvalidTensor, match="does not hold UINT8"):
        decode_inputs([{**spec, "datatype": "UINT8", "data": [1.5]}], memoryview(b""))
    with pytest.raises(InvalidTensor, match="out of the UINT8 range"):
        decode_inputs([{**spec, "datatype": "UINT8", "data": [-1]}], memoryview(b""))


def test_fp16_overflow_is_not_finite():
    spec = {"name": "h", "shape": [1], "datatype": "FP16", "data": [1e6]}
    with pytest.raises(InvalidTensor, match="not finite"):
        decode_inputs([spec], memoryview(b""))


def test_bytes_outputs_are_length_prefixed_in_binary_and_strings_in_json():
    labels = np.array(["setosa", "virginica"])
    output = OutputTensor("predict", datatype_of(labels), labels)
    entry, raw = output.to_json(binary=True)
    assert entry == {
        "name": "predict",
        "datatype": "BYTES",
        "shape": [2],
        "parameters": {"binary_data_size": 4 + 6 + 4 + 9},
    }
    assert raw == struct.pack("<I", 6) + b"setosa" + struct.pack("<I", 9) + b"virginica"
    assert output.to_json(binary=False)[0]["data"] == ["setosa", "virginica"]


@pytest.mark.parametrize(
    ("values", "datatype"),
    [
        (np.array([1, 2]), "INT64"),
        (np.array([1.5]), "FP64"),
        (np.array([True]), "BOOL"),
        (np.array(["a"]), "BYTES"),
    ],
)
def test_output_datatypes(values, datatype):
    assert datatype_of(values) == datatype
    entry, raw = OutputTensor("out", datatype, values).to_json(binary=True)
    assert entry["parameters"]["binary_data_size"] == len(raw)
