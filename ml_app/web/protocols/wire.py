"""Marshmallow schemas of the protocols' bodies: they validate requests and generate the docs."""

from __future__ import annotations

from typing import Any, ClassVar

from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    validate,
    validates_schema,
)

from ml_app.core.tabular import SplitFrame, TabularRows
from ml_app.core.tensors import DATATYPES
from ml_app.core.validation import FeatureRows

_PARAMETERS = {"description": "Free-form parameters; the binary tensor data extension's are used."}
# Optional request fields allow null, read as absent (the views use `.get(...) or default`):
# MLServer's and KServe's request models declare them Optional[...], and their clients send null.
_SHAPE = fields.List(fields.Integer(strict=True, validate=validate.Range(min=0)), required=True)


def _exactly_one(data: dict[str, Any], names: tuple[str, ...]) -> None:
    given = [name for name in names if name in data]
    if len(given) != 1:
        raise ValidationError(f"Send exactly one of {', '.join(names)}; got {given or 'none'}.")


# --- Open Inference Protocol (V2) ---------------------------------------------------------


class V2Schema(Schema):
    """The protocol lets clients add fields (KServe sends model_name): ignore the unknown."""

    class Meta:
        unknown = EXCLUDE


class TensorInput(V2Schema):
    """One input tensor: data in JSON (flat or nested, row-major) or as binary_data_size bytes."""

    name = fields.String(required=True)
    shape = _SHAPE
    datatype = fields.String(required=True, validate=validate.OneOf(DATATYPES))
    parameters = fields.Dict(keys=fields.String(), metadata=_PARAMETERS, allow_none=True)
    data = fields.Raw(metadata={"description": "Values, flat or nested; absent when binary."})


class RequestedOutput(V2Schema):
    """An output to return: `predict` or `predict_proba`; `binary_data` asks for raw bytes."""

    name = fields.String(required=True)
    parameters = fields.Dict(keys=fields.String(), metadata=_PARAMETERS, allow_none=True)


class InferenceRequest(V2Schema):
    """One 2-D input of all features, or one 1-D input per named feature."""

    id = fields.String(allow_none=True)
    parameters = fields.Dict(keys=fields.String(), metadata=_PARAMETERS, allow_none=True)
    inputs = fields.List(fields.Nested(TensorInput), required=True, validate=validate.Length(min=1))
    outputs = fields.List(fields.Nested(RequestedOutput), allow_none=True)


class TensorOutput(Schema):
    """One output tensor; `data` is absent when the output was sent as binary."""

    name = fields.String(required=True)
    shape = _SHAPE
    datatype = fields.String(required=True, validate=validate.OneOf(DATATYPES))
    parameters = fields.Dict(keys=fields.String())
    data = fields.List(fields.Raw())


class InferenceResponse(Schema):
    """The model's outputs; `id` echoes the request's."""

    model_name = fields.String(required=True)
    model_version = fields.String()
    id = fields.String()
    parameters = fields.Dict(keys=fields.String())
    outputs = fields.List(fields.Nested(TensorOutput), required=True)


class MetadataTensor(Schema):
    """A tensor's name, datatype and shape (-1: any size)."""

    name = fields.String(required=True)
    datatype = fields.String(required=True)
    shape = fields.List(fields.Integer(), required=True)


class ServerMetadata(Schema):
    """Server name, version and protocol extensions."""

    name = fields.String(required=True)
    version = fields.String(required=True)
    extensions = fields.List(fields.String(), required=True)


class ModelMetadata(Schema):
    """A model's versions and tensors."""

    name = fields.String(required=True)
    versions = fields.List(fields.String(), required=True)
    platform = fields.String(required=True)
    inputs = fields.List(fields.Nested(MetadataTensor), required=True)
    outputs = fields.List(fields.Nested(MetadataTensor), required=True)


class Liveness(Schema):
    """The process answers."""

    live = fields.Boolean(required=True)


class Readiness(Schema):
    """Whether every model (or the named one) can serve; reasons when not."""

    ready = fields.Boolean(required=True)
    name = fields.String()
    reasons = fields.List(fields.String())


# --- KServe V1 ------------------------------------------------------------------------------


class V1Request(Schema):
    """`instances`: rows (lists or objects); `inputs`: rows, or an object of named columns."""

    instances = FeatureRows()
    inputs = TabularRows()

    @validates_schema
    def _one_layout(self, data: dict[str, Any], **kwargs: Any) -> None:
        _exactly_one(data, ("instances", "inputs"))


class V1Predictions(Schema):
    """One prediction per row, in input order: class labels or numbers."""

    predictions = fields.List(fields.Raw(), required=True)


class V1ModelList(Schema):
    """The names of the models in the store."""

    models = fields.List(fields.String(), required=True)


class V1Status(Schema):
    """KServe's server liveness answer."""

    status = fields.String(required=True)


# --- MLflow scoring protocol ------------------------------------------------------------------


class MlflowRequest(Schema):
    """Exactly one of the four layouts MLflow's scoring server accepts; `params` is ignored."""

    class Meta:
        unknown = EXCLUDE

    LAYOUTS: ClassVar[tuple[str, ...]] = (
        "dataframe_split",
        "dataframe_records",
        "instances",
        "inputs",
    )
    dataframe_split = SplitFrame()
    dataframe_records = FeatureRows()
    instances = TabularRows()
    inputs = TabularRows()
    params = fields.Dict(allow_none=True)

    @validates_schema
    def _one_layout(self, data: dict[str, Any], **kwargs: Any) -> None:
        _exactly_one(data, self.LAYOUTS)


class MlflowError(Schema):
    """MLflow's error shape: a Databricks error code and a message."""

    error_code = fields.String(required=True)
    message = fields.String(required=True)
