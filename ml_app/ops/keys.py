"""`python -m ml_app keys ...`: add, list and revoke API keys in ML_APP_API_KEYS_FILE."""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from ml_app.core import apikeys
from ml_app.core.config import Settings


def _keys_file() -> Path:
    given = click.get_current_context().meta.get("ml_app.keys_file")
    path = given or Settings.from_env().api_keys_file
    if not path:
        raise click.ClickException("no keys file: pass --file or set ML_APP_API_KEYS_FILE")
    return Path(path).expanduser()


@click.group("keys")
@click.option("--file", "keys_file", help="Keys file (ML_APP_API_KEYS_FILE).")
@click.pass_context
def keys(ctx: click.Context, keys_file: str | None) -> None:
    """Manage API keys; running servers pick changes up within ML_APP_RELOAD_INTERVAL."""
    ctx.meta["ml_app.keys_file"] = keys_file


@keys.command()
@click.argument("key_id")
@click.option("--models", help="Comma-separated models the key may call (default: all).")
@click.option("--limit", help="Rate limit for this key, e.g. 10/second.")
def add(key_id: str, models: str | None, limit: str | None) -> None:
    """Add a key named KEY_ID and print it: this is the only time it is shown."""
    names = tuple(name.strip() for name in (models or "").split(",") if name.strip())
    try:
        key = apikeys.add_key(_keys_file(), key_id, names, limit)
    except apikeys.KeysFileError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(key)


@keys.command("list")
def list_keys() -> None:
    """Show every key's id, models and limit (never a key or its digest)."""
    try:
        entries = apikeys.read_keys(_keys_file())
    except apikeys.KeysFileError as exc:
        raise click.ClickException(str(exc)) from exc
    listed = [
        {key: value for key, value in entry.to_json().items() if key != "sha256"}
        for entry in entries
    ]
    click.echo(orjson.dumps(listed, option=orjson.OPT_INDENT_2).decode())


@keys.command()
@click.argument("key_id")
def revoke(key_id: str) -> None:
    """Remove the key named KEY_ID; requests with it are refused from the next reload on."""
    try:
        apikeys.revoke_key(_keys_file(), key_id)
    except apikeys.KeysFileError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"revoked {key_id}")
