"""Sign in with a one-time link (it sets the session cookie and redirects to /me); sign out."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from flask import (
    redirect,
    render_template,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from models import Host
from models.sign_in_links import LinkProblem, use_sign_in_link
from webhook.host_pages.common import (
    ask_for_link_actions,
    host_pages,
    html_page,
)
from webhook.host_session import check_csrf, session_host, sign_in, sign_out
from webhook.request_scope import request_session

log = logging.getLogger("calsync.webhook.host_pages")


LINK_PROBLEMS = {
    LinkProblem.EXPIRED: (
        "This sign-in link has expired",
        "A sign-in link works for 15 minutes after it is made.",
    ),
    LinkProblem.USED: (
        "This sign-in link was already used",
        "A sign-in link works once. If that was not you, ask the operator to rotate your "
        "API token: that signs every browser out.",
    ),
    LinkProblem.UNKNOWN: (
        "This sign-in link is not valid",
        "Check that the whole link was copied.",
    ),
}


@host_pages.get("/sign-in/<token>")
def open_sign_in_link(token: str) -> BaseResponse:
    session = request_session()
    check = use_sign_in_link(session, token, datetime.now(UTC))
    host = session.get(Host, check.host_id) if check.host_id is not None else None
    if check.problem is not None or host is None:
        title, problem = LINK_PROBLEMS[check.problem or LinkProblem.UNKNOWN]
        session.rollback()
        html = render_template(
            "host_message.html", title=title, problem=problem, actions=ask_for_link_actions()
        )
        return html_page(html, 410 if check.problem != LinkProblem.UNKNOWN else 404)
    session.commit()
    sign_in(host)
    log.info("host_signed_in host_id=%s", host.id)
    # The address bar must not keep the link: a redirect to a URL with no token at all.
    return redirect(url_for("host_pages.week_view"), code=303)


@host_pages.post("/sign-out")
def sign_out_view() -> BaseResponse:
    if session_host() is not None:
        check_csrf()
    sign_out()
    html = render_template(
        "host_message.html",
        title="You are signed out",
        problem="This browser no longer has access to your page.",
        actions=["To come back, open a new sign-in link."],
    )
    return html_page(html)
