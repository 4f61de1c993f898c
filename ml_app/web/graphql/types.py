"""The GraphQL object types and scalars, built from what the REST answers are built from."""

from __future__ import annotations

from typing import Any, NewType

import strawberry
from strawberry.scalars import JSON
from strawberry.types.scalar import ScalarDefinition

from ml_app.core.dataplane import render_native
from ml_app.core.model import LoadedModel, Outputs
from ml_app.core.snapshot import ModelEntry

# Rows stay JSON until ml_app's own validator reads them into a matrix in one numpy pass: typed
# as [[Float!]!], graphql-core would coerce every cell in Python (seconds for 10,000 rows), and
# bad input would get GraphQL's messages instead of the REST routes' codes and field paths.
# Answers are JSON scalars for the same reason: graphql-core completes each item of a typed list
# one by one, two thirds of a 1,000-row answer's time.
FeatureRows = NewType("FeatureRows", object)
NamedFeatureRows = NewType("NamedFeatureRows", object)
Predictions = NewType("Predictions", object)
ProbabilitiesByClass = NewType("ProbabilitiesByClass", object)


def _json_scalar(name: str, description: str) -> ScalarDefinition:
    return strawberry.scalar(
        name=name, description=description, serialize=lambda v: v, parse_value=lambda v: v
    )


SCALARS = {
    FeatureRows: _json_scalar(
        "FeatureRows", "Rows, each a list of numbers in the model's feature order."
    ),
    NamedFeatureRows: _json_scalar(
        "NamedFeatureRows", "Rows, each an object of every feature by name (any order)."
    ),
    Predictions: _json_scalar(
        "Predictions", "One per row: class labels (classifiers) or numbers (regressors)."
    ),
    ProbabilitiesByClass: _json_scalar(
        "ProbabilitiesByClass", "Per row, an object of each class label's probability."
    ),
}


@strawberry.type(description="An alias and the version it names.")
class AliasTarget:
    alias: str
    version: str


@strawberry.type(description="A version's share of a traffic split (0 to 1).")
class SplitShare:
    version: str
    weight: float


@strawberry.type(description="One version: load state, and its metadata.")
class ModelVersion:
    version: str
    state: str = strawberry.field(description="loaded or failed")
    load_seconds: float
    error: str | None = None
    problem: str | None = None
    metadata: JSON


@strawberry.type(description="A model: versions, aliases, traffic split, shadow and readiness.")
class Model:
    name: str
    default_version: str | None
    ready: bool
    versions: list[ModelVersion]
    aliases: list[AliasTarget] = strawberry.field(description="Aliases as configured.")
    serving: list[AliasTarget] = strawberry.field(description="What each alias really serves.")
    split: list[SplitShare] | None = strawberry.field(description="Traffic shares, if split.")
    shadow: list[str]
    problems: list[str]
    error: str | None = None

    @classmethod
    def from_entry(cls, entry: ModelEntry) -> Model:
        """The model as REST's /models/<name> describes it."""
        described = entry.describe()
        return cls(
            name=described["name"],
            default_version=described["default_version"],
            ready=described["ready"],
            versions=[_version(v) for v in described["versions"]],
            aliases=_named(described["aliases"]),
            serving=_named(described["serving"]),
            split=_shares(described["split"]),
            shadow=described["shadow"],
            problems=described["problems"],
            error=described.get("error"),
        )


def _version(described: dict[str, Any]) -> ModelVersion:
    return ModelVersion(
        version=described["version"],
        state=described["state"],
        load_seconds=described["load_seconds"],
        error=described.get("error"),
        problem=described.get("problem"),
        metadata=described["metadata"],
    )


def _named(targets: dict[str, str]) -> list[AliasTarget]:
    return [AliasTarget(alias=alias, version=version) for alias, version in targets.items()]


def _shares(shares: dict[str, float] | None) -> list[SplitShare] | None:
    if shares is None:
        return None
    return [SplitShare(version=version, weight=weight) for version, weight in shares.items()]


@strawberry.type(description="What the model said for each row, in input order.")
class Prediction:
    model: str
    version: str
    predictions: Predictions
    prediction_id: str = strawberry.field(
        description="What feedback names this prediction by (its payload log event id): the "
        "X-Request-ID for a query's first prediction, `<X-Request-ID>#<n>` for its n-th."
    )
    probabilities: ProbabilitiesByClass | None = strawberry.field(
        default=None, description="Classifiers with predict_proba: as the REST batch answer."
    )

    @classmethod
    def from_outputs(cls, model: LoadedModel, outputs: Outputs, prediction_id: str) -> Prediction:
        """The REST batch answer's members, as GraphQL fields, and the prediction's id."""
        body = render_native(model, outputs, single_row=False)
        return cls(
            model=body["model"],
            version=body["version"],
            predictions=body["predictions"],
            prediction_id=prediction_id,
            probabilities=body.get("probabilities"),
        )
