"""Request bodies before and after the app: one WSGI middleware, one body limit per request.

`RequestBodies` works out the route's body limit once (`ML_APP_MAX_BODY_BYTES`, or
`ML_APP_ADMIN_MAX_UPLOAD_BYTES` under /admin/) and holds the request to it twice: a compressed
body is decoded under it before the app runs (ml_app.web.encoding), and after the app has
answered, the unread rest of the body is drained up to it (ml_app.web.body_drain), so an early
answer reaches the client instead of a connection reset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.wsgi import get_content_length

from ml_app.web.body_drain import CheckedInput, drain, has_body
from ml_app.web.encoding import decode_body


class RequestBodies:
    """WSGI middleware: decode a compressed body, call the app, drain what it left unread."""

    def __init__(
        self, app: Callable[..., Iterable[bytes]], limit_for_path: Callable[[str], int]
    ) -> None:
        self.app = app
        self.limit_for_path = limit_for_path

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Call the app with the body decoded under the route's limit, then drain the rest."""
        encoded = bool(environ.get("HTTP_CONTENT_ENCODING"))
        sent = has_body(environ)
        if not (sent or encoded):
            return self.app(environ, start_response)
        limit = self.limit_for_path(environ.get("PATH_INFO", ""))
        source = environ.get("wsgi.input")  # the raw body, before decoding swaps it
        if source is not None:  # a body that breaks off is a 400 for decoding, app and drain
            source = environ["wsgi.input"] = CheckedInput(source)
        length = get_content_length(environ)  # as sent: decoding rewrites it
        if encoded:
            decode_body(environ, limit)
        answer = self.app(environ, start_response)
        # A body declared larger than the limit is not read: the 413 goes, the reset is accepted.
        if sent and source is not None and (length is None or length <= limit):
            drain(source, limit)
        return answer
