"""The web process's Flask app: Google push receiver, health probes, the /v1 API, the status
page, the OAuth connect flow, metrics, the ICS feed and
read-only CalDAV, one blueprint each."""

from __future__ import annotations

from flask import Flask

from core.settings import Settings, configure, get_settings
from models.startup import prepare_process
from webhook import host_session, request_scope
from webhook.api_blocks import api_blocks
from webhook.api_busy import api_busy
from webhook.api_calendars import api_calendars
from webhook.api_explain import api_explain
from webhook.api_hosts import api_hosts
from webhook.api_webhook_endpoints import api_webhook_endpoints
from webhook.caldav import caldav
from webhook.errors import register_error_handlers
from webhook.health import health
from webhook.host_pages import host_pages
from webhook.ics_feed import ics_feed
from webhook.metrics_view import metrics_blueprint
from webhook.oauth_connect import oauth_connect
from webhook.openapi import openapi
from webhook.push_receiver import push_receiver
from webhook.status_page import status_page

# Google's push bodies are empty and API requests are small; anything larger is refused
# with 413 before it is read.
MAX_CONTENT_LENGTH = 64 * 1024


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app. Without `settings`, they are read from the environment."""
    if settings is None:
        settings = get_settings()
    else:
        configure(settings)
    # A missing or weak key stops the process here, not as a 500 on first use.
    prepare_process(settings)
    app = Flask("webhook")
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_CONTENT_LENGTH,
        # Bad input must get our JSON errors, never a debugger page or a propagated trace.
        PROPAGATE_EXCEPTIONS=False,
        TRAP_HTTP_EXCEPTIONS=False,
        TRAP_BAD_REQUEST_ERRORS=False,
    )
    request_scope.init_app(app, settings)
    host_session.init_app(app, settings)
    register_error_handlers(app)
    app.register_blueprint(push_receiver)
    app.register_blueprint(health)
    for blueprint in (
        api_hosts,
        api_calendars,
        api_busy,
        api_blocks,
        api_explain,
        api_webhook_endpoints,
        openapi,
        status_page,
        oauth_connect,
        metrics_blueprint,
        ics_feed,
        caldav,
        host_pages,
    ):
        app.register_blueprint(blueprint)
    return app
