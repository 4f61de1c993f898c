"""Drive a server with wrk (installed from Debian when missing) and read its figures as JSON."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

# wrk runs this Lua: POST the body file named in the environment (with BENCH_API_KEY as X-API-Key
# when set), print a JSON summary at the end.
_SCRIPT = r"""
local file = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("BENCH_API_KEY")
if key then wrk.headers["X-API-Key"] = key end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


class Wrk:
    """wrk with one thread, a fixed number of connections and the POST script."""

    def __init__(self, scratch: Path, connections: int) -> None:
        self.binary = ensure_wrk()
        self.script = scratch / "post.lua"
        self.script.write_text(_SCRIPT)
        self.connections = connections

    def run(
        self, url: str, body_file: Path, seconds: int, api_key: str | None = None
    ) -> dict[str, Any]:
        """One run: req/s, p50/p99 in microseconds, error counts, wrk's own CPU time."""
        command = [self.binary, "-t1", f"-c{self.connections}", f"-d{seconds}s"]
        command += ["-s", str(self.script), url]
        env = {**os.environ, "BENCH_BODY_FILE": str(body_file)}
        if api_key is not None:
            env["BENCH_API_KEY"] = api_key
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            process = subprocess.Popen(command, env=env, stdout=out, stderr=err)
            watchdog = threading.Timer(seconds + 60, process.kill)
            watchdog.start()
            try:
                # wait4, not Popen.wait: it also returns the CPU time wrk used.
                _, status, usage = os.wait4(process.pid, 0)
            finally:
                watchdog.cancel()
            process.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
        line = next((ln for ln in stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
        if process.returncode or line is None:
            raise RuntimeError(f"wrk failed ({process.returncode}):\n{stdout}\n{stderr}")
        figures = json.loads(line.removeprefix("BENCH_JSON "))
        figures["errors"] = sum(v for k, v in figures.items() if k.endswith(("errors", "timeouts")))
        figures["rps"] = figures["requests"] / (figures["duration_us"] / 1e6)
        figures["wrk_cpu_s"] = usage.ru_utime + usage.ru_stime
        return figures


def ensure_wrk() -> str:
    """The wrk binary, installed with apt-get when it is missing (Debian's package)."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError("wrk is missing: install it with `apt-get install -y wrk` (as root)")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    return shutil.which("wrk") or "wrk"
