"""MLflow's scoring protocol through Flask's test client: layouts, CSV, its error shape."""

from __future__ import annotations

import pytest

from ml_app import create_app
from tests.support import reference
from tests.support.reference import IRIS_FEATURES

ROWS = reference.sample_rows("iris", 5)
SHUFFLED = ["petal_width", "sepal_length", "petal_length", "sepal_width"]


def _named(rows):
    return [dict(zip(IRIS_FEATURES, row, strict=True)) for row in rows.tolist()]


def _layouts() -> dict[str, dict]:
    order = [IRIS_FEATURES.index(name) for name in SHUFFLED]
    return {
        "split": {"dataframe_split": {"columns": SHUFFLED, "data": ROWS[:, order].tolist()}},
        "split without columns": {
            "dataframe_split": {"data": ROWS.tolist(), "index": [0, 1, 2, 3, 4]}
        },
        "records": {"dataframe_records": _named(ROWS)},
        "instances": {"instances": ROWS.tolist()},
        "inputs as columns": {
            "inputs": {n: ROWS[:, IRIS_FEATURES.index(n)].tolist() for n in SHUFFLED}
        },
        "inputs with params": {"inputs": _named(ROWS), "params": {"ignored": True}},
    }


@pytest.mark.parametrize("layout", list(_layouts()))
def test_every_json_layout_predicts_the_same(client, demo_store, layout):
    response = client.post("/invocations", json=_layouts()[layout])
    assert response.status_code == 200
    assert response.get_json() == {"predictions": reference.labels(demo_store, "iris", ROWS)}


def test_csv_with_a_header_in_any_column_order(client, demo_store):
    order = [IRIS_FEATURES.index(name) for name in SHUFFLED]
    lines = [",".join(SHUFFLED)] + [",".join(map(repr, row)) for row in ROWS[:, order].tolist()]
    response = client.post(
        "/invocations", data="\n".join(lines) + "\n", content_type="text/csv; charset=utf-8"
    )
    assert response.status_code == 200
    assert response.get_json() == {"predictions": reference.labels(demo_store, "iris", ROWS)}


def test_ping_and_version(client):
    assert client.get("/ping").status_code == 200
    version = client.get("/version")
    assert (version.mimetype, version.get_data(as_text=True)) == ("text/plain", "0.1.0")


def _assert_mlflow_error(response, status, fragment):
    assert response.status_code == status
    body = response.get_json()
    assert set(body) == {"error_code", "message"}
    assert body["error_code"] == "BAD_REQUEST"
    assert fragment in body["message"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"instances": ROWS.tolist(), "inputs": ROWS.tolist()}, "Send exactly one of"),
        ({"params": {}}, "Send exactly one of"),
        ({"dataframe_split": {"columns": ["a"]}}, 'Must be an object with "data"'),
        ({"dataframe_split": {"columns": ["a", "a"], "data": [[1, 2]]}}, "distinct feature names"),
        ({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2, 3]]}}, "Row 0 has 3 values"),
        ({"dataframe_split": {"columns": SHUFFLED, "data": [[1, 2, 3, None]]}}, "Must be a number"),
        ({"dataframe_records": [{"sepal_length": 1.0}]}, "Missing feature."),
    ],
)
def test_bad_json_is_400_in_mlflow_shape(client, body, fragment):
    _assert_mlflow_error(client.post("/invocations", json=body), 400, fragment)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ("sepal_length,sepal_width\n", "header line of feature names and at least one row"),
        ("a,b\n1,2,3\n", "line 2"),
        ("a,b\n1,x\n", "'x' is not a number"),
        (",".join(IRIS_FEATURES) + "\n1,2,3,nan\n", "Not a finite number."),
    ],
)
def test_bad_csv_is_400_in_mlflow_shape(client, data, fragment):
    _assert_mlflow_error(
        client.post("/invocations", data=data, content_type="text/csv"), 400, fragment
    )


def test_content_types_and_malformed_json(client):
    _assert_mlflow_error(
        client.post("/invocations", data="x", content_type="text/plain"), 415, "text/csv"
    )
    latin = client.post("/invocations", data="a", content_type="text/csv; charset=latin-1")
    _assert_mlflow_error(latin, 415, "UTF-8")
    _assert_mlflow_error(
        client.post("/invocations", data=b"\xff", content_type="text/csv"), 400, "UTF-8"
    )
    malformed = client.post("/invocations", data="{nope", content_type="application/json")
    _assert_mlflow_error(malformed, 400, "Malformed JSON")
    infinite = b'{"instances": [[1.0, 2.0, 3.0, Infinity]]}'
    response = client.post("/invocations", data=infinite, content_type="application/json")
    _assert_mlflow_error(response, 400, "instances.0.3: Not a finite number.")


def test_missing_default_model_is_404_and_body_limit_413(demo_store):
    client = create_app({"store": demo_store, "default_model": "absent"}).test_client()
    for response in (client.get("/ping"), client.post("/invocations", json={"instances": [[1]]})):
        assert response.status_code == 404
        assert response.get_json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    small = create_app({"store": demo_store, "max_body_bytes": 64}).test_client()
    too_big = small.post("/invocations", json={"instances": ROWS.tolist()})
    assert too_big.status_code == 413
    assert set(too_big.get_json()) == {"error_code", "message"}


def test_broken_default_model_is_503(store):
    artifact = store / "iris" / "1" / "model.skops"
    artifact.write_bytes(b"garbage" + artifact.read_bytes())
    client = create_app({"store": store}).test_client()
    response = client.get("/ping")
    assert response.status_code == 503
    assert response.get_json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
