"""Hosts: `POST /v1/hosts` (admin), `GET` and `PATCH /v1/hosts/{host}`.

A busy-policy change re-decides every stored event of the host from its stored facts and
rewrites its busy blocks in the same transaction as the policy: frontends see the old policy
or the new one, never a mix, and Google is not asked again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify

from models import Host
from models.busy_block_writer import redecide_host_events
from models.registry import create_host
from rules.busy_rules import BusyPolicy
from webhook.api_input import bad_field, parse_body
from webhook.api_schemas import MAX_ID, HostCreate, HostPatch
from webhook.api_time import format_rfc3339
from webhook.auth import require_admin, require_host
from webhook.request_scope import request_session

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
    return jsonify({**host_json(host), "apiToken": token}), 201


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
