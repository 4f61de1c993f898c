"""Open Inference Protocol (V2) REST, as Triton, KServe and MLServer speak it, over the core."""

from __future__ import annotations

from typing import Any

import numpy as np
from flask import Blueprint, Response, current_app, request

from ml_app.core.errors import PayloadTooLarge
from ml_app.core.model import LoadedModel, Outputs
from ml_app.core.tensors import (
    HEADER_LENGTH,
    InvalidTensor,
    OutputTensor,
    Tensor,
    datatype_of,
    decode_inputs,
    split_body,
)
from ml_app.version import VERSION
from ml_app.web.body import batch_limits
from ml_app.web.json_provider import dump_bytes
from ml_app.web.openapi.operations import IRIS_ROWS, answer, failures, json_content, operation
from ml_app.web.payload_log import prediction_endpoint
from ml_app.web.protocols.common import answer_invalid_input_with_400
from ml_app.web.protocols.wire import (
    InferenceRequest,
    InferenceResponse,
    Liveness,
    ModelMetadata,
    Readiness,
    ServerMetadata,
)
from ml_app.web.responses import json_response
from ml_app.web.serving import predict_matrix, resolve_model
from ml_app.web.state import app_state

bp = Blueprint("v2", __name__, url_prefix="/v2")
answer_invalid_input_with_400(bp)
_REQUEST = InferenceRequest()
EXTENSIONS = ["binary_tensor_data"]


@bp.get("")
def server_metadata() -> Response:
    """Server name, version and extensions."""
    return json_response({"name": "ml_app", "version": VERSION, "extensions": EXTENSIONS})


@bp.get("/health/live")
def live() -> Response:
    """The process answers."""
    return json_response({"live": True})


@bp.get("/health/ready")
def ready() -> Response:
    """200 when every model's default version can serve, 503 with the reasons otherwise."""
    reasons = app_state().not_ready_reasons()
    if reasons:
        return json_response({"ready": False, "reasons": reasons}, 503)
    return json_response({"ready": True})


@bp.get("/models/<name>")
@bp.get("/models/<name>/versions/<version>")
def model_metadata(name: str, version: str | None = None) -> Response:
    """The model's versions and its input and output tensors."""
    registry = app_state().registry
    model = registry.resolve(name, version)
    return json_response(
        {
            "name": model.name,
            "versions": list(registry.entry(model.name).versions),
            "platform": "sklearn",
            "inputs": [input_metadata(model)],
            "outputs": [
                {"name": out, "datatype": datatype, "shape": shape}
                for out, (datatype, shape) in _output_shapes(model).items()
            ],
        }
    )


