"""The GraphQL schema: queries models, model(name) and predict, and the limits it runs under."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import strawberry
from graphql import GraphQLError
from graphql.validation import NoSchemaIntrospectionCustomRule
from marshmallow import Schema, ValidationError
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from ml_app.core.config import Settings
from ml_app.core.errors import ApiError, InvalidInput
from ml_app.core.payload_events import prediction_id
from ml_app.core.validation import FeatureRows as RowsField
from ml_app.core.validation import MatrixContext, validate_matrix
from ml_app.web.body import batch_limits
from ml_app.web.context import request_context
from ml_app.web.graphql.types import (
    SCALARS,
    FeatureRows,
    Model,
    NamedFeatureRows,
    Prediction,
)
from ml_app.web.serving import predict_matrix, resolve_model, rows_for_entities
from ml_app.web.state import app_state

log = logging.getLogger("ml_app.graphql")
_CACHED_DOCUMENTS = 256  # distinct query texts kept parsed and validated, per worker
_ROW_KINDS = {"rows": (list, "a list of numbers"), "namedRows": (dict, "an object of features")}


class _RowArguments(Schema):
    """predict's row arguments, validated as the REST routes validate rows."""

    rows = RowsField()
    namedRows = RowsField()  # the GraphQL argument's name


_ROW_ARGUMENTS = _RowArguments()


def _check_row_kinds(arguments: dict[str, Any]) -> None:
    """Each row is the kind its argument says: lists in rows, objects in namedRows."""
    details: dict[str, list[str]] = {}
    for argument, rows in arguments.items():
        kind, wording = _ROW_KINDS[argument]
        if not isinstance(rows, list) or set(map(type, rows)) <= {kind}:
            continue  # all of the right kind (or not a list: the validator says so)
        for index, row in enumerate(rows):
            if not isinstance(row, kind):
                details[f"{argument}.{index}"] = [f"Must be {wording}."]
    if details:
        first, messages = next(iter(details.items()))
        raise InvalidInput(f"Invalid input: {first}: {messages[0]}", details)


def _matrix(arguments: dict[str, Any], limits: MatrixContext) -> np.ndarray:
    _check_row_kinds(arguments)
    return validate_matrix(_ROW_ARGUMENTS, arguments, limits.model, limits.max_rows)[0]


@strawberry.type
class Query:
    """What /graphql answers."""

    @strawberry.field(description="Every model in the store, as GET /models/<name> shows it.")
    def models(self) -> list[Model]:
        snapshot = app_state().registry.snapshot()  # one consistent state for the whole answer
        return [Model.from_entry(entry) for entry in snapshot.models.values()]

    @strawberry.field(description="The model unversioned predictions serve by default.")
    def default_model(self) -> str:
        return app_state().registry.snapshot().default_model

    @strawberry.field(description="One model (an error with code model_not_found if unknown).")
    def model(self, name: str) -> Model | None:
        return Model.from_entry(app_state().registry.entry(name))

    @strawberry.field(
        description="Predict rows with a model (default: ML_APP_DEFAULT_MODEL) and a version or "
        "alias (default: its split, production alias or newest version), as the REST routes do."
    )
    def predict(
        self,
        model: str | None = None,
        version: str | None = None,
        rows: FeatureRows | None = None,
        named_rows: NamedFeatureRows | None = None,
        entities: strawberry.scalars.JSON | None = None,
    ) -> Prediction | None:
        loaded = resolve_model(model, version)  # first, as REST: 403/404 before the rows
        given = {"rows": rows, "namedRows": named_rows, "entities": entities}
        sources = {name: value for name, value in given.items() if value is not None}
        if len(sources) != 1:
            message = "Send exactly one of rows, namedRows or entities."
            raise InvalidInput(message, {"arguments": [message]})
        if entities is not None:
            matrix = rows_for_entities(loaded, entities)  # as the native routes do
        else:
            matrix = _matrix(sources, batch_limits(loaded))
        outputs = predict_matrix(matrix)
        context = request_context()  # this prediction is the request's latest
        made = prediction_id(context.request_id, len(context.predictions))
        return Prediction.from_outputs(loaded, outputs, made)


class _ModelServerSchema(strawberry.Schema):
    """Logs only unexpected failures (with the request id); refusals are answers, not errors."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors:
            original = error.original_error
            # Errors without a path are the request's (syntax, validation): answered with 400.
            if error.path is not None and not isinstance(original, ApiError | ValidationError):
                log.error(
                    "unhandled error in a GraphQL resolver",
                    exc_info=original,
                    extra={"request_id": request_context().request_id},
                )


def build_schema(settings: Settings) -> strawberry.Schema:
    """The schema with its protection: depth, alias and token limits; introspection optional.

    graphql-core validates a small query in ~4 ms here (a REST prediction takes ~0.4 ms), so
    parsed and validated documents are cached (LRU, per query text): clients send the same
    query with new variables. The limits' rules are built once, so the cache can recognise them;
    a refused query stays refused, and the token limit bounds what an uncached query costs.
    """
    rules = [
        depth_rule(settings.graphql_max_depth, None),
        aliases_rule(settings.graphql_max_aliases),
    ]
    if not settings.graphql_introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    # Factories, not instances: Strawberry builds each extension afresh for every request.
    extensions: list[Callable[[], SchemaExtension]] = [
        functools.partial(MaxTokensLimiter, max_token_count=settings.graphql_max_tokens),
        functools.partial(AddValidationRules, rules),
        functools.partial(ParserCache, maxsize=_CACHED_DOCUMENTS),
        functools.partial(ValidationCache, maxsize=_CACHED_DOCUMENTS),
    ]
    return _ModelServerSchema(
        query=Query, extensions=extensions, config=StrawberryConfig(scalar_map=SCALARS)
    )
