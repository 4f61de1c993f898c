"""`python -m ml_app proxy-config`: nginx's configuration for serving ml_app behind it.

Renders deploy/nginx/nginx.conf.template (and, with a certificate, tls.conf.template) into a run
folder that also holds nginx's pid file and temporary files, so nginx runs unprivileged from
there: `nginx -c <run-dir>/nginx.conf`.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path
from string import Template
from typing import NamedTuple

import click

from ml_app.core.config import PROJECT_ROOT, Settings

TEMPLATES = PROJECT_ROOT / "deploy" / "nginx"


class BodyLimits(NamedTuple):
    """The app's body limits, which nginx enforces first: requests, and admin uploads."""

    body: int
    admin_upload: int

    @classmethod
    def from_settings(cls, settings: Settings) -> BodyLimits:
        """ML_APP_MAX_BODY_BYTES and ML_APP_ADMIN_MAX_UPLOAD_BYTES."""
        return cls(settings.max_body_bytes, settings.admin_max_upload_bytes)


class TlsFiles(NamedTuple):
    """Where nginx listens for TLS, and its certificate and key (PEM files)."""

    listen: str
    cert: Path
    key: Path


def render_proxy_config(
    run_dir: Path, listen: str, upstream: str, limits: BodyLimits, *, tls: TlsFiles | None = None
) -> Path:
    """Write nginx.conf (and tls.conf when TLS is asked for) into run_dir; its path."""
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    values = {
        "NGINX_RUN_DIR": str(run_dir),
        "NGINX_LISTEN": listen,
        "NGINX_UPSTREAM": upstream,
        "NGINX_MAX_BODY": str(limits.body),
        "NGINX_ADMIN_MAX_BODY": str(limits.admin_upload),
        "NGINX_USER": pwd.getpwuid(os.geteuid()).pw_name,
    }
    (run_dir / "tls.conf").unlink(missing_ok=True)
    if tls is not None:
        files = {
            "NGINX_TLS_LISTEN": tls.listen,
            "NGINX_TLS_CERT": str(tls.cert.resolve()),
            "NGINX_TLS_KEY": str(tls.key.resolve()),
        }
        _render("tls.conf.template", files, run_dir / "tls.conf")
    return _render("nginx.conf.template", values, run_dir / "nginx.conf")


def _render(template: str, values: dict[str, str], target: Path) -> Path:
    # safe_substitute: nginx's own $variables are not ours to fill in.
    text = Template((TEMPLATES / template).read_text()).safe_substitute(values)
    target.write_text(text)
    return target


@click.command("proxy-config")
@click.option("--run-dir", type=click.Path(path_type=Path), required=True, help="nginx's folder.")
@click.option("--listen", default="127.0.0.1:8000", show_default=True, help="Where nginx listens.")
@click.option("--upstream", required=True, help="Gunicorn: unix:/path.sock or 127.0.0.1:PORT.")
@click.option("--max-body", type=int, help="Largest body (default: ML_APP_MAX_BODY_BYTES).")
@click.option("--tls-listen", help="Where nginx listens for TLS (with --tls-cert/--tls-key).")
@click.option("--tls-cert", type=click.Path(exists=True, path_type=Path))
@click.option("--tls-key", type=click.Path(exists=True, path_type=Path))
def proxy_config(  # noqa: PLR0913, PLR0917 - click passes one parameter per option
    run_dir: Path,
    listen: str,
    upstream: str,
    max_body: int | None,
    tls_listen: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
) -> None:
    """Write nginx's configuration for serving ml_app behind it; prints its path."""
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("give both --tls-cert and --tls-key, or neither")
    tls = TlsFiles(tls_listen or "8443", tls_cert, tls_key) if tls_cert and tls_key else None
    limits = BodyLimits.from_settings(Settings.from_env())
    if max_body:
        limits = limits._replace(body=max_body)
    click.echo(str(render_proxy_config(run_dir, listen, upstream, limits, tls=tls)))
