"""Ground-truth feedback: `{"request_id", "truth"}` items, validated before they are logged.

`truth` is what the answer should have been: one value for a one-row request, or a list with
one value per predicted row. A value is a class label (string, number or boolean) or a number
(regressors); never null, an object, a nested list or a non-finite number.
"""

from __future__ import annotations

import math
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from ml_app.core.errors import ApiError, BadRequest
from ml_app.core.payload_events import PREDICTION_ID
from ml_app.core.validation import check_row_count, json_kind


class FeedbackNeedsPayloadLog(ApiError):
    """Feedback is kept in the payload log, and ML_APP_PAYLOAD_LOG_DIR is not set.

    409, not 503: the server is configured without it, so a retry cannot succeed, and a
    client sending feedback to such a server must not count as a server error (5xx alerts).
    """

    status, code = 409, "feedback_needs_payload_log"


class PayloadLogUnavailable(ApiError):
    """The payload log could not write the feedback (disk full or not writable): nothing kept."""

    status, code = 503, "payload_log_unavailable"


def _truth_value(value: Any) -> Any:
    if isinstance(value, str | bool):
        return value
    if isinstance(value, int | float):
        if math.isfinite(value):
            return value
        raise ValidationError("Not a finite number.")
    kind = "null" if value is None else type(value).__name__
    raise ValidationError(f"Must be a class label or a number, not {kind}.")


class Truth(fields.Field):
    """One value (a label or a number), or a non-empty list of them, one per predicted row."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, list):
            return _truth_value(value)
        if not value:
            raise ValidationError("Must not be empty: one value per predicted row.")
        errors: dict[int, list[str]] = {}
        for index, item in enumerate(value):
            try:
                _truth_value(item)
            except ValidationError as exc:
                errors[index] = exc.messages  # type: ignore[assignment]
        if errors:
            raise ValidationError(errors)  # type: ignore[arg-type]
        return value


class FeedbackItem(Schema):
    """One prediction's ground truth, joined to it by the request id it was answered with."""

    class Meta:
        unknown = RAISE

    request_id = fields.String(
        required=True,
        validate=validate.Regexp(
            PREDICTION_ID, error="Must be a request id (X-Request-ID), or a prediction's id."
        ),
        metadata={
            "description": "The X-Request-ID the prediction was answered with; for a GraphQL "
            "query's n-th prediction (n >= 2), `<X-Request-ID>#<n>` (its `predictionId`)"
        },
    )
    truth = Truth(
        required=True,
        metadata={"description": "The true label or value; a list, one per row, for a batch"},
    )


_ITEMS = FeedbackItem(many=True)


def load_feedback(body: Any, max_items: int) -> list[dict[str, Any]]:
    """A feedback body (one item, or a list of them) as validated items; 400/413/422 otherwise."""
    if isinstance(body, dict):
        return [FeedbackItem().load(body)]
    if not isinstance(body, list):
        raise BadRequest(f"Request body must be a JSON object or array, not {json_kind(body)}.")
    if not body:
        raise ValidationError({"body": ["Send at least one feedback item."]})
    check_row_count(len(body), max_items)
    return _ITEMS.load(body)
