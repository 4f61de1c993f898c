"""Real clients nobody on the team wrote, against real Gunicorn: tritonclient, KServe, MLflow."""

from __future__ import annotations

import asyncio
import warnings

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from tritonclient.utils import InferenceServerException

from tests.support import reference
from tests.support.keys import keyed_gunicorn
from tests.support.reference import IRIS_FEATURES

with warnings.catch_warnings():
    # mlflow warns about its own internal type hints when imported.
    warnings.simplefilter("ignore", UserWarning)
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

IRIS_ROWS = reference.sample_rows("iris", 30)
DIABETES_ROWS = reference.sample_rows("diabetes", 30)


@pytest.fixture
def triton_client(demo_server):
    client = triton.InferenceServerClient(url=f"127.0.0.1:{demo_server.port}")
    try:
        yield client
    finally:
        client.close()


# --- tritonclient[http]: Open Inference Protocol V2 -----------------------------------------


def test_triton_liveness_readiness_and_metadata(triton_client):
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready("iris")
    assert triton_client.is_model_ready("diabetes", "1")
    assert not triton_client.is_model_ready("absent")
    metadata = triton_client.get_server_metadata()
    assert metadata["name"] == "ml_app"
    assert "binary_tensor_data" in metadata["extensions"]
    iris = triton_client.get_model_metadata("iris", "1")
    assert iris["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]
    assert [o["name"] for o in iris["outputs"]] == ["predict", "predict_proba"]


def _text(values: np.ndarray) -> list[str]:
    """BYTES outputs: bytes when sent binary, str when sent as JSON."""
    return [v.decode() if isinstance(v, bytes) else v for v in values.tolist()]


def _triton_infer(client, model, rows, binary, datatype="FP64", outputs=("predict",)):
    tensor = triton.InferInput("input", list(rows.shape), datatype)
    tensor.set_data_from_numpy(
        rows.astype(np.float32 if datatype == "FP32" else np.float64), binary
    )
    requested = [triton.InferRequestedOutput(name, binary_data=binary) for name in outputs]
    return client.infer(model, [tensor], outputs=requested, request_id=f"req-{binary}")


@pytest.mark.parametrize("binary", [True, False])
def test_triton_infer_iris_matches_the_model(triton_client, demo_store, binary):
    result = _triton_infer(
        triton_client, "iris", IRIS_ROWS, binary, outputs=("predict", "predict_proba")
    )
    assert result.get_response()["id"] == f"req-{binary}"
    assert _text(result.as_numpy("predict")) == reference.labels(demo_store, "iris", IRIS_ROWS)
    expected = reference.estimator(demo_store, "iris").predict_proba(IRIS_ROWS)
    assert result.as_numpy("predict_proba") == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("binary", [True, False])
def test_triton_infer_regressor_matches_the_model(triton_client, demo_store, binary):
    result = _triton_infer(triton_client, "diabetes", DIABETES_ROWS, binary, datatype="FP32")
    rows = DIABETES_ROWS.astype(np.float32).astype(np.float64)
    expected = reference.estimator(demo_store, "diabetes").predict(rows)
    assert result.as_numpy("predict") == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
@pytest.mark.parametrize("binary", [True, False])
def test_triton_compressed_requests(triton_client, demo_store, algorithm, binary):
    tensor = triton.InferInput("input", list(IRIS_ROWS.shape), "FP64")
    tensor.set_data_from_numpy(IRIS_ROWS, binary)
    result = triton_client.infer(
        "iris",
        [tensor],
        outputs=[triton.InferRequestedOutput("predict_proba", binary_data=binary)],
        request_compression_algorithm=algorithm,
    )
    expected = reference.estimator(demo_store, "iris").predict_proba(IRIS_ROWS)
    assert result.as_numpy("predict_proba") == pytest.approx(expected, abs=1e-12)


def test_triton_default_outputs_are_binary_and_complete(triton_client, demo_store):
    tensor = triton.InferInput("input", list(IRIS_ROWS.shape), "FP64")
    tensor.set_data_from_numpy(IRIS_ROWS)
    result = triton_client.infer("iris", [tensor])
    outputs = result.get_response()["outputs"]
    assert [o["name"] for o in outputs] == ["predict", "predict_proba"]
    assert all("binary_data_size" in o["parameters"] for o in outputs)
    assert _text(result.as_numpy("predict")) == reference.labels(demo_store, "iris", IRIS_ROWS)


def test_triton_errors_carry_the_server_message(triton_client):
    with pytest.raises(InferenceServerException) as missing:
        _triton_infer(triton_client, "absent", IRIS_ROWS, True)
    assert missing.value.status() == "404"
    assert "'absent' is not in the store" in missing.value.message()
    with pytest.raises(InferenceServerException) as wrong_shape:
        _triton_infer(triton_client, "iris", DIABETES_ROWS, True)
    assert wrong_shape.value.status() == "400"
    assert "takes [rows, 4]" in wrong_shape.value.message()


# --- KServe InferenceRESTClient, V1 and V2 -----------------------------------------------------


async def _kserve_v1(url: str) -> tuple:
    async with InferenceRESTClient(RESTConfig(protocol="v1")) as client:
        live = await client.is_server_live(url)
        ready = await client.is_model_ready(url, "iris")
        result = await client.infer(url, {"instances": IRIS_ROWS.tolist()}, model_name="iris")
        return live, ready, result


def test_kserve_v1_client(demo_server, demo_store):
    live, ready, result = asyncio.run(_kserve_v1(demo_server.url))
    assert live is True
    assert ready is True
    assert result == {"predictions": reference.labels(demo_store, "iris", IRIS_ROWS)}


async def _kserve_v2(url: str, binary: bool):
    async with InferenceRESTClient(RESTConfig(protocol="v2")) as client:
        states = (
            await client.is_server_live(url),
            await client.is_server_ready(url),
            await client.is_model_ready(url, "diabetes"),
        )
        tensor = InferInput("input", list(DIABETES_ROWS.shape), "FP64")
        tensor.set_data_from_numpy(DIABETES_ROWS, binary_data=binary)
        request = InferRequest(model_name="diabetes", infer_inputs=[tensor], request_id="k-1")
        return states, await client.infer(url, request, model_name="diabetes")


@pytest.mark.parametrize("binary", [True, False])
def test_kserve_v2_client(demo_server, demo_store, binary):
    states, response = asyncio.run(_kserve_v2(demo_server.url, binary))
    assert states == (True, True, True)
    assert response.id == "k-1"
    expected = reference.estimator(demo_store, "diabetes").predict(DIABETES_ROWS)
    assert response.outputs[0].as_numpy() == pytest.approx(expected, rel=1e-12)


async def _kserve_error(url: str) -> httpx.HTTPStatusError:
    async with InferenceRESTClient(RESTConfig(protocol="v1")) as client:
        with pytest.raises(httpx.HTTPStatusError) as caught:
            await client.infer(url, {"instances": [[1.0, 2.0]]}, model_name="iris")
        return caught.value


def test_kserve_errors_carry_the_server_message(demo_server):
    error = asyncio.run(_kserve_error(demo_server.url))
    assert error.response.status_code == 400
    assert "Expected 4 features, got 2." in str(error)


# --- MLflow ScoringServerClient ----------------------------------------------------------------


def test_mlflow_scoring_client(demo_server, demo_store):
    client = ScoringServerClient("127.0.0.1", demo_server.port)
    client.ping()
    assert client.get_version() == "0.1.0"
    frame = pd.DataFrame(IRIS_ROWS, columns=IRIS_FEATURES)[list(reversed(IRIS_FEATURES))]
    predictions = client.invoke(frame).get_predictions()
    assert predictions[0].tolist() == reference.labels(demo_store, "iris", IRIS_ROWS)


def test_mlflow_scoring_client_error_is_mlflow_shaped(demo_server):
    client = ScoringServerClient("127.0.0.1", demo_server.port)
    frame = pd.DataFrame(IRIS_ROWS[:, :3], columns=IRIS_FEATURES[:3])
    with pytest.raises(Exception, match="error code 400") as caught:
        client.invoke(frame)
    assert '"error_code":"BAD_REQUEST"' in str(caught.value)
    assert "Missing feature." in str(caught.value)


# --- The same clients with API keys on: each sends the key the way it can ---------------------


@pytest.fixture(scope="module")
def keyed_server(demo_store, tmp_path_factory):
    """Gunicorn (2 workers) with a keys file: one key for every model, one for diabetes only."""
    with keyed_gunicorn(demo_store, tmp_path_factory.mktemp("keyed")) as (server, _, keys):
        yield server, {"all": keys["good"], "diabetes": keys["other model"]}


def test_triton_with_a_key_header(keyed_server, demo_store):
    server, keys = keyed_server
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    try:
        tensor = triton.InferInput("input", list(IRIS_ROWS.shape), "FP64")
        tensor.set_data_from_numpy(IRIS_ROWS)
        result = client.infer("iris", [tensor], headers={"X-API-Key": keys["all"]})
        assert _text(result.as_numpy("predict")) == reference.labels(demo_store, "iris", IRIS_ROWS)
        with pytest.raises(InferenceServerException) as missing:
            client.infer("iris", [tensor])
        assert missing.value.status() == "401"
        with pytest.raises(InferenceServerException) as other_model:
            client.infer("iris", [tensor], headers={"X-API-Key": keys["diabetes"]})
        assert other_model.value.status() == "403"
    finally:
        client.close()


async def _kserve_keyed(url: str, key: str | None):
    headers = {"Authorization": f"Bearer {key}"} if key else None
    async with InferenceRESTClient(RESTConfig(protocol="v1")) as v1:
        predictions = await v1.infer(
            url, {"instances": IRIS_ROWS.tolist()}, model_name="iris", headers=headers
        )
    async with InferenceRESTClient(RESTConfig(protocol="v2")) as v2:
        tensor = InferInput("input", list(DIABETES_ROWS.shape), "FP64")
        tensor.set_data_from_numpy(DIABETES_ROWS, binary_data=True)
        request = InferRequest(model_name="diabetes", infer_inputs=[tensor])
        response = await v2.infer(url, request, model_name="diabetes", headers=headers)
    return predictions, response


def test_kserve_clients_with_a_bearer_key(keyed_server, demo_store):
    server, keys = keyed_server
    predictions, response = asyncio.run(_kserve_keyed(server.url, keys["all"]))
    assert predictions == {"predictions": reference.labels(demo_store, "iris", IRIS_ROWS)}
    expected = reference.estimator(demo_store, "diabetes").predict(DIABETES_ROWS)
    assert response.outputs[0].as_numpy() == pytest.approx(expected, rel=1e-12)
    with pytest.raises(httpx.HTTPStatusError) as missing:
        asyncio.run(_kserve_keyed(server.url, None))
    assert missing.value.response.status_code == 401


def test_mlflow_client_with_the_key_from_netrc(keyed_server, demo_store, tmp_path, monkeypatch):
    """MLflow's client takes no headers; requests (which it uses) sends netrc credentials as
    Basic auth, and the key is accepted as the Basic password."""
    server, keys = keyed_server
    client = ScoringServerClient("127.0.0.1", server.port)
    frame = pd.DataFrame(IRIS_ROWS, columns=IRIS_FEATURES)
    with pytest.raises(Exception, match="error code 401"):
        client.invoke(frame)
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login clients password {keys['all']}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    predictions = client.invoke(frame).get_predictions()
    assert predictions[0].tolist() == reference.labels(demo_store, "iris", IRIS_ROWS)


def test_no_key_appears_in_the_server_log(keyed_server):
    server, keys = keyed_server
    text = server.log_path.read_text()
    assert "all-models" in text  # the key id is logged
    assert not [key for key in keys.values() if key in text]
