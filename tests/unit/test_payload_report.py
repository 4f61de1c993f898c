"""`monitor report`: predictions joined with feedback by request id; accuracy, MAE and PSI."""

from __future__ import annotations

import shutil

import numpy as np
import orjson
import pytest
from click.testing import CliRunner
from sklearn import datasets
from sklearn.metrics import accuracy_score, mean_absolute_error

from ml_app.core.payload_report import build_report
from ml_app.core.store import ModelStore
from ml_app.ops.cli import main
from tests.support.payloads import feedback_event, inference_event, write_segment
from tests.support.reference import IRIS_FEATURES, class_names, estimator, labels


def _report(directory, store):
    result = CliRunner().invoke(
        main, ["monitor", "report", "--payloads", str(directory), "--store", str(store), "--json"]
    )
    assert result.exit_code == 0, result.output
    return orjson.loads(result.output)


def _psi_by_hand(reference: dict, values: np.ndarray) -> float:
    """PSI written out: numpy.histogram over the edges, plus below and above, shares >= 1e-4."""
    edges = np.asarray(reference["bin_edges"])
    inside, _ = np.histogram(values, edges)
    counts = np.concatenate(([np.sum(values < edges[0])], inside, [np.sum(values > edges[-1])]))
    expected = np.concatenate(([0.0], reference["proportions"], [0.0]))
    actual = np.maximum(counts / counts.sum(), 1e-4)
    expected = np.maximum(expected, 1e-4)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


@pytest.fixture(scope="module")
def iris():
    data = datasets.load_iris()
    return data.data, [data.target_names[t] for t in data.target]


