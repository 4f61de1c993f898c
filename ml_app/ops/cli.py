"""`python -m ml_app models ...` (also `flask --app ml_app models ...`): manage the model store."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson

from ml_app.core import lifecycle
from ml_app.core.config import Settings
from ml_app.core.drain import DrainMarker
from ml_app.core.errors import StoreError
from ml_app.core.lifecycle import LifecycleError
from ml_app.core.routing import RoutingConfig
from ml_app.core.store import LoadPolicy, ModelStore
from ml_app.core.stored_backends import describe_backend
from ml_app.ops.features import features
from ml_app.ops.keys import keys
from ml_app.ops.monitor import monitor
from ml_app.ops.payloads import payloads
from ml_app.ops.proxy import proxy_config

T = TypeVar("T")


def _store() -> ModelStore:
    root = click.get_current_context().meta.get("ml_app.store")
    return ModelStore(root or Settings.from_env().store)


def _run(action: Callable[[], T]) -> T:
    """Run an action; operator mistakes become a one-line error and exit status 1."""
    try:
        return action()
    except (LifecycleError, StoreError) as exc:
        raise click.ClickException(str(exc)) from exc


def _echo_json(value: Any) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


@click.group("models")
@click.option("--store", type=click.Path(path_type=Path), help="Model store (ML_APP_STORE).")
@click.pass_context
def models(ctx: click.Context, store: Path | None) -> None:
    """Register versions and route traffic; running servers pick changes up within seconds."""
    ctx.meta["ml_app.store"] = store


@models.command("list")
@click.argument("name", required=False)
def list_models(name: str | None) -> None:
    """Show versions, aliases, split and shadow of every model (or one)."""
    store = _store()
    names = [name] if name else _run(store.model_names)
    _echo_json([_run(lambda n=n: lifecycle.describe(store, n)) for n in names])


@models.command()
@click.argument("name")
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--version", help="Version name (default: the next number).")
@click.option("--metadata", "metadata_file", type=click.File("rb"), help="JSON object to merge.")
@click.option("--features", help="Comma-separated feature names (a new model needs them).")
@click.option("--alias", help="Point this alias (e.g. production) at the new version.")
@click.option("--entity-key", help="Predict by this entity id (needs --feature-source).")
@click.option("--feature-source", help="redis://host:port/db or feast+http://host:port/<view>.")
@click.option("--allow-pickle", is_flag=True, help="Accept a .pkl/.joblib artifact.")
@click.option("--json", "as_json", is_flag=True, help="Answer with one line of JSON.")
def register(  # noqa: PLR0913, PLR0917 - click passes one parameter per option
    name: str,
    artifact: Path,
    version: str | None,
    metadata_file: Any,
    features: str | None,
    alias: str | None,
    entity_key: str | None,
    feature_source: str | None,
    allow_pickle: bool,
    as_json: bool,
) -> None:
    """Validate ARTIFACT against the model's features and add it as a new version of NAME."""
    settings = Settings.from_env()
    policy = LoadPolicy.from_settings(settings)
    if allow_pickle:
        policy = LoadPolicy(policy.allow_version_mismatch, True, policy.trusted_types)
    try:
        metadata = orjson.loads(metadata_file.read()) if metadata_file else {}
    except orjson.JSONDecodeError as exc:
        raise click.ClickException(f"--metadata is not valid JSON: {exc}") from None
    if not isinstance(metadata, dict):
        raise click.ClickException("--metadata must hold a JSON object")
    if features:
        metadata["feature_names"] = [f.strip() for f in features.split(",") if f.strip()]
    metadata.update(_given(entity_key=entity_key, feature_source=feature_source))
    new = lifecycle.NewVersion(name, artifact, version, metadata, alias)
    if as_json:
        _register_as_json(policy, new)
        return
    done = _run(lambda: lifecycle.register_version(_store(), policy, new))
    click.echo(f"registered {done.name} version {done.version} (sha256 {done.sha256})")
    click.echo(f"backend: {describe_backend(done.backend)}")
    if alias:
        click.echo(f"{name}: {alias} -> {done.version}")


