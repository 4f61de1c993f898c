"""The textbook Flask model server, for context: load, predict the label, jsonify. Nothing else.

No validation, no probabilities, no metrics, no logging, scikit-learn's own predict().
"""

from __future__ import annotations

from flask import Flask, jsonify, request

from ml_app.core.config import Settings
from ml_app.core.loading import load_estimator
from ml_app.core.store import LoadPolicy, ModelStore

app = Flask(__name__)
_store = ModelStore(Settings.from_env().store)
_models = {
    name: load_estimator(_store, name, "1", _store.read_metadata(name, "1"), LoadPolicy())
    for name in ("iris", "breast_cancer")
}


@app.post("/models/<name>/predict")
def predict(name: str):
    """Predict one row's label."""
    features = request.get_json()["features"]
    return jsonify({"prediction": _models[name].predict([features])[0].item()})
