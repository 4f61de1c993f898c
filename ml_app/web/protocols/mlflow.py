"""MLflow's scoring protocol (`mlflow models serve`): /invocations, /ping, /version.

/invocations serves the default model (ML_APP_DEFAULT_MODEL), as an MLflow server serves one.
Errors here take MLflow's shape, `{"error_code": "BAD_REQUEST", "message": "..."}`, with MLflow's
statuses: 400 for any bad input (where native routes say 422), 415 for other content types.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, current_app, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from ml_app.core.errors import ApiError, UnsupportedMediaType, clipped
from ml_app.core.tabular import csv_rows
from ml_app.core.validation import MatrixContext
from ml_app.version import VERSION
from ml_app.web.body import batch_limits, read_json_object
from ml_app.web.context import request_context
from ml_app.web.errors import HTTP_CODES, validation_summary
from ml_app.web.openapi.operations import (
    IRIS_FEATURES,
    IRIS_ROWS,
    answer,
    failures,
    json_content,
    operation,
)
from ml_app.web.payload_log import prediction_endpoint
from ml_app.web.protocols.common import load_rows
from ml_app.web.protocols.wire import MlflowError, MlflowRequest, V1Predictions, V1Status
from ml_app.web.responses import json_response
from ml_app.web.serving import predict_matrix, resolve_model

log = logging.getLogger("ml_app.protocols.mlflow")
bp = Blueprint("mlflow", __name__)
_REQUEST = MlflowRequest()
# MLflow's error codes (mlflow.protos.databricks_pb2) for the statuses this route answers.
_ERROR_CODES = {
    400: "BAD_REQUEST",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    413: "BAD_REQUEST",
    415: "BAD_REQUEST",
    429: "REQUEST_LIMIT_EXCEEDED",
    503: "TEMPORARILY_UNAVAILABLE",
}


@bp.get("/ping")
def ping() -> Response:
    """200 when the default model can serve (MLflow's health check)."""
    resolve_model()
    return json_response({"status": "ok"})


@bp.get("/version")
def version() -> Response:
    """The server's version, as plain text (MLflow answers its own version)."""
    return current_app.response_class(VERSION, mimetype="text/plain")


@bp.post("/invocations")
@prediction_endpoint
def invocations() -> Response:
    """Predict with the default model: JSON in one of four layouts, or CSV with a header."""
    model = resolve_model()
    limits = batch_limits(model)
    matrix = load_rows(_REQUEST, _read_body(limits), limits)
    outputs = predict_matrix(matrix)
    predictions = outputs.values if outputs.values is not None else outputs.labels
    return json_response({"predictions": predictions})


def _read_body(limits: MatrixContext) -> dict[str, Any]:
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset != "utf-8":
        raise UnsupportedMediaType(f"Only UTF-8 is supported, not {charset}.")
    if request.mimetype == "text/csv":
        return {"dataframe_records": csv_rows(request.get_data(cache=False), limits)}
    if request.is_json:
        return read_json_object(limits)
    raise UnsupportedMediaType(
        f"Content-Type must be application/json or text/csv, not {request.mimetype or 'missing'}."
    )


def mlflow_error(status: int, code: str, message: str) -> Response:
    """MLflow's error body; invalid input is 400 in MLflow's protocol.

    `code` is ml_app's own error code, kept for the request log and the metrics.
    """
    status = 400 if status == 422 else status
    message = clipped(message)
    context = request_context()
    context.error_code, context.error_message = code, message
    mlflow_code = _ERROR_CODES.get(status, "INTERNAL_ERROR")
    return json_response({"error_code": mlflow_code, "message": message}, status)


def _on_api_error(exc: ApiError) -> Response:
    response = mlflow_error(exc.status, exc.code, exc.message)
    response.headers.update(exc.headers)  # e.g. Retry-After on 429
    return response


def _on_validation_error(exc: ValidationError) -> Response:
    return mlflow_error(400, "invalid_input", validation_summary(exc)[0])


def _on_http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    return mlflow_error(status, HTTP_CODES.get(status, "http_error"), exc.description or exc.name)


def _on_unexpected(exc: Exception) -> Response:
    log.exception("unhandled error", extra={"request_id": request_context().request_id})
    return mlflow_error(500, "internal_error", "Internal server error.")


bp.register_error_handler(ApiError, _on_api_error)
bp.register_error_handler(ValidationError, _on_validation_error)
bp.register_error_handler(HTTPException, _on_http_error)
bp.register_error_handler(Exception, _on_unexpected)

# --- OpenAPI ---------------------------------------------------------------------------------

_TAG = "MLflow"
_CSV_EXAMPLE = "\n".join([",".join(IRIS_FEATURES), *(",".join(map(str, row)) for row in IRIS_ROWS)])
_CSV = {"text/csv": {"schema": {"type": "string"}, "example": _CSV_EXAMPLE}}
_SPLIT_EXAMPLE = {"dataframe_split": {"columns": IRIS_FEATURES, "data": IRIS_ROWS}}
OPERATIONS = {
    "mlflow.ping": operation(
        "Health check",
        _TAG,
        {**answer("Ready", json_content(V1Status)), **failures(404, 503, schema=MlflowError)},
    ),
    "mlflow.version": operation(
        "Server version", _TAG, answer("Version", {"text/plain": {"schema": {"type": "string"}}})
    ),
    "mlflow.invocations": operation(
        "Predict with the default model",
        _TAG,
        {
            **answer("One prediction per row, in order", json_content(V1Predictions)),
            **failures(400, 404, 413, 415, 429, 503, schema=MlflowError),
        },
        body={**json_content(MlflowRequest, _SPLIT_EXAMPLE), **_CSV},
    ),
}
