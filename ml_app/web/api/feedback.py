"""Ground-truth feedback: `POST /feedback` and `POST /models/<name>/feedback`.

Each item (`{"request_id", "truth"}`) becomes one `ml_app.feedback` event in the payload log,
where `python -m ml_app monitor report` joins it with the prediction by request id. Feedback
lives only there: without ML_APP_PAYLOAD_LOG_DIR the routes answer 409
`feedback_needs_payload_log`; a disk that refuses the events answers 503
`payload_log_unavailable` (nothing of the request was kept: retry it).
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from ml_app.core.feedback import FeedbackNeedsPayloadLog, PayloadLogUnavailable, load_feedback
from ml_app.core.payload_events import FEEDBACK
from ml_app.core.payload_metrics import FEEDBACK_ITEMS
from ml_app.core.validation import parse_json
from ml_app.web.body import require_json
from ml_app.web.context import request_context
from ml_app.web.rate_limits import charge_rows
from ml_app.web.responses import json_response
from ml_app.web.serving import check_key_allows

bp = Blueprint("feedback", __name__)


@bp.post("/feedback")
@bp.post("/models/<name>/feedback")
def feedback(name: str | None = None) -> Response:
    """Accept ground truth for earlier predictions: one item or a list; 202 with the count."""
    context = request_context()
    state = context.state
    if state.payload is None:
        raise FeedbackNeedsPayloadLog(
            "Feedback is kept in the payload log: set ML_APP_PAYLOAD_LOG_DIR to accept it."
        )
    model = state.registry.entry(name or state.settings.default_model).name  # 404 if unknown
    check_key_allows(model)
    require_json()
    items = load_feedback(parse_json(request.get_data(cache=False)), state.settings.max_batch_rows)
    charge_rows(len(items))  # an item costs what a predicted row costs
    lines = state.payload.encoder.feedback(model, items)
    if not state.payload.writer.append(lines, FEEDBACK, len(items)):
        raise PayloadLogUnavailable(
            "The payload log cannot write now (disk full or not writable); nothing was kept: "
            "send the feedback again later."
        )
    FEEDBACK_ITEMS.labels(model).inc(len(items))
    return json_response({"accepted": len(items), "model": model}, 202)
