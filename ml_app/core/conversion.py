"""Convert a fitted estimator to ONNX when a version is written, keeping it only if it agrees.

skl2onnx is a training-time tool (requirements-train.txt), imported only here and only when a
version is written; the server itself needs nothing but onnxruntime to serve the result.
`write_converted_version` is how every writer of versions (registration, the demo training)
hands the store a version with its conversion: the store itself only writes files.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import is_classifier

from ml_app.core.model import LoadedModel
from ml_app.core.store import ONNX_ARTIFACT, ModelStore

log = logging.getLogger("ml_app.conversion")
# scikit-learn's trees compare float32 features against their thresholds, so a tree converted
# for float64 input splits some rows differently (whole trees flip); everything else is
# computed in float64 by scikit-learn and converts exactly with float64 input.
_FLOAT32_MODULES = ("sklearn.tree", "sklearn.ensemble")
_MAX_REASON = 300  # skl2onnx can put a whole node's attributes in its message


def write_converted_version(
    store: ModelStore, name: str, version: str, estimator: Any, metadata: dict[str, Any]
) -> Path:
    """Write a version with its ONNX conversion (when one passes parity) and its description."""
    converted, described = export_onnx(estimator, metadata)
    extra = {ONNX_ARTIFACT: converted} if converted is not None else {}
    return store.write_version(name, version, estimator, {**metadata, "onnx": described}, extra)


def export_onnx(estimator: Any, metadata: dict[str, Any]) -> tuple[bytes | None, dict[str, Any]]:
    """The ONNX model and its description, or None and a description of why there is none."""
    try:
        import skl2onnx  # a training-time tool: absent where only serving is installed
    except ImportError:
        return None, {"error": "skl2onnx is not installed (see requirements-train.txt)"}
    try:
        model = LoadedModel(str(metadata.get("name")), "", estimator, metadata)
    except Exception as exc:  # noqa: BLE001 - the version is still written, served by sklearn
        return None, {"error": _reason(exc)}
    problems = []
    for dtype in input_dtypes(estimator):
        try:
            converted = _convert(skl2onnx, estimator, dtype, model.n_features)
            model.use_onnx(converted, dtype)
        except Exception as exc:  # noqa: BLE001 - unsupported estimators are the common case
            problems.append(f"{dtype} input: {_reason(exc)}")
            continue
        return converted, _describe(skl2onnx, converted, dtype, model.backend_info["parity"])
    log.warning("no ONNX model for %s: %s", metadata.get("name"), "; ".join(problems))
    return None, {"error": "; ".join(problems)}


def input_dtypes(estimator: Any) -> tuple[str, str]:
    """Input dtypes to try, the one that matches scikit-learn's arithmetic first."""
    if any(type(part).__module__.startswith(_FLOAT32_MODULES) for part in _parts(estimator)):
        return ("float32", "float64")
    return ("float64", "float32")


def _parts(estimator: Any) -> list[Any]:
    """The estimator and, for pipelines and column transformers, every step inside it."""
    parts = [estimator]
    for child in getattr(estimator, "named_steps", {}).values():
        parts += _parts(child)
    for _, child, _ in getattr(estimator, "transformers_", []):
        if hasattr(child, "fit"):
            parts += _parts(child)
    return parts


def _convert(skl2onnx: Any, estimator: Any, dtype: str, n_features: int) -> bytes:
    sample = np.zeros((1, n_features), dtype=dtype)
    final = estimator
    while hasattr(final, "steps"):
        final = final.steps[-1][1]
    options = None
    if is_classifier(final) and hasattr(final, "predict_proba"):
        # Plain probability tensors, not a list of dicts per row (zipmap): faster and numpy.
        options = {id(final): {"zipmap": False}}
    return skl2onnx.to_onnx(estimator, sample, options=options).SerializeToString()


def _describe(
    skl2onnx: Any, converted: bytes, dtype: str, parity: dict[str, Any]
) -> dict[str, Any]:
    import onnx  # comes with skl2onnx

    from ml_app.core.onnx_runtime import RUNTIME_VERSION  # converting means checking with it

    graph = onnx.load_from_string(converted)
    opsets = {entry.domain or "ai.onnx": entry.version for entry in graph.opset_import}
    return {
        "artifact": "model.onnx",
        "sha256": hashlib.sha256(converted).hexdigest(),
        "input_dtype": dtype,
        "opsets": opsets,
        "converter": {"skl2onnx": skl2onnx.__version__, "onnx": onnx.__version__},
        "checked_with": {"onnxruntime": RUNTIME_VERSION, **parity},
    }


def _reason(exc: BaseException) -> str:
    text = (str(exc) or type(exc).__name__).strip().splitlines()[0]
    if len(text) > _MAX_REASON:
        text = text[:_MAX_REASON] + "..."
    cause = exc.__cause__
    return f"{text} (because {type(cause).__name__}: {_reason(cause)})" if cause else text
