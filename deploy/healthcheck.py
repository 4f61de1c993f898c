"""Container health check: exit 0 when ml_app answers 200 on /health/ready, 1 otherwise.

Standard library only, so it runs in a slim image (no curl) without importing the app.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    """Ask the local server whether it is ready; the exit status is the answer."""
    port = os.environ.get("PORT", "8000")
    url = f"http://127.0.0.1:{port}/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"not ready: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
