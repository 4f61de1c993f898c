"""The one way an estimator file is read: skops (safe) or, on opt-in, pickle/joblib.

Serving (a version in the store) and registration (an operator's upload) both load through
`read_estimator` and judge the scikit-learn version with `check_sklearn_version`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import joblib
import sklearn
import skops.io
from sklearn.exceptions import InconsistentVersionWarning

from ml_app.core.errors import StoreError
from ml_app.core.store import LoadPolicy

SKOPS_SUFFIX = ".skops"
# Files that run code when loaded; read only when the operator opts in. joblib.load reads both
# joblib.dump's format and plain pickle files.
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
# scikit-learn's own compiled types that skops asks callers to trust explicitly. They hold
# arrays, not code; anything outside this list must be trusted by the operator.
BUILTIN_TRUSTED_TYPES = ("sklearn.tree._tree.Tree",)


def read_estimator(
    path: Path, policy: LoadPolicy, shown: str | None = None
) -> tuple[Any, str | None]:
    """The estimator in `path`, and the scikit-learn version it says it was saved with.

    The version is known for pickles (scikit-learn warns when it differs); skops files do not
    record it (None). StoreError says why a file cannot be loaded, naming the file as `shown`
    (default: its name), since messages reach API answers and the server's paths must not.
    """
    shown = shown or path.name
    if path.suffix == SKOPS_SUFFIX:
        return load_skops(path, policy, shown), None
    if path.suffix not in PICKLE_SUFFIXES:
        raise StoreError(f"{shown}: expected a .skops file (or .joblib/.pkl with pickle allowed)")
    if not policy.allow_pickle:
        raise StoreError(
            f"{shown} is a pickle file, which can run arbitrary code when loaded; "
            "set ML_APP_ALLOW_PICKLE=true (or pass --allow-pickle) to trust it"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InconsistentVersionWarning)
        try:
            estimator = joblib.load(path)
        except Exception as exc:
            raise StoreError(f"{shown} could not be loaded: {_cause(exc)}") from exc
    saved_with = None
    for warning in caught:
        if isinstance(warning.message, InconsistentVersionWarning):
            saved_with = warning.message.original_sklearn_version
    return estimator, saved_with or sklearn.__version__


def check_sklearn_version(trained_with: str | None, policy: LoadPolicy, what: str) -> None:
    """Refuse a model from another scikit-learn minor version, unless the operator allows it."""
    if _minor(trained_with or "") == _minor(sklearn.__version__) or policy.allow_version_mismatch:
        return
    raise StoreError(
        f"{what} was trained with scikit-learn {trained_with or 'unknown'} but this server runs "
        f"{sklearn.__version__}; predictions may differ. Retrain it, or set "
        "ML_APP_ALLOW_VERSION_MISMATCH=true to load it anyway"
    )


def _cause(exc: Exception) -> str:
    """An exception's reason without the absolute path an OSError would add."""
    return (exc.strerror or type(exc).__name__) if isinstance(exc, OSError) else str(exc)


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def load_skops(artifact: Path, policy: LoadPolicy, shown: str) -> Any:
    """Load a skops file, refusing types that neither skops nor the operator trusts."""
    try:
        untrusted = skops.io.get_untrusted_types(file=artifact)
    except Exception as exc:
        raise StoreError(f"{shown} could not be loaded: {_cause(exc)}") from exc
    trusted = BUILTIN_TRUSTED_TYPES + policy.trusted_types
    refused = [t for t in untrusted if t not in trusted]
    if refused:
        raise StoreError(
            f"{shown} contains types that are not trusted: {', '.join(refused)}; list them in "
            "ML_APP_TRUSTED_TYPES if you trust this file"
        )
    try:
        return skops.io.load(artifact, trusted=list(untrusted) or None)
    except Exception as exc:
        raise StoreError(f"{shown} could not be loaded: {_cause(exc)}") from exc