def _iris_log(directory, store, rows, truths):
    """Requests of 1 and 5 rows; truths sent for two in three, the feedback often written first."""
    predictions = labels(store, "iris", rows)
    requests, feedback, sent = [], [], []
    start, number = 0, 0
    while start < len(rows):
        size = 1 if number % 2 else 5
        chunk = slice(start, start + size)
        request_id = f"req-{number}"
        requests.append(
            inference_event(
                request_id, "iris", "1", rows[chunk].tolist(), predictions[chunk], IRIS_FEATURES
            )
        )
        if number % 3:
            truth = truths[chunk] if size > 1 else truths[start]
            feedback.append(feedback_event(request_id, "iris", truth))
            sent.extend(range(start, min(start + size, len(rows))))
        start, number = start + size, number + 1
    write_segment(directory, feedback[: len(feedback) // 2], pid=1)  # another worker, earlier
    first = write_segment(directory, requests[: len(requests) // 2], pid=2)
    write_segment(directory, requests[len(requests) // 2 :], pid=3)
    write_segment(directory, feedback[len(feedback) // 2 :], pid=4)
    return predictions, sent, first, len(requests)


def test_accuracy_equals_the_models_accuracy_on_the_rows_sent_with_truth(
    tmp_path, demo_store, iris
):
    rows, truths = iris
    predictions, sent, first, request_count = _iris_log(tmp_path, demo_store, rows, truths)
    # the shipper may deliver a segment twice: its copies count once
    shutil.copy(first, tmp_path / first.name.replace("-2-", "-9-"))
    write_segment(tmp_path, [feedback_event("never-sent", "iris", "setosa")], pid=5)
    refused = inference_event("bad-1", "iris", "1", None, None, status=422)
    unknown = inference_event("bad-2", "iris", "1", None, None, status=404)
    unknown["data"].update(model=None, version=None)
    write_segment(tmp_path, [refused, unknown], pid=6)

    report = _report(tmp_path, demo_store)
    (version,) = report["versions"]
    # predicted here, straight from the model, on the rows whose truths were sent
    fitted = estimator(demo_store, "iris")
    names = class_names(demo_store, "iris")
    direct = [names[i] for i in fitted.predict(rows[sent])]
    assert direct == [predictions[i] for i in sent]
    expected = accuracy_score([truths[i] for i in sent], direct)
    assert version["accuracy"] == expected
    assert (version["model"], version["version"], version["task"]) == (
        "iris",
        "1",
        "classification",
    )
    assert (version["rows"], version["rows_with_truth"]) == (len(rows), len(sent))
    assert (version["requests"], version["refused"]) == (request_count + 1, 1)
    assert report["duplicates"] == len(first.read_bytes().splitlines())
    assert report["feedback_unmatched"] == 1
    assert report["without_model"] == 1
    # PSI: the served rows against the version's reference, as written out by hand
    baseline = ModelStore(demo_store).read_metadata("iris", "1")["baseline"]
    for index, feature in enumerate(IRIS_FEATURES):
        assert version["psi"][feature] == round(_psi_by_hand(baseline[feature], rows[:, index]), 6)


def test_a_shifted_feature_shows_in_its_psi_only(tmp_path, demo_store, iris):
    rows = iris[0].copy()
    baseline = ModelStore(demo_store).read_metadata("iris", "1")["baseline"]
    rows[:, 2] += 2 * baseline["petal_length"]["std"]
    predictions = labels(demo_store, "iris", rows)
    events = [
        inference_event(f"r{i}", "iris", "1", [row], [pred], IRIS_FEATURES)
        for i, (row, pred) in enumerate(zip(rows.tolist(), predictions, strict=True))
    ]
    write_segment(tmp_path, events)
    psi = _report(tmp_path, demo_store)["versions"][0]["psi"]
    assert psi["petal_length"] > 0.25
    assert max(psi[f] for f in IRIS_FEATURES if f != "petal_length") < 0.1


def test_mae_for_a_regressor_equals_the_mean_absolute_error_of_its_predictions(
    tmp_path, demo_store
):
    data = datasets.load_diabetes()
    rows, truths = data.data[:40], data.target[:40].tolist()
    fitted = estimator(demo_store, "diabetes")
    predictions = fitted.predict(rows).tolist()
    features = ModelStore(demo_store).read_metadata("diabetes", "1")["feature_names"]
    events = [
        inference_event(
            f"d{i}", "diabetes", "1", rows[i : i + 4].tolist(), predictions[i : i + 4], features
        )
        for i in range(0, 40, 4)
    ]
    feedback = [feedback_event(f"d{i}", "diabetes", truths[i : i + 4]) for i in range(0, 40, 4)]
    feedback.append(feedback_event("d0", "diabetes", ["not", "numbers", "at", "all"]))
    write_segment(tmp_path, events + feedback[:-1])
    (version,) = _report(tmp_path, demo_store)["versions"]
    assert version["task"] == "regression"
    assert version["mae"] == pytest.approx(mean_absolute_error(truths, predictions), rel=1e-12)
    assert version["accuracy"] is None
    # a later truth for the same request replaces the earlier; one that cannot be scored is
    # counted apart and leaves the score as it was
    write_segment(tmp_path, feedback[-1:])
    report = _report(tmp_path, demo_store)
    assert report["feedback_mismatched"] == 1
    assert report["versions"][0]["rows_with_truth"] == 36


def test_without_the_version_in_the_store_the_task_is_guessed_and_psi_left_out(tmp_path):
    events = [inference_event("a", "other", "7", [[1.0]], ["yes"], ["x"])]
    events.append(feedback_event("a", "other", "no"))
    write_segment(tmp_path, events)
    report = build_report(
        (orjson.loads(line) for line in next(tmp_path.glob("*.jsonl")).read_bytes().splitlines()),
        ModelStore(tmp_path / "empty"),
    )
    version = report.versions[("other", "7")]
    assert (version.task, version.accuracy, version.psi()) == ("classification", 0.0, {})


def test_the_text_report_names_each_version_and_skips_unreadable_segments(tmp_path, demo_store):
    events = [inference_event("a", "iris", "1", [[5.1, 3.5, 1.4, 0.2]], ["setosa"], IRIS_FEATURES)]
    events.append(feedback_event("a", "iris", "setosa"))
    write_segment(tmp_path, events)
    (tmp_path / "broken-1-1.jsonl").write_bytes(b"not json\n")
    result = CliRunner().invoke(
        main, ["monitor", "report", "--payloads", str(tmp_path), "--store", str(demo_store)]
    )
    assert result.exit_code == 0, result.output
    assert "iris version 1 (classification)" in result.output
    assert "rows 1, with truth 1, accuracy 1.0000" in result.output
    assert "PSI sepal_length" in result.output
    assert "skipped: broken-1-1.jsonl line 1 is not JSON" in result.output
