"""The web process's Flask app: Google push receiver, health probes, and (added by their
own modules) the /v1 API, status page and metrics."""

from __future__ import annotations

import importlib

from flask import Flask

from calsync.settings import Settings, configure, get_settings
from webhook import request_scope
from webhook.errors import register_error_handlers
from webhook.health import health
from webhook.push_receiver import push_receiver

# Google's push bodies are empty and API requests are small; anything larger is refused
# with 413 before it is read.
MAX_CONTENT_LENGTH = 64 * 1024


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app. Without `settings`, they are read from the environment."""
    if settings is None:
        settings = get_settings()
    else:
        configure(settings)
    app = Flask("webhook")
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_CONTENT_LENGTH,
        # Bad input must get our JSON errors, never a debugger page or a propagated trace.
        PROPAGATE_EXCEPTIONS=False,
        TRAP_HTTP_EXCEPTIONS=False,
        TRAP_BAD_REQUEST_ERRORS=False,
    )
    request_scope.init_app(app, settings)
    register_error_handlers(app)
    app.register_blueprint(push_receiver)
    app.register_blueprint(health)
    for blueprint in _feature_blueprints():
        app.register_blueprint(blueprint)
    return app


def _feature_blueprints() -> list:
    """Blueprints of the API, status page, OAuth connect and metrics (one module each)."""
    found = []
    for module_name, attribute in FEATURE_BLUEPRINTS:
        module = importlib.import_module(module_name)
        found.append(getattr(module, attribute))
    return found


# (module, blueprint attribute); each feature adds its line here.
FEATURE_BLUEPRINTS: list[tuple[str, str]] = [
    ("webhook.api_hosts", "api_hosts"),
    ("webhook.api_calendars", "api_calendars"),
    ("webhook.api_busy", "api_busy"),
    ("webhook.api_blocks", "api_blocks"),
    ("webhook.api_explain", "api_explain"),
    ("webhook.openapi", "openapi"),
    ("webhook.status_page", "status_page"),
    ("webhook.oauth_connect", "oauth_connect"),
    ("webhook.metrics_view", "metrics_blueprint"),
]
