"""Flask JSON provider backed by orjson: strict parsing, fast rendering, numpy-aware."""

from __future__ import annotations

from typing import Any

import orjson
from flask.json.provider import JSONProvider

_DUMP_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def dump_bytes(obj: Any) -> bytes:
    """A JSON body as bytes: numpy values and non-string keys allowed."""
    return orjson.dumps(obj, option=_DUMP_OPTIONS)


class OrjsonProvider(JSONProvider):
    """Every body Flask renders or parses goes through orjson."""

    mimetype = "application/json"

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        """Serialise to a str (Flask's interface); responses use the bytes path below."""
        return orjson.dumps(obj, option=_DUMP_OPTIONS).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Parse strictly: NaN and Infinity are not JSON."""
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Any:
        """A JSON response built from orjson's bytes, skipping a str round trip."""
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(dump_bytes(obj), mimetype=self.mimetype)
