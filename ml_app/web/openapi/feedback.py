"""OpenAPI descriptions of the feedback routes (ground truth, kept in the payload log)."""

from __future__ import annotations

from marshmallow import Schema, fields

from ml_app.core.feedback import FeedbackItem
from ml_app.web.openapi.operations import ErrorBody, answer, failures, json_content, operation

_TAG = "feedback"
_EXAMPLE = [{"request_id": "3f2a9c0e5b7d4e1f", "truth": "setosa"}]
_BODY = {"oneOf": [FeedbackItem, {"type": "array", "items": FeedbackItem}]}
_UNAVAILABLE = {
    "409": {
        "description": "feedback_needs_payload_log: ML_APP_PAYLOAD_LOG_DIR is not set",
        "content": json_content(ErrorBody),
    },
    "503": {
        "description": "payload_log_unavailable: the disk refused the events (nothing kept: "
        "send them again)",
        "content": json_content(ErrorBody),
    },
}


class FeedbackAccepted(Schema):
    """How many items were written to the payload log, and for which model."""

    accepted = fields.Integer(required=True)
    model = fields.String(required=True)


_OPERATION = operation(
    "Ground truth for earlier predictions, by request id (one item or a list)",
    _TAG,
    {
        **answer("Written to the payload log", json_content(FeedbackAccepted), 202),
        **failures(400, 404, 413, 415, 422, 429),
        **_UNAVAILABLE,
    },
    body=json_content(_BODY, _EXAMPLE),
)
OPERATIONS = {"feedback.feedback": _OPERATION}
