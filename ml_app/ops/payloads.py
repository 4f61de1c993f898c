"""`python -m ml_app payloads ship ...`: send the payload log's closed segments to a sink."""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import click

from ml_app.core.config import Settings
from ml_app.core.logformat import configure_logging
from ml_app.core.payload_segments import closed_segments
from ml_app.core.payload_shipper import Shipper
from ml_app.core.payload_sinks import open_sink

log = logging.getLogger("ml_app.shipper")
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _payload_log_dir(settings: Settings) -> Path:
    if not settings.payload_log_dir:
        raise click.UsageError("no payload log: pass --dir or set ML_APP_PAYLOAD_LOG_DIR")
    directory = Path(settings.payload_log_dir).expanduser()
    if not directory.is_dir():
        raise click.UsageError(f"ML_APP_PAYLOAD_LOG_DIR={directory} is not a directory")
    return directory


def _stopper(stop: threading.Event) -> Callable[..., None]:
    """A signal handler that sets `stop` from another thread: the handler runs on the main
    thread, which may be holding the event's own lock inside Event.wait at that instant."""

    def handler(*_: object) -> None:
        threading.Thread(target=stop.set, name="stop-shipper", daemon=True).start()

    return handler


@click.group("payloads")
def payloads() -> None:
    """The payload log: one CloudEvents JSON line per prediction and per feedback item."""


@payloads.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The payload log directory (default: ML_APP_PAYLOAD_LOG_DIR, as the server has it).",
)
@click.option(
    "--sink", required=True, help="http(s)://... or redis://host:port/db?stream=NAME[&maxlen=N]."
)
@click.option("--once", is_flag=True, help="Ship what is there now, then exit (tests, cron).")
@click.option(
    "--poll",
    type=click.FloatRange(min=0.05),
    default=2.0,
    show_default=True,
    help="Seconds between looks for newly closed segments.",
)
@click.option(
    "--attempts",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="With --once: failed passes before giving up (exit status 1).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the sink's answer.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="HTTP sink: POSTs in flight at once (above 1, a segment's events may arrive reordered).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve the shipper's Prometheus metrics on this port (0: any free one).",
)
@click.option(
    "--metrics-address",
    default="127.0.0.1",
    show_default=True,
    help="Address for --metrics-port (0.0.0.0 for a scraper on another host).",
)
def ship(  # noqa: PLR0913, PLR0917 - click passes one parameter per option
    directory: Path | None,
    sink: str,
    once: bool,
    poll: float,
    attempts: int,
    timeout: float,
    concurrency: int,
    metrics_port: int | None,
    metrics_address: str,
) -> None:
    """Send closed segments oldest first; delete each once the sink acknowledged all of it.

    Runs until SIGTERM or SIGINT, then ships what is closed by then in one last pass, which
    ends at the first failure (exit status 1): nothing unacknowledged is ever deleted.
    """
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    directory = directory or _payload_log_dir(settings)
    try:
        target = open_sink(sink, timeout, concurrency)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--sink") from None
    stop = threading.Event()
    # Saved and put back, so a caller in the same process (a test) keeps its own handlers.
    previous = {signum: signal.signal(signum, _stopper(stop)) for signum in _STOP_SIGNALS}
    shipper = Shipper(directory, target, stop)
    started = {"dir": str(directory), "once": once}
    if metrics_port is not None:
        from ml_app.core.payload_shipper_metrics import serve_metrics  # only when asked for

        started["metrics_port"] = serve_metrics(shipper, metrics_port, metrics_address).server_port
    log.info("shipper started", extra={"fields": started})
    try:
        delivered = shipper.run(poll, attempts if once else None)
    finally:
        target.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    log.info("shipper stopped", extra={"fields": dataclasses.asdict(shipper.stats)})
    if not delivered:
        left = len(closed_segments(directory))
        raise click.ClickException(
            f"the sink did not take every segment: {left} left in {directory}"
        )
