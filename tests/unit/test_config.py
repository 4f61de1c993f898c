"""Settings from the environment: types, defaults and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml_app.core.config import PROJECT_ROOT, Settings, SettingsError


def test_defaults():
    settings = Settings.from_env({})
    assert settings.store == PROJECT_ROOT / "model" / "store"
    assert (settings.default_model, settings.max_batch_rows) == ("iris", 10_000)
    assert settings.allow_pickle is False
    assert settings.backend == "auto"


def test_values_are_parsed_by_type():
    settings = Settings.from_env(
        {
            "ML_APP_STORE": "/srv/models",
            "ML_APP_MAX_BATCH_ROWS": "50",
            "ML_APP_ALLOW_PICKLE": "yes",
            "ML_APP_LOG_LEVEL": "debug",
            "ML_APP_TRUSTED_TYPES": "a.B, c.D",
            "ML_APP_BACKEND": " ONNX ",
            "UNRELATED": "x",
        }
    )
    assert settings.store == Path("/srv/models")
    assert settings.max_batch_rows == 50
    assert settings.allow_pickle is True
    assert settings.log_level == "DEBUG"
    assert settings.trusted_types == ("a.B", "c.D")
    assert settings.backend == "onnx"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ML_APP_MAX_BATCH_ROWS", "0"),
        ("ML_APP_MAX_BODY_BYTES", "ten"),
        ("ML_APP_ALLOW_PICKLE", "maybe"),
        ("ML_APP_LOG_LEVEL", "LOUD"),
        ("ML_APP_METRICS_TOKEN", "two words"),
        ("ML_APP_BACKEND", "tensorflow"),
        ("ML_APP_DRIFT_MAX_BINS", "11"),
        ("ML_APP_DRIFT_MAX_BINS", "0"),
        ("ML_APP_DRIFT_FLUSH_SECONDS", "-1"),
    ],
)
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_drift_is_on_for_every_feature_with_ten_bins_unless_told_otherwise():
    assert Settings.from_env({}).drift is True
    assert (Settings.from_env({}).drift_features, Settings.from_env({}).drift_max_bins) == ((), 10)
    settings = Settings.from_env(
        {"ML_APP_DRIFT": "off", "ML_APP_DRIFT_FEATURES": "bmi, age", "ML_APP_DRIFT_MAX_BINS": "5"}
    )
    assert (settings.drift, settings.drift_features, settings.drift_max_bins) == (
        False,
        ("bmi", "age"),
        5,
    )


def test_overrides_win_over_environment():
    settings = Settings.from_env({"ML_APP_DEFAULT_MODEL": "a"}, overrides={"default_model": "b"})
    assert settings.default_model == "b"


def test_metrics_token_is_off_by_default_and_kept_out_of_repr():
    assert Settings.from_env({}).metrics_token == ""
    settings = Settings.from_env({"ML_APP_METRICS_TOKEN": "  s3cret-token \n"})
    assert settings.metrics_token == "s3cret-token"
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("ML_APP_FEATURE_STORE_TIMEOUT", "0"),
        ("ML_APP_FEATURE_STORE_TIMEOUT", "61"),
        ("ML_APP_FEATURE_STORE_TIMEOUT", "soon"),
        ("ML_APP_FEATURE_KEY_PREFIX", " "),
        ("ML_APP_FEATURE_KEY_PREFIX", "my features"),
    ],
)
def test_feature_store_settings_refuse_values_they_cannot_use(variable, raw):
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: raw})


def test_feature_store_settings_are_read():
    settings = Settings.from_env(
        {"ML_APP_FEATURE_STORE_TIMEOUT": "0.25", "ML_APP_FEATURE_KEY_PREFIX": "fs"}
    )
    assert (settings.feature_store_timeout, settings.feature_key_prefix) == (0.25, "fs")
