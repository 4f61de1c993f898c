"""gunicorn.conf.py, plus a hook that reports which ONNX converter modules each worker imported.

After every request a worker writes `<pid>.json` (the skl2onnx/onnx modules in its sys.modules)
into MODULES_REPORT_DIR, so a test can see inside every serving worker.
"""

import json as _json
import os as _os
import sys as _sys
from pathlib import Path as _Path

_PROJECT_CONFIG = _Path(__file__).resolve().parents[2] / "gunicorn.conf.py"
# Gunicorn takes one config file: this one runs the project's, then adds a hook to it.
exec(compile(_PROJECT_CONFIG.read_text(), str(_PROJECT_CONFIG), "exec"))
_CONVERTER_PACKAGES = {"skl2onnx", "onnx"}


def post_request(worker, req, environ, resp):
    """Record this worker's imported converter modules (the file's mtime says when)."""
    loaded = sorted(m for m in _sys.modules if m.partition(".")[0] in _CONVERTER_PACKAGES)
    report = _Path(_os.environ["MODULES_REPORT_DIR"]) / f"{_os.getpid()}.json"
    partial = report.with_suffix(".partial")
    partial.write_text(_json.dumps(loaded))
    _os.replace(partial, report)  # a reader never sees a half-written report
