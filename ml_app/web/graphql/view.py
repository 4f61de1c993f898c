"""/graphql: Strawberry's Flask view, bound into the one pipeline, answering ml_app's codes.

The view is a blueprint like every protocol, so the request context, API keys, rate limits,
metrics, CORS and the body limit apply unchanged. Errors carry ml_app's code, status, request
id and details in `errors[].extensions`. A request refused as a whole (not JSON, no query, a
syntax error, over a limit) answers only `errors`, with that status (400, 401, 413, 415); a
request that was executed answers 200 with `data` and, for the fields that failed, `errors`
(GraphQL's convention: a query may hold several fields, some answered, some not).
"""

from __future__ import annotations

from typing import Any

from cross_web import HTTPException as StrawberryRefusal
from flask import Blueprint, Flask, Request, Response, after_this_request, request
from flask.typing import ResponseReturnValue
from graphql import GraphQLError
from marshmallow import ValidationError
from strawberry.flask.views import GraphQLView
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.types import ExecutionResult

from ml_app.core.config import Settings
from ml_app.core.errors import ApiError, BadRequest, clipped, clipped_details
from ml_app.core.validation import MatrixContext, json_kind
from ml_app.web.body import read_json_object
from ml_app.web.context import request_context
from ml_app.web.errors import register_error_shape, validation_summary
from ml_app.web.graphql.schema import build_schema
from ml_app.web.responses import json_response

GRAPHQL_URL = "/graphql"
BLUEPRINT = "graphql"
_INTERNAL = (500, "internal_error", "Internal server error.", {}, {})


def error_member(message: str, extensions: dict[str, Any]) -> dict[str, Any]:
    """One entry of `errors`: the message, and the one error shape's members as extensions."""
    return {"message": message, "extensions": extensions}


def in_graphql_shape(body: dict[str, Any]) -> dict[str, Any]:
    """The one error shape, for a request refused before GraphQL ran, as GraphQL's `errors`."""
    extensions = {key: body[key] for key in ("code", "status", "request_id", "details")}
    return {"errors": [error_member(body["error"], extensions)]}


def _member(body: dict[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    if value is not None and not isinstance(value, kind):
        wanted = json_kind(kind())
        raise BadRequest(f"{name} must be {wanted} or null, not {json_kind(value)}.")
    return value


def _value_limits() -> MatrixContext | None:
    """Rows of the widest loaded model, up to the row limit: the most values a body may hold."""
    state = request_context().state
    loaded = [
        version.model
        for entry in state.registry.snapshot().models.values()
        for version in entry.versions.values()
        if version.model is not None
    ]
    if not loaded:
        return None
    widest = max(loaded, key=lambda model: model.n_features)
    return MatrixContext(model=widest, max_rows=state.settings.max_batch_rows)


def _describe(error: GraphQLError) -> tuple[int, str, str, dict[str, Any], dict[str, str]]:
    """(status, code, message, details, headers) of one GraphQL error, in ml_app's terms."""
    if error.path is None:  # the request itself: syntax, validation, limits, variables
        return 400, "bad_request", error.message, {}, {}
    original = error.original_error
    if isinstance(original, ApiError):
        details = original.details or {}
        return original.status, original.code, original.message, details, original.headers
    if isinstance(original, ValidationError):
        message, details = validation_summary(original)
        return 422, "invalid_input", message, details, {}
    return _INTERNAL  # logged by the schema with the request id; no trace in the answer


class ModelServerGraphQLView(GraphQLView):
    """Strawberry's synchronous Flask view, reading and answering as the other routes do."""

    def parse_http_body(self, request_adapter: Any) -> GraphQLRequestData:
        """The body as the REST routes read it: JSON object (415/400), size-checked (413)."""
        body = read_json_object(_value_limits())
        return GraphQLRequestData(
            query=_member(body, "query", str),
            variables=_member(body, "variables", dict),
            operation_name=_member(body, "operationName", str),
            extensions=_member(body, "extensions", dict),
        )

    def dispatch_request(self) -> ResponseReturnValue:
        """Run the operation; Strawberry's own refusals (no query...) become 400 bad_request."""
        try:
            return self.run(request=request)
        except StrawberryRefusal as exc:
            raise BadRequest(exc.reason) from None

    def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        """data and errors, each error with ml_app's code, status, request id and details."""
        context = request_context()
        errors = []
        for error in result.errors or ():
            status, code, message, details, headers = _describe(error)
            member = error.formatted
            member["message"] = clipped(message)
            member["extensions"] = {
                "code": code,
                "status": status,
                "request_id": context.request_id,
                "details": clipped_details(details),
            }
            errors.append(member)
            if headers:  # e.g. Retry-After on rate_limited
                _send_headers(headers)
        if not errors:
            return {"data": result.data}
        context.error_code = errors[0]["extensions"]["code"]  # access line, refusal metrics
        if result.data is None and all(error.path is None for error in result.errors or ()):
            return {"errors": errors}  # refused as a whole: GraphQL answers no data at all
        return {"data": result.data, "errors": errors}

    def create_response(
        self, response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse], sub_response: Any
    ) -> Response:
        """200 once executed; a request refused as a whole, its error's status."""
        status = 200
        if isinstance(response_data, dict) and "data" not in response_data:
            status = response_data["errors"][0]["extensions"]["status"]
        return json_response(response_data, status)


def _send_headers(headers: dict[str, str]) -> None:
    @after_this_request
    def _add(response: Response) -> Response:
        response.headers.update(headers)
        return response


def register_graphql(app: Flask, settings: Settings) -> None:
    """Serve /graphql (POST only; no GraphiQL: its page loads from a CDN) for this app."""
    bp = Blueprint(BLUEPRINT, __name__)
    view = ModelServerGraphQLView.as_view(
        BLUEPRINT, schema=build_schema(settings), graphql_ide=None
    )
    bp.add_url_rule(GRAPHQL_URL, view_func=view, methods=["POST"])
    app.register_blueprint(bp)
    register_error_shape(app, BLUEPRINT, in_graphql_shape)
