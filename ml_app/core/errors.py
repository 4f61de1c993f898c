"""Domain exceptions: each carries the HTTP status and error code the web layer answers with."""

from __future__ import annotations

from typing import Any

# Errors repeat what the client sent (a name, a field, a value): past this many characters the
# rest is left out, so a made-up 1 MB name is neither answered back nor logged at its size.
ECHO_LIMIT = 1000


def clipped(text: str) -> str:
    """`text`, or its first ECHO_LIMIT characters and how many more there were."""
    if len(text) <= ECHO_LIMIT:
        return text
    return f"{text[:ECHO_LIMIT]}... ({len(text) - ECHO_LIMIT} more characters)"


def clipped_details(details: dict[str, Any]) -> dict[str, Any]:
    """An error's details with each field name and message clipped (see `clipped`)."""
    return {
        clipped(str(key)): [clipped(m) if isinstance(m, str) else m for m in value]
        if isinstance(value, list)
        else value
        for key, value in details.items()
    }


class ApiError(Exception):
    """Base of every error the API answers on purpose; carries status, code and details."""

    status = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        details: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}  # answered with the error (e.g. Retry-After)


class BadRequest(ApiError):
    """The body is not JSON, or not the JSON object the route expects."""

    status, code = 400, "bad_request"


class InvalidInput(ApiError):
    """Well-formed JSON that fails validation (shape, names, types, finiteness)."""

    status, code = 422, "invalid_input"


class ModelNotFound(ApiError):
    """No model, version or alias by that name in the store."""

    status, code = 404, "model_not_found"


class ModelNotReady(ApiError):
    """The model exists but its artifact failed to load; the reason is in the message."""

    status, code = 503, "model_not_ready"


class Forbidden(ApiError):
    """The caller's API key is valid but may not call this model."""

    status, code = 403, "forbidden"


class PayloadTooLarge(ApiError):
    """The body or the batch exceeds the configured limit."""

    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    """The request body is not sent in a content type (or encoding) the route accepts."""

    status, code = 415, "unsupported_media_type"


class RequestTimeout(ApiError):
    """The client did not send its whole request in time (headers or body stalled)."""

    status, code = 408, "request_timeout"


class RateLimited(ApiError):
    """The client used up its rate limit; Retry-After says when the window reopens."""

    status, code = 429, "rate_limited"


class RateLimitStoreDown(ApiError):
    """The rate-limit store cannot be reached and the server is set to fail closed."""

    status, code = 503, "rate_limit_store_unavailable"


class RegistrationTimeout(ApiError):
    """Registering a version took longer than a request may (a busy server): nothing written."""

    status, code = 503, "registration_timeout"


class StoreError(Exception):
    """A model version cannot be read or trusted; the message says why, for operators."""


class FeatureStoreUnavailable(ApiError):
    """A version's feature source (Redis, Feast) cannot be reached or answered with an error."""

    status, code = 503, "feature_store_unavailable"


class FeatureStoreTimeout(ApiError):
    """A version's feature source did not answer within ML_APP_FEATURE_STORE_TIMEOUT."""

    status, code = 504, "feature_store_timeout"
