"""Hosts: `POST /v1/hosts` (admin), `GET` and `PATCH /v1/hosts/{host}`, `DELETE
/v1/hosts/{host}` (admin), and their tokens: `POST /v1/hosts/{host}/token` (rotate the API
token) and `POST /v1/hosts/{host}/feed-token` (issue or rotate the feed token). Answers
that carry a token are `Cache-Control: no-store`.

A busy-policy change re-decides every stored event of the host from its stored facts and
rewrites its busy blocks in the same transaction as the policy: frontends see the old policy
or the new one, never a mix, and Google is not asked again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify

from models import Host
from models.busy_block_writer import redecide_host_events
from models.registry import create_host, delete_host, rotate_api_token, rotate_feed_token
from models.sign_in_links import LINK_LIFETIME, issue_sign_in_link, sign_in_url
from rules.busy_feed import connection_values
from rules.busy_rules import BusyPolicy
from webhook.api_input import bad_field, parse_body
from webhook.api_schemas import MAX_ID, HostCreate, HostPatch
from webhook.api_time import format_rfc3339
from webhook.auth import require_admin, require_host
from webhook.errors import ApiError
from webhook.request_scope import app_settings, request_session
from worker import enqueue as task_queue

log = logging.getLogger("calsync.webhook.hosts")

api_hosts = Blueprint("api_hosts", __name__)

HOST_PATH = f"/v1/hosts/<int(max={MAX_ID}):host_id>"


def _policy(change: dict[str, bool], current: dict | None = None) -> BusyPolicy:
    """The policy after applying the body's `busyPolicy` keys over `current` (defaults)."""
    try:
        return BusyPolicy.from_json({**BusyPolicy.from_json(current).to_json(), **change})
    except ValueError as exc:  # the schema checked keys and types already
        raise bad_field("busyPolicy", str(exc)) from None


def host_json(host: Host) -> dict[str, Any]:
    return {
        "id": host.id,
        "name": host.name,
        "timeZone": host.time_zone,
        "busyPolicy": BusyPolicy.from_json(host.busy_policy or {}).to_json(),
        "createdAt": format_rfc3339(host.created_at),
    }


@api_hosts.post("/v1/hosts")
def create() -> tuple[Response, int]:
    require_admin()
    body = parse_body(HostCreate)
    session = request_session()
    host, token = create_host(session, body.name, body.time_zone)
    if body.busy_policy is not None:
        host.busy_policy = _policy(body.busy_policy.model_dump(exclude_unset=True)).to_json()
    session.commit()
    return _with_token(jsonify({**host_json(host), "apiToken": token})), 201


def _with_token(response: Response) -> Response:
    """An answer carrying a token: no cache (browser, proxy) may keep it."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


@api_hosts.post(HOST_PATH + "/token")
def new_api_token(host_id: int) -> Response:
    """Rotate the host's API token (admin or the host itself): the old token stops working
    with this commit; the new one is shown only in this answer."""
    host = require_host(host_id)
    session = request_session()
    token = rotate_api_token(session, host)
    session.commit()
    log.info("host_api_token_rotated host_id=%s", host_id)
    return _with_token(jsonify({"id": host_id, "apiToken": token}))


@api_hosts.post(HOST_PATH + "/feed-token")
def new_feed_token(host_id: int) -> Response:
    """Issue (or rotate) the host's feed token: read-only busy time of this host, the one
    token a URL may carry. The old one stops working; the new one is shown only here."""
    host = require_host(host_id)
    session = request_session()
    token = rotate_feed_token(session, host)
    session.commit()
    log.info("host_feed_token_rotated host_id=%s", host_id)
    return _with_token(jsonify(connection_values(app_settings().public_url, host_id, token)))


@api_hosts.post(HOST_PATH + "/sign-in-link")
def new_sign_in_link(host_id: int) -> tuple[Response, int]:
    """A one-time sign-in link to the host's own pages (admin): good for 15 minutes, once.
    Give it to the host; opening it signs that browser in for 30 days."""
    require_admin()
    host = request_session().get(Host, host_id)
    if host is None:
        raise ApiError(404, "not_found", f"No host {host_id}.")
    now = datetime.now(UTC)
    token = issue_sign_in_link(request_session(), host, now)
    request_session().commit()
    log.info("host_sign_in_link_issued host_id=%s", host_id)
    answer = {
        "id": host_id,
        "url": sign_in_url(app_settings().public_url, token),
        "expiresAt": format_rfc3339(now + LINK_LIFETIME),
    }
    return _with_token(jsonify(answer)), 201


@api_hosts.delete(HOST_PATH)
def remove(host_id: int) -> tuple[str, int]:
    """Delete the host and all its data (admin). Its channels are stopped at Google after
    the deletion commits."""
    require_admin()
    session = request_session()
    to_stop = delete_host(session, host_id)
    if to_stop is None:
        raise ApiError(404, "not_found", f"No host {host_id}.")
    session.commit()
    log.info("host_deleted host_id=%s accounts=%s", host_id, len(to_stop))
    try:
        for account_id, stops in to_stop.items():
            task_queue.enqueue_stop_channels(
                account_id, stops.channel_pairs(), sealed_credentials=stops.sealed_text()
            )
    except task_queue.EnqueueError:
        # The rows are gone, so the webhook refuses these channels; they lapse at Google.
        log.warning("host_delete_stop_enqueue_failed host_id=%s", host_id)
    return "", 204


@api_hosts.get(HOST_PATH)
def show(host_id: int) -> Response:
    return jsonify(host_json(require_host(host_id)))


@api_hosts.patch(HOST_PATH)
def change(host_id: int) -> Response:
    host = require_host(host_id)
    body = parse_body(HostPatch)
    policy = None
    if body.busy_policy is not None:
        change = body.busy_policy.model_dump(exclude_unset=True)
        policy = _policy(change, host.busy_policy or {})
    session = request_session()
    if body.name is not None:
        host.name = body.name
    if body.time_zone is not None:
        # Only the fallback for calendars whose zone Google has not reported yet; stored
        # all-day events were placed in their calendar's zone and stay where they are.
        host.time_zone = body.time_zone
    redecided = None
    if policy is not None:
        host.busy_policy = policy.to_json()
        stats = redecide_host_events(session, host.id, policy, datetime.now(UTC))
        redecided = {
            "eventsChanged": stats.events_changed,
            "blocksAdded": stats.blocks_added,
            "blocksRemoved": stats.blocks_removed,
        }
    session.commit()
    answer = host_json(host)
    if redecided is not None:
        answer["redecided"] = redecided
    return jsonify(answer)
