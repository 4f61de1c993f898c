"""The OpenAPI document at /openapi.json and Swagger UI at /docs, served with no internet access."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Flask, Response, current_app
from flask_swagger_ui import get_swaggerui_blueprint

from ml_app.web.openapi.document import build_document
from ml_app.web.responses import json_response

DOCUMENT_KEY = "ml_app.openapi"
DOCS_URL = "/docs"
DOCUMENT_URL = "/openapi.json"
# Swagger UI's assets come from the pinned flask-swagger-ui wheel and are served by this app;
# validatorUrl None keeps the page from calling swagger.io's online validator; a relative OAuth
# redirect keeps absolute URLs (wrong behind a proxy) out of the page.
_SWAGGER_CONFIG = {
    "app_name": "ml_app API",
    "validatorUrl": None,
    "deepLinking": True,
    "oauth2RedirectUrl": f"{DOCS_URL}/oauth2-redirect.html",
}

bp = Blueprint("openapi", __name__)


@bp.get(DOCUMENT_URL)
def document() -> Response:
    """The OpenAPI 3 document, built on first use from the app's final URL map."""
    state = current_app.extensions[DOCUMENT_KEY]
    if "document" not in state:
        state["document"] = build_document(current_app, state["operations"])
    return json_response(state["document"])


def register_openapi(app: Flask, operations: Mapping[str, dict[str, Any]]) -> None:
    """Serve the document (described by `operations`, endpoint -> operation) and Swagger UI."""
    app.extensions[DOCUMENT_KEY] = {"operations": dict(operations)}
    app.register_blueprint(bp)
    app.register_blueprint(get_swaggerui_blueprint(DOCS_URL, DOCUMENT_URL, config=_SWAGGER_CONFIG))