@bp.get("/models/<name>/ready")
@bp.get("/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None = None) -> Response:
    """200 when the model (version) can serve; 404 unknown, 503 failed to load."""
    model = app_state().registry.resolve(name, version)
    return json_response({"name": model.name, "ready": True})


@bp.post("/models/<name>/infer")
@bp.post("/models/<name>/versions/<version>/infer")
@prediction_endpoint
def infer(name: str, version: str | None = None) -> Response:
    """Predict the rows of the input tensor(s); JSON or binary tensor data in and out."""
    model = resolve_model(name, version)
    limits = batch_limits(model)
    raw, header_length = request.get_data(cache=False), request.headers.get(HEADER_LENGTH)
    header, binary = split_body(raw, header_length, limits, input_metadata(model))
    body = _REQUEST.load(header)
    matrix = tensors_to_matrix(decode_inputs(body["inputs"], binary, limits), model)
    outputs = predict_matrix(matrix)
    return _render(model, body, outputs)


def input_metadata(model: LoadedModel) -> dict[str, Any]:
    """The model's one input tensor, as its metadata describes it (and raw requests assume)."""
    return {"name": "input", "datatype": "FP64", "shape": [-1, model.n_features]}


def tensors_to_matrix(tensors: list[Tensor], model: LoadedModel) -> np.ndarray:
    """One 2-D tensor [rows, features], or one 1-D tensor per feature -> the feature matrix."""
    if len(tensors) == 1 and tensors[0].array.ndim == 2:
        matrix = tensors[0].array
        if matrix.shape[1] != model.n_features:
            raise InvalidTensor(
                f"Input {tensors[0].name!r} has shape {list(matrix.shape)}; model "
                f"{model.name!r} takes [rows, {model.n_features}]."
            )
    else:
        matrix = _columns(tensors, model)
    if not len(matrix):
        raise InvalidTensor("Inputs hold no rows.")
    limit = app_state().settings.max_batch_rows
    if len(matrix) > limit:
        raise PayloadTooLarge(
            f"Batch has {len(matrix)} rows; the limit is {limit} (ML_APP_MAX_BATCH_ROWS)."
        )
    return matrix


def _columns(tensors: list[Tensor], model: LoadedModel) -> np.ndarray:
    names = [tensor.name for tensor in tensors]
    if sorted(names) != sorted(model.feature_names):
        raise InvalidTensor(
            f"Send one 2-D input [rows, {model.n_features}], or one 1-D input per feature named "
            f"{', '.join(model.feature_names)}; got {', '.join(names)}."
        )
    columns = {}
    for tensor in tensors:
        if tensor.array.ndim != 1 and tensor.array.shape[1:] != (1,):
            raise InvalidTensor(f"Input {tensor.name!r} must have shape [rows] or [rows, 1].")
        columns[tensor.name] = tensor.array.reshape(-1)
    if len({len(column) for column in columns.values()}) != 1:
        raise InvalidTensor("Every feature input must have the same number of rows.")
    return np.column_stack([columns[feature] for feature in model.feature_names])


def _output_shapes(model: LoadedModel) -> dict[str, tuple[str, list[int]]]:
    if not model.is_classifier:
        shapes = {"predict": ("FP64", [-1])}
    else:
        shapes = {"predict": (datatype_of(np.asarray(model.class_labels)), [-1])}
        if model.has_proba:
            shapes["predict_proba"] = ("FP64", [-1, len(model.class_labels)])
    return shapes


def _output_arrays(outputs: Outputs) -> dict[str, np.ndarray]:
    if outputs.values is not None:
        return {"predict": np.asarray(outputs.values, dtype=np.float64)}
    arrays = {"predict": np.asarray(outputs.labels)}
    if outputs.probabilities is not None:
        arrays["predict_proba"] = outputs.probabilities
    return arrays


def _requested(body: dict[str, Any], available: dict[str, np.ndarray]) -> list[tuple[str, bool]]:
    """(output name, as binary) for each output to send, in the order asked."""
    default = (body.get("parameters") or {}).get("binary_data_output", False)
    asked = body.get("outputs") or [{"name": name} for name in available]
    chosen = []
    for output in asked:
        binary = (output.get("parameters") or {}).get("binary_data", default)
        if output["name"] not in available:
            raise InvalidTensor(
                f"Unknown output {output['name']!r}; this model has {', '.join(available)}."
            )
        if type(binary) is not bool:
            raise InvalidTensor("binary_data and binary_data_output must be true or false.")
        chosen.append((output["name"], binary))
    return chosen


def _render(model: LoadedModel, body: dict[str, Any], outputs: Outputs) -> Response:
    arrays = _output_arrays(outputs)
    entries, chunks = [], []
    for name, binary in _requested(body, arrays):
        array = arrays[name]
        entry, raw = OutputTensor(name, datatype_of(array), array).to_json(binary)
        entries.append(entry)
        if raw is not None:
            chunks.append(raw)
    answer: dict[str, Any] = {"model_name": model.name, "model_version": model.version}
    if body.get("id") is not None:
        answer["id"] = body["id"]
    answer["outputs"] = entries
    if not chunks:
        return json_response(answer)
    header = dump_bytes(answer)
    response = current_app.response_class(
        header + b"".join(chunks), mimetype="application/octet-stream"
    )
    response.headers[HEADER_LENGTH] = str(len(header))
    return response


# --- OpenAPI ---------------------------------------------------------------------------------

_TAG = "Open Inference Protocol V2"
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_HEADER_PARAM = {
    "name": HEADER_LENGTH,
    "in": "header",
    "required": False,
    "description": (
        "Binary tensor data extension: bytes of JSON before the raw tensor data; 0: the whole "
        "body is the model's one input, raw (rows from the byte count)"
    ),
    "schema": {"type": "integer", "minimum": 0},
}
_INFER_EXAMPLE = {
    "id": "42",
    "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP64", "data": IRIS_ROWS}],
    "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
}
OPERATIONS = {
    "v2.server_metadata": operation(
        "Server metadata", _TAG, answer("Name, version, extensions", json_content(ServerMetadata))
    ),
    "v2.live": operation("Server liveness", _TAG, answer("Live", json_content(Liveness))),
    "v2.ready": operation(
        "Server readiness",
        _TAG,
        {
            **answer("Every model can serve", json_content(Readiness)),
            **answer("Some model cannot serve; reasons listed", json_content(Readiness), 503),
        },
    ),
    "v2.model_metadata": operation(
        "Model metadata",
        _TAG,
        {**answer("Tensors", json_content(ModelMetadata)), **failures(404, 503)},
    ),
    "v2.model_ready": operation(
        "Model readiness",
        _TAG,
        {**answer("Ready", json_content(Readiness)), **failures(404, 503)},
    ),
    "v2.infer": operation(
        "Inference",
        _TAG,
        {
            **answer(
                "Outputs; application/octet-stream when any output is binary",
                {**json_content(InferenceResponse), "application/octet-stream": _BINARY},
            ),
            **failures(400, 404, 413, 429, 503),
        },
        body={
            **json_content(InferenceRequest, _INFER_EXAMPLE),
            "application/octet-stream": _BINARY,
        },
        parameters=[_HEADER_PARAM],
    ),
}
