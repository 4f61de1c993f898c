"""The payload log's events: CloudEvents 1.0 in structured JSON form, one line each.

`ml_app.inference`: one per prediction a request made (a GraphQL query may make several), or
one for a request refused before predicting; `id` = the request id, `<request id>#<n>` for the
n-th prediction (n >= 2), and `data.request_id` = the request id.
`ml_app.feedback`: one per ground-truth item, `id` a fresh uuid4, joined to its prediction by
`data.request_id`. Inputs and outputs over `max_bytes` (as JSON) are replaced by their sizes and
the sha256 of the inputs' JSON, so one huge batch cannot fill the disk or stall the shipper.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from ml_app.core.model import LoadedModel, Outputs

# The request id is the inference event's id, echoed into logs and headers too: only a short,
# plain token from a caller is accepted as one.
SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
# What feedback names a prediction by: its request id, with `#<n>` for the n-th (n >= 2)
# prediction of a request that made several (a GraphQL query); no request id holds a `#`.
PREDICTION_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}(#([2-9]|[1-9][0-9]{1,5}))?$")
REQUEST_ID_HEADER = "X-Request-ID"
INFERENCE = "ml_app.inference"
FEEDBACK = "ml_app.feedback"
_LINE = orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_UTC_Z


def request_id_from(incoming: str) -> str:
    """The caller's request id when it is a short plain token, else a fresh random one."""
    # 128 random bits as 32 hex digits, like uuid4().hex at a fifth of the cost.
    return incoming if SAFE_REQUEST_ID.match(incoming) else os.urandom(16).hex()


@dataclass(slots=True)
class InferenceRecord:
    """What one prediction request did, as the request pipeline saw it when answering."""

    request_id: str
    route: str | None  # the URL rule that served it
    status: int
    latency_ms: float
    model: LoadedModel | None = None  # None when refused before a model was resolved
    arm: str | None = None  # the version a traffic split chose, when a split decided
    shadows: tuple[LoadedModel, ...] = ()
    key_id: str | None = None
    matrix: np.ndarray | None = None  # the validated rows, once they existed
    outputs: Outputs | None = None  # what the model said, when it was asked
    error: tuple[str, str] | None = None  # (code, message) of a refusal
    ordinal: int = 1  # the request's n-th prediction (a GraphQL query may make several)


def prediction_id(request_id: str, ordinal: int) -> str:
    """The event id of a request's n-th prediction: the request id itself for the first."""
    return request_id if ordinal == 1 else f"{request_id}#{ordinal}"


class EventEncoder:
    """Encodes events of one host, with the size setting for inputs and outputs."""

    def __init__(self, max_bytes: int, hostname: str | None = None) -> None:
        self.source = f"/ml_app/{hostname or socket.gethostname()}"
        self.max_bytes = max_bytes

    def inference(self, record: InferenceRecord) -> bytes:
        """The `ml_app.inference` event line of one prediction (or of a request refused before)."""
        model = record.model
        data: dict[str, Any] = {
            "request_id": record.request_id,
            "model": model.name if model is not None else None,
            "version": model.version if model is not None else None,
            "arm": record.arm,
            "shadow": ",".join(s.version for s in record.shadows) or None,
            "key_id": record.key_id,
            "route": record.route,
            "status": record.status,
            "latency_ms": round(record.latency_ms, 3),
        }
        data.update(self._payload(record))
        data["error"] = (
            {"code": record.error[0], "error": record.error[1]}
            if record.error is not None
            else None
        )
        subject = model.name if model is not None else None
        event_id = prediction_id(record.request_id, record.ordinal)
        return orjson.dumps(_event(event_id, INFERENCE, subject, data, self.source), option=_LINE)

    def feedback(self, model: str, items: Iterable[Mapping[str, Any]]) -> bytes:
        """One `ml_app.feedback` event line per item (`request_id`, `truth`), joined."""
        lines = []
        for item in items:
            data = {"request_id": item["request_id"], "model": model, "truth": item["truth"]}
            event = _event(uuid.uuid4().hex, FEEDBACK, model, data, self.source)
            lines.append(orjson.dumps(event, option=_LINE))
        return b"".join(lines)

    def _payload(self, record: InferenceRecord) -> dict[str, Any]:
        """`inputs`, `outputs` and `truncated`: the data, or its sizes and hash when too large."""
        if record.matrix is None or record.model is None:
            return {"inputs": None, "outputs": None, "truncated": None}
        inputs = orjson.dumps(
            {"feature_names": record.model.feature_names, "rows": _rows(record.matrix)},
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        outputs = b"null" if record.outputs is None else _outputs_json(record.outputs)
        if len(inputs) + len(outputs) <= self.max_bytes:
            return {
                "inputs": orjson.Fragment(inputs),
                "outputs": orjson.Fragment(outputs),
                "truncated": None,
            }
        truncated = {
            "input_bytes": len(inputs),
            "output_bytes": len(outputs) if record.outputs is not None else 0,
            "sha256": hashlib.sha256(inputs).hexdigest(),
        }
        return {"inputs": None, "outputs": None, "truncated": truncated}


def _event(
    event_id: str, event_type: str, subject: str | None, data: dict[str, Any], source: str
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": event_type,
        "time": datetime.now(UTC),
        "datacontenttype": "application/json",
        "subject": subject,
        "data": data,
    }


def _rows(matrix: np.ndarray) -> np.ndarray:
    # orjson writes C-contiguous arrays natively; a transposed view (V2 columns) is copied once.
    return matrix if matrix.flags.c_contiguous else np.ascontiguousarray(matrix)


def _outputs_json(outputs: Outputs) -> bytes:
    predictions = outputs.values if outputs.values is not None else outputs.labels
    probabilities = outputs.probabilities
    if probabilities is not None:
        probabilities = _rows(probabilities)
    return orjson.dumps(
        {"predictions": predictions, "probabilities": probabilities},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
