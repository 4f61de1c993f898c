"""GraphQL queries the tests send, and the demo data sets' rows to send in them."""

from __future__ import annotations

from typing import Any

from sklearn import datasets

PREDICT = """
query Predict($model: String, $version: String, $rows: FeatureRows, $named: NamedFeatureRows) {
  predict(model: $model, version: $version, rows: $rows, namedRows: $named) {
    model version predictions probabilities
  }
}
"""
MODEL = """
query Model($name: String!) {
  model(name: $name) {
    name defaultVersion ready shadow problems error
    aliases { alias version }
    serving { alias version }
    split { version weight }
    versions { version state loadSeconds error problem metadata }
  }
}
"""
MODELS = "{ defaultModel models { name defaultVersion ready versions { version state } } }"
_LOADERS = {
    "iris": datasets.load_iris,
    "breast_cancer": datasets.load_breast_cancer,
    "diabetes": datasets.load_diabetes,
}
DEMO_MODELS = tuple(_LOADERS)


def demo_rows(model: str, count: int = 25) -> list[list[float]]:
    """Rows spread over the model's data set (every sixth), as plain lists."""
    data = _LOADERS[model]().data
    return data[:: max(1, len(data) // count)][:count].tolist()


def predict_body(model: str | None = None, **variables: Any) -> dict[str, Any]:
    """The POST body of a predict query with these variables (rows, named, version)."""
    return {"query": PREDICT, "variables": {"model": model, **variables}}


def nested_query(depth: int) -> str:
    """A selection `depth` fields deep (deeper than the schema: the depth limit names it too)."""
    inner = "name"
    for _ in range(depth - 1):
        inner = f"models {{ {inner} }}"
    return "{ " + inner + " }"


def aliased_query(count: int) -> str:
    """`count` aliases of one field in one query."""
    return "{ " + " ".join(f"a{i}: defaultModel" for i in range(count)) + " }"


def errors_of(body: dict[str, Any]) -> list[tuple[str, int]]:
    """Each error's (code, status) from its extensions."""
    return [(e["extensions"]["code"], e["extensions"]["status"]) for e in body["errors"]]
