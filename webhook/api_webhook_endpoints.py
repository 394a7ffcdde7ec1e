"""Outbound webhook endpoints, `/v1/webhook-endpoints[/{id}[/secret|/deliveries|/test|
/replay]]`: a booking frontend registers a URL and gets signed `busy.changed` and
`calendar.state_changed` events.

The admin may register endpoints for any hosts (or all); a host token only for its own
host, and it sees only the endpoints it registered: another's answer 404. The web process
never calls a receiver: a ping or a replay is queued for the outbound workers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify
from sqlalchemy import select

from models import Host, WebhookDelivery, WebhookEndpoint
from models.outbound import DeliveryStatus, EndpointState
from models.outbound_deliveries import event_message_id, recent_deliveries, replay
from models.outbound_endpoints import (
    check_destination,
    create_endpoint,
    delete_endpoint,
    rotate_secret,
)
from models.outbox_writer import record_ping
from rules.outbound_address import AddressRefused
from webhook.api_input import bad_field, parse_body
from webhook.api_schemas import (
    ReplayRequest,
    WebhookEndpointCreate,
    WebhookEndpointPatch,
)
from webhook.api_time import format_rfc3339
from webhook.auth import Caller, current_caller
from webhook.errors import ApiError
from webhook.request_scope import request_session
from worker.enqueue import after_commit, enqueue_outbound_delivery

api_webhook_endpoints = Blueprint("api_webhook_endpoints", __name__)

ENDPOINTS_PATH = "/v1/webhook-endpoints"
ENDPOINT_PATH = ENDPOINTS_PATH + "/<string(maxlength=40):endpoint_id>"


def _time(value: datetime | None) -> str | None:
    return format_rfc3339(value) if value is not None else None


def endpoint_json(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "hostIds": endpoint.host_ids,
        "description": endpoint.description,
        "state": endpoint.state,
        "stateReason": endpoint.state_reason,
        "failingSince": _time(endpoint.failing_since),
        "previousSecretExpiresAt": _time(endpoint.previous_secret_expires_at),
        "createdAt": _time(endpoint.created_at),
    }


def _checked_url(url: str) -> str:
    try:
        check_destination(url)
    except AddressRefused as exc:
        raise bad_field("url", str(exc)) from None
    return url


def _checked_hosts(caller: Caller, host_ids: list[int] | None) -> list[int] | None:
    """The hosts an endpoint of this caller may receive: a host token only its own."""
    if not caller.is_admin:
        assert caller.host_id is not None
        for host_id in host_ids or []:
            if host_id != caller.host_id:
                raise ApiError(404, "not_found", f"No host {host_id}.")
        return [caller.host_id]
    if host_ids is None:
        return None
    wanted = sorted(set(host_ids))
    found = set(request_session().scalars(select(Host.id).where(Host.id.in_(wanted))))
    missing = [host_id for host_id in wanted if host_id not in found]
    if missing:
        raise bad_field("hostIds", f"no host {missing[0]}")
    return wanted


def _find(endpoint_id: str) -> WebhookEndpoint:
    """The endpoint, if the caller may see it; 404 otherwise (also another host's)."""
    caller = current_caller()
    endpoint = request_session().get(WebhookEndpoint, endpoint_id)
    if endpoint is None or not (caller.is_admin or endpoint.created_by_host == caller.host_id):
        raise ApiError(404, "not_found", f"No webhook endpoint {endpoint_id}.")
    return endpoint


def _send_after_commit(endpoint: WebhookEndpoint) -> None:
    """Queue the endpoint's sender once this commits (a second one only finds nothing)."""
    after_commit(request_session(), enqueue_outbound_delivery, endpoint.id)


@api_webhook_endpoints.post(ENDPOINTS_PATH)
def create() -> tuple[Response, int]:
    caller = current_caller()
    body = parse_body(WebhookEndpointCreate)
    host_ids = _checked_hosts(caller, body.host_ids)
    url = _checked_url(body.url)
    session = request_session()
    endpoint, secret = create_endpoint(
        session,
        url=url,
        host_ids=host_ids,
        description=body.description,
        created_by_host=None if caller.is_admin else caller.host_id,
    )
    session.commit()
    return jsonify({**endpoint_json(endpoint), "secret": secret}), 201


@api_webhook_endpoints.get(ENDPOINTS_PATH)
def list_endpoints() -> Response:
    caller = current_caller()
    query = select(WebhookEndpoint).order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    if not caller.is_admin:
        query = query.where(WebhookEndpoint.created_by_host == caller.host_id)
    endpoints = request_session().scalars(query)
    return jsonify({"endpoints": [endpoint_json(e) for e in endpoints]})


@api_webhook_endpoints.get(ENDPOINT_PATH)
def show(endpoint_id: str) -> Response:
    return jsonify(endpoint_json(_find(endpoint_id)))


@api_webhook_endpoints.patch(ENDPOINT_PATH)
def change(endpoint_id: str) -> Response:
    endpoint = _find(endpoint_id)
    body = parse_body(WebhookEndpointPatch)
    caller = current_caller()
    session = request_session()
    if body.host_ids is not None:
        endpoint.host_ids = _checked_hosts(caller, body.host_ids)
    if body.url is not None:
        endpoint.url = _checked_url(body.url)
    if body.description is not None:
        endpoint.description = body.description
    if body.enabled is True and endpoint.state != EndpointState.ACTIVE:
        endpoint.state = str(EndpointState.ACTIVE)
        endpoint.failing_since = endpoint.state_reason = None
        _send_after_commit(endpoint)
    elif body.enabled is False:
        endpoint.state = str(EndpointState.DISABLED)
        endpoint.state_reason = "Disabled by its owner."
    session.commit()
    return jsonify(endpoint_json(endpoint))


@api_webhook_endpoints.delete(ENDPOINT_PATH)
def remove(endpoint_id: str) -> tuple[str, int]:
    session = request_session()
    delete_endpoint(session, _find(endpoint_id))
    session.commit()
    return "", 204


@api_webhook_endpoints.post(ENDPOINT_PATH + "/secret")
def new_secret(endpoint_id: str) -> Response:
    endpoint = _find(endpoint_id)
    session = request_session()
    secret = rotate_secret(session, endpoint, datetime.now(UTC))
    session.commit()
    return jsonify(
        {
            "id": endpoint.id,
            "secret": secret,
            "previousSecretExpiresAt": _time(endpoint.previous_secret_expires_at),
        }
    )


@api_webhook_endpoints.get(ENDPOINT_PATH + "/deliveries")
def deliveries(endpoint_id: str) -> Response:
    endpoint = _find(endpoint_id)
    rows = recent_deliveries(request_session(), endpoint.id)
    return jsonify(
        {
            "deliveries": [
                {
                    "id": delivery.id,
                    "eventId": event_message_id(delivery.event_id),
                    "eventType": event_type,
                    "status": delivery.status,
                    "attempts": delivery.attempts,
                    "lastStatusCode": delivery.last_status_code,
                    "lastDurationMs": delivery.last_duration_ms,
                    "lastError": delivery.last_error,
                    "lastAttemptAt": _time(delivery.last_attempt_at),
                    "nextAttemptAt": _time(delivery.next_attempt_at)
                    if delivery.status == DeliveryStatus.PENDING
                    else None,
                    "deliveredAt": _time(delivery.delivered_at),
                    "createdAt": _time(delivery.created_at),
                }
                for delivery, event_type in rows
            ]
        }
    )


@api_webhook_endpoints.post(ENDPOINT_PATH + "/test")
def ping(endpoint_id: str) -> tuple[Response, int]:
    endpoint = _find(endpoint_id)
    if endpoint.state == EndpointState.DISABLED:
        raise ApiError(
            409, "endpoint_disabled", 'The endpoint is disabled; PATCH {"enabled": true} first.'
        )
    session = request_session()
    now = datetime.now(UTC)
    event = record_ping(session, now)
    delivery = WebhookDelivery(
        endpoint_id=endpoint.id,
        event_id=event.id,
        host_id=None,
        status=str(DeliveryStatus.PENDING),
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(delivery)
    session.flush()
    _send_after_commit(endpoint)
    session.commit()
    return jsonify({"deliveryId": delivery.id, "eventId": event_message_id(event.id)}), 202


@api_webhook_endpoints.post(ENDPOINT_PATH + "/replay")
def replay_since(endpoint_id: str) -> tuple[Response, int]:
    endpoint = _find(endpoint_id)
    body = parse_body(ReplayRequest)
    session = request_session()
    requeued = replay(session, endpoint, body.since, datetime.now(UTC))
    _send_after_commit(endpoint)
    session.commit()
    return jsonify({"requeued": requeued}), 202
