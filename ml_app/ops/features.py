"""`python -m ml_app features ...`: feature store data for predictions by entity id."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import redis
from sklearn import datasets

from ml_app.core import lifecycle
from ml_app.core.config import Settings
from ml_app.core.errors import StoreError
from ml_app.core.feature_sources import declaration_of, redis_key
from ml_app.core.lifecycle import LifecycleError
from ml_app.core.store import LoadPolicy, ModelStore

# The demo models (model/train.py) and the scikit-learn datasets they learned from.
DEMO_DATASETS: dict[str, Callable[[], Any]] = {
    "iris": datasets.load_iris,
    "breast_cancer": datasets.load_breast_cancer,
    "diabetes": datasets.load_diabetes,
}
DEMO_ENTITY_KEY = "row_id"


@click.group("features")
def features() -> None:
    """Feature store data for versions that predict by entity id."""


@features.command("seed-demo")
@click.option("--redis", "redis_url", required=True, help="redis://host:port/db to write to.")
@click.option("--store", type=click.Path(path_type=Path), help="Model store (ML_APP_STORE).")
@click.option(
    "--declare",
    is_flag=True,
    help="Also register a version of each demo model that reads its features from this Redis.",
)
@click.option("--alias", help="With --declare: point this alias (e.g. production) at them.")
def seed_demo(redis_url: str, store: Path | None, declare: bool, alias: str | None) -> None:
    """Write each demo model's dataset rows to Redis as entities (entity id = row index)."""
    settings = Settings.from_env()
    model_store = ModelStore(store or settings.store)
    client = redis.Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=10)
    try:
        for name in _demo_models(model_store):
            feature_names = _served_metadata(model_store, name)["feature_names"]
            count = write_rows(client, settings.feature_key_prefix, name, feature_names)
            click.echo(f"{name}: {count} entities under {settings.feature_key_prefix}:{name}:<id>")
            if declare:
                _declare(model_store, LoadPolicy.from_settings(settings), name, redis_url, alias)
    except redis.RedisError as exc:
        raise click.ClickException(f"Redis: {exc}") from exc
    except (LifecycleError, StoreError) as exc:
        raise click.ClickException(str(exc)) from exc


def write_rows(client: redis.Redis, prefix: str, name: str, feature_names: list[str]) -> int:
    """Every row of a demo model's dataset as a hash of feature -> value; one pipeline."""
    data = DEMO_DATASETS[name]().data
    if data.shape[1] != len(feature_names):
        raise StoreError(f"model {name} has {len(feature_names)} features; data {data.shape[1]}")
    pipeline = client.pipeline(transaction=False)
    for index, row in enumerate(data.tolist()):
        # redis-py writes a float as repr(): the shortest text that reads back as the same float.
        values = dict(zip(feature_names, row, strict=True))
        pipeline.hset(redis_key(prefix, name, index), mapping=values)
    pipeline.execute()
    return len(data)


def _demo_models(store: ModelStore) -> list[str]:
    names = [name for name in DEMO_DATASETS if name in store.model_names()]
    if not names:
        raise click.ClickException(f"no demo model in {store.root}: run `make model` first")
    return names


def _served_version(store: ModelStore, name: str) -> str:
    """The version unversioned routes serve: the production alias, else the newest."""
    return store.aliases(name).get("production") or store.versions(name)[-1]


def _served_metadata(store: ModelStore, name: str) -> dict[str, Any]:
    return store.read_metadata(name, _served_version(store, name))


def _declare(
    store: ModelStore, policy: LoadPolicy, name: str, redis_url: str, alias: str | None
) -> None:
    """Register the served version's estimator again, declaring this Redis (once: idempotent)."""
    version = _served_version(store, name)
    metadata = store.read_metadata(name, version)
    declared = declaration_of(metadata)
    if declared is not None and declared.source == redis_url:
        click.echo(f"{name}: version {version} already reads its features from this Redis")
        return
    artifact = store.artifact_path(name, version, metadata)
    given = {"entity_key": DEMO_ENTITY_KEY, "feature_source": redis_url}
    new = lifecycle.NewVersion(name, artifact, None, given, alias)
    done = lifecycle.register_version(store, policy, new)
    click.echo(f"{name}: version {done.version} (from {version}) predicts by {DEMO_ENTITY_KEY}")
