"""What every host page shares: the blueprint, its security headers (a
Content-Security-Policy with no inline script or style), its error pages, and `signed_in()`,
the session's host or a page saying how to sign in."""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    render_template,
    request,
)

from models import Host
from webhook.errors import ApiError
from webhook.host_session import session_host

# Its script and stylesheet are the app's static files (webhook/static/, served at /static/).
host_pages = Blueprint("host_pages", __name__)

REFRESH_SECONDS = 3
LOG_DAYS = 7
NOTE_MAX = 500

# Scripts and styles only from this app's own files; nothing inline, nothing from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


@host_pages.after_request
def _security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@host_pages.errorhandler(ApiError)
def _error_page(error: ApiError) -> Response | tuple[Response, int]:
    if request.path.startswith("/me/explain"):
        return error.to_response()
    html = render_template(
        "host_message.html", title="That did not work", problem=error.message, actions=[]
    )
    return Response(html, status=error.status, mimetype="text/html")


def html_page(html: str, status: int = 200) -> Response:
    return Response(html, status=status, mimetype="text/html")


def ask_for_link_actions() -> list[str]:
    return [
        "Ask the operator of calsync for a new sign-in link. They make one with "
        "`calsync hosts link HOST` or `POST /v1/hosts/HOST/sign-in-link`.",
    ]


def signed_in() -> Host:
    host = session_host()
    if host is None:
        raise _NotSignedIn()
    return host


class _NotSignedIn(Exception):
    pass


@host_pages.errorhandler(_NotSignedIn)
def _sign_in_page(_error: _NotSignedIn) -> Response:
    if request.path.startswith("/me/explain") or request.path.startswith("/me/live"):
        return ApiError(401, "unauthorized", "Sign in again with a new link.").to_response()
    html = render_template(
        "host_message.html",
        title="Sign in to your calsync page",
        problem="This browser is not signed in (or your session ended: sessions last 30 days "
        "and end when your API token is rotated).",
        actions=ask_for_link_actions(),
    )
    return html_page(html, 401)
