"""What every protocol adapter shares: validating rows, and its error conventions.

Resolving the model and predicting go through ml_app.web.serving, as on the native routes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from flask import Blueprint
from marshmallow import Schema, ValidationError

from ml_app.core.validation import MatrixContext, load_for_model
from ml_app.web.errors import render_validation_error


def load_rows(schema: Schema, body: Mapping[str, Any], limits: MatrixContext) -> np.ndarray:
    """Validate a body whose schema has exactly one row-carrying field; returns its matrix."""
    data = load_for_model(schema, body, limits.model, limits.max_rows)
    return next(value for value in data.values() if isinstance(value, np.ndarray))


def answer_invalid_input_with_400(bp: Blueprint) -> None:
    """V2 and V1 clients expect 400 for a request they got wrong, where native routes say 422."""
    bp.register_error_handler(ValidationError, lambda exc: render_validation_error(exc, 400))