def _given(**options: str | None) -> dict[str, str]:
    """The options the operator gave, as metadata keys."""
    return {key: value for key, value in options.items() if value}


def _register_as_json(policy: LoadPolicy, new: lifecycle.NewVersion) -> None:
    """Register and print one JSON line either way (read by the admin endpoint); 1 if refused."""
    try:
        done = lifecycle.register_version(_store(), policy, new)
    except (LifecycleError, StoreError) as exc:
        not_found = isinstance(exc, lifecycle.NotInStore)
        click.echo(orjson.dumps({"error": str(exc), "not_found": not_found}).decode())
        raise SystemExit(1) from None
    click.echo(orjson.dumps(done.to_json()).decode())


@models.group()
def alias() -> None:
    """Set or remove aliases (production is what unversioned routes serve)."""


@alias.command("set")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.argument("version")
def set_alias(name: str, alias_name: str, version: str) -> None:
    """Point ALIAS of model NAME at VERSION (a rollback is the same command)."""
    _run(lambda: lifecycle.set_alias(_store(), name, alias_name, version))
    click.echo(f"{name}: {alias_name} -> {version}")


@alias.command("remove")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
def remove_alias(name: str, alias_name: str) -> None:
    """Remove ALIAS from model NAME."""
    _run(lambda: lifecycle.remove_alias(_store(), name, alias_name))
    click.echo(f"{name}: removed alias {alias_name}")


@models.command()
@click.argument("name")
@click.argument("weights", nargs=-1, metavar="VERSION=WEIGHT...")
@click.option("--clear", is_flag=True, help="Remove the split.")
def split(name: str, weights: tuple[str, ...], clear: bool) -> None:
    """Split unversioned traffic of NAME, e.g. `split iris 3=90 4=10`."""
    if clear == bool(weights):
        raise click.UsageError("give VERSION=WEIGHT pairs, or --clear")
    parsed: dict[str, float] = {}
    for pair in weights:
        target, _, weight = pair.partition("=")
        try:
            parsed[target] = float(weight)
        except ValueError:
            raise click.UsageError(f"{pair!r} is not VERSION=WEIGHT") from None
    routing = _run(lambda: lifecycle.set_split(_store(), name, parsed))
    click.echo(f"{name}: split {dict(routing.split) or 'off'}")
    _echo_backend_warnings(name, routing)


@models.command()
@click.argument("name")
@click.argument("versions", nargs=-1)
@click.option("--clear", is_flag=True, help="Turn shadow traffic off.")
def shadow(name: str, versions: tuple[str, ...], clear: bool) -> None:
    """Send a copy of NAME's unversioned traffic to VERSIONS (answers recorded, not returned)."""
    if clear == bool(versions):
        raise click.UsageError("give shadow VERSIONS, or --clear")
    routing = _run(lambda: lifecycle.set_shadow(_store(), name, versions))
    click.echo(f"{name}: shadow {', '.join(routing.shadow) or 'off'}")
    _echo_backend_warnings(name, routing)


def _echo_backend_warnings(name: str, routing: RoutingConfig) -> None:
    serving = Settings.from_env().backend
    for warning in _run(lambda: lifecycle.backend_warnings(_store(), name, routing, serving)):
        click.echo(f"warning: {warning}", err=True)


@click.command()
@click.option("--wait", type=click.FloatRange(min=0), default=0.0, help="Seconds to wait after.")
def drain(wait: float) -> None:
    """Report not ready from now on (ML_APP_DRAIN_FILE), e.g. from a Kubernetes preStop hook.

    Readiness answers 503 at once; the server keeps serving until it gets SIGTERM. --wait
    holds the hook open while balancers notice.
    """
    marker = DrainMarker(Settings.from_env().drain_file)
    if marker.path is None:
        raise click.ClickException("ML_APP_DRAIN_FILE is not set: nothing to mark")
    marker.start()
    click.echo(f"draining: {marker.path}")
    time.sleep(wait)


@click.group()
def main() -> None:
    """ml_app command line."""


main.add_command(models)
main.add_command(drain)
main.add_command(proxy_config)
main.add_command(keys)
main.add_command(features)
main.add_command(payloads)
main.add_command(monitor)
