"""/graphql's HTTP body and answers, as marshmallow schemas for the OpenAPI document."""

from __future__ import annotations

from marshmallow import Schema, fields

from ml_app.web.openapi.operations import (
    OWN_ERROR_BODY,
    answer,
    failures,
    json_content,
    operation,
)


class GraphQLRequest(Schema):
    """A GraphQL operation over HTTP (POST, application/json)."""

    query = fields.String(required=True, metadata={"description": "The GraphQL document"})
    variables = fields.Dict(allow_none=True, metadata={"description": "Values of its $variables"})
    operationName = fields.String(allow_none=True)  # the member's name in GraphQL over HTTP
    extensions = fields.Dict(allow_none=True)


class GraphQLErrorExtensions(Schema):
    """The one error shape's members (its message is the error's `message`)."""

    code = fields.String(required=True, metadata={"example": "invalid_input"})
    status = fields.Integer(required=True, metadata={"description": "The REST routes' status"})
    request_id = fields.String(allow_none=True, metadata={"description": "Also in X-Request-ID"})
    details = fields.Dict(required=True, keys=fields.String(), values=fields.List(fields.String()))


class GraphQLError(Schema):
    """One entry of `errors`."""

    message = fields.String(required=True)
    locations = fields.List(fields.Dict())
    path = fields.List(fields.Raw(), metadata={"description": "The field that failed"})
    extensions = fields.Nested(GraphQLErrorExtensions, required=True)


class GraphQLErrors(Schema):
    """A request refused as a whole: no data, only errors."""

    errors = fields.List(fields.Nested(GraphQLError), required=True)


class GraphQLAnswer(Schema):
    """An executed request: data, and errors for the fields that failed."""

    data = fields.Dict(required=True, allow_none=True)
    errors = fields.List(fields.Nested(GraphQLError))


_EXAMPLE = {
    "query": 'query ($rows: FeatureRows) { predict(model: "iris", rows: $rows) '
    "{ model version predictions probabilities } }",
    "variables": {"rows": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]},
}
OPERATIONS = {
    "graphql.graphql": operation(
        "GraphQL: models, model(name), predict",
        "GraphQL",
        {
            **answer(
                "Executed; fields that failed are in errors (extensions: code, status)",
                json_content(GraphQLAnswer),
            ),
            **failures(400, 413, 415, schema=GraphQLErrors),
        },
        body=json_content(GraphQLRequest, _EXAMPLE),
        **{OWN_ERROR_BODY: json_content(GraphQLErrors)},
    ),
}
