"""Hosts: `POST /v1/hosts` (admin), `GET` and `PATCH /v1/hosts/{host}`.

A busy-policy change re-decides every stored event of the host from its stored facts and
rewrites its busy blocks in the same transaction as the policy: frontends see the old policy
or the new one, never a mix, and Google is not asked again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Blueprint, Response, jsonify

from models import Host
from models.busy_block_writer import redecide_host_events
from models.registry import create_host
from rules.busy_rules import BusyPolicy
from webhook.api_json import bad_field, json_object, string_field
from webhook.api_time import format_rfc3339
from webhook.auth import require_admin, require_host
from webhook.request_scope import request_session

api_hosts = Blueprint("api_hosts", __name__)

# Ids in paths are bounded so an absurd number is a 404 from routing, never a database error.
MAX_ID = 2**31 - 1
HOST_PATH = f"/v1/hosts/<int(max={MAX_ID}):host_id>"


def _time_zone(body: dict[str, Any]) -> str | None:
    name = string_field(body, "timeZone", max_length=64)
    if name is None:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise bad_field(
            "timeZone", f"{name!r} is not an IANA time zone such as Europe/Berlin"
        ) from None
    return name


def _policy(body: dict[str, Any], current: dict | None = None) -> BusyPolicy | None:
    """The policy after applying the body's `busyPolicy` keys over `current`."""
    if "busyPolicy" not in body:
        return None
    if not isinstance(body["busyPolicy"], dict):
        raise bad_field("busyPolicy", 'must be a JSON object such as {"declinedBusy": true}')
    try:
        change = BusyPolicy.from_json(body["busyPolicy"])  # validates keys and types
    except ValueError as exc:
        raise bad_field("busyPolicy", str(exc)) from None
    merged = {**BusyPolicy.from_json(current or {}).to_json(), **body["busyPolicy"]}
    return BusyPolicy.from_json(merged) if current is not None else change


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
    body = json_object({"name", "timeZone", "busyPolicy"}, required={"name"})
    name = string_field(body, "name", max_length=200)
    assert name is not None
    time_zone = _time_zone(body) or "UTC"
    policy = _policy(body)
    session = request_session()
    host, token = create_host(session, name, time_zone)
    if policy is not None:
        host.busy_policy = policy.to_json()
    session.commit()
    return jsonify({**host_json(host), "apiToken": token}), 201


@api_hosts.get(HOST_PATH)
def show(host_id: int) -> Response:
    return jsonify(host_json(require_host(host_id)))


@api_hosts.patch(HOST_PATH)
def change(host_id: int) -> Response:
    host = require_host(host_id)
    body = json_object({"name", "timeZone", "busyPolicy"})
    name = string_field(body, "name", max_length=200)
    time_zone = _time_zone(body)
    policy = _policy(body, host.busy_policy or {})
    session = request_session()
    if name is not None:
        host.name = name
    if time_zone is not None:
        # Only the fallback for calendars whose zone Google has not reported yet; stored
        # all-day events were placed in their calendar's zone and stay where they are.
        host.time_zone = time_zone
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
