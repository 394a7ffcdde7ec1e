"""/v1/webhook-endpoints: bad input gets a 4xx JSON error and changes nothing; a host sees
and changes only its own endpoints (another host's answer 404); secrets are shown once."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from models import WebhookEndpoint
from models.db import session_scope
from models.registry import create_host
from tests.conftest import TEST_ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
URL = "http://127.0.0.1:9/hooks"  # loopback: plain http is allowed (development)


def new_host(name: str) -> tuple[int, dict[str, str]]:
    with session_scope() as session:
        host, token = create_host(session, name)
        return host.id, {"Authorization": f"Bearer {token}"}


def endpoint_count() -> int:
    with session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(WebhookEndpoint)) or 0)


@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    [
        ({"url": "ftp://127.0.0.1/x"}, 400, "invalid_field", "https://"),
        ({"url": "https://user:secret@127.0.0.1/x"}, 400, "invalid_field", "user name"),
        ({"url": "https://127.0.0.1/" + "a" * 2048}, 400, "invalid_field", "2048"),
        ({"url": "https://169.254.169.254/latest"}, 400, "invalid_field", "link-local"),
        ({"url": "https://[fd00:ec2::254]/"}, 400, "invalid_field", "metadata"),
        ({"url": "http://192.0.2.10/hooks"}, 400, "invalid_field", "only to loopback"),
        ({"url": "https://no-such-host.invalid/"}, 400, "invalid_field", "does not resolve"),
        ({"url": 5}, 400, "invalid_field", "url"),
        ({}, 400, "invalid_field", "url"),
        ({"url": URL, "hostIds": []}, 400, "invalid_field", "hostIds"),
        ({"url": URL, "hostIds": ["1"]}, 400, "invalid_field", "hostIds"),
        ({"url": URL, "hostIds": [999999]}, 400, "invalid_field", "no host 999999"),
        ({"url": URL, "hostId": [1]}, 400, "invalid_field", "hostId"),
        ({"url": URL, "description": "x" * 501}, 400, "invalid_field", "description"),
    ],
)
def test_bad_registrations_are_refused_in_words(client, body, status, code, words) -> None:
    answer = client.post("/v1/webhook-endpoints", json=body, headers=ADMIN)
    assert answer.status_code == status
    error = answer.get_json()["error"]
    assert error["code"] == code and words in error["message"], error
    assert endpoint_count() == 0


def test_bad_bodies_and_no_token(client) -> None:
    answer = client.post("/v1/webhook-endpoints", data="{", headers=ADMIN)
    assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "invalid_json"
    answer = client.post("/v1/webhook-endpoints", json={"url": URL})
    assert answer.status_code == 401 and answer.get_json()["error"]["code"] == "unauthorized"
    assert client.get("/v1/webhook-endpoints/we_nope", headers=ADMIN).status_code == 404


def test_hosts_reach_only_their_own_endpoints(client) -> None:
    ann, ann_auth = new_host("ann")
    bob, bob_auth = new_host("bob")
    refused = client.post(
        "/v1/webhook-endpoints", json={"url": URL, "hostIds": [bob]}, headers=ann_auth
    )
    assert refused.status_code == 404
    created = client.post("/v1/webhook-endpoints", json={"url": URL}, headers=ann_auth)
    assert created.status_code == 201
    endpoint = created.get_json()
    assert endpoint["hostIds"] == [ann] and endpoint["secret"].startswith("whsec_")
    admin_wide = client.post("/v1/webhook-endpoints", json={"url": URL}, headers=ADMIN).get_json()
    assert admin_wide["hostIds"] is None

    base = f"/v1/webhook-endpoints/{endpoint['id']}"
    shown = client.get(base, headers=ann_auth)
    assert shown.status_code == 200 and "secret" not in shown.get_json()
    for method, path, body in [
        ("get", base, None),
        ("patch", base, {"description": "mine now"}),
        ("delete", base, None),
        ("post", base + "/secret", None),
        ("get", base + "/deliveries", None),
        ("post", base + "/test", None),
        ("post", base + "/replay", {"since": "2026-01-01T00:00:00Z"}),
    ]:
        answer = getattr(client, method)(path, json=body, headers=bob_auth)
        assert answer.status_code == 404, (method, path)
        assert answer.get_json()["error"]["code"] == "not_found"
    # The admin's all-hosts endpoint is not a host's to see either.
    assert (
        client.get(f"/v1/webhook-endpoints/{admin_wide['id']}", headers=ann_auth).status_code == 404
    )
    listed = client.get("/v1/webhook-endpoints", headers=ann_auth).get_json()["endpoints"]
    assert [e["id"] for e in listed] == [endpoint["id"]]
    assert len(client.get("/v1/webhook-endpoints", headers=ADMIN).get_json()["endpoints"]) == 2
    moved = client.patch(base, json={"hostIds": [bob]}, headers=ann_auth)
    assert moved.status_code == 404
    assert client.get(base, headers=ann_auth).get_json()["description"] == ""
    # Deleting a host deletes the endpoints it registered; the admin's stay.
    assert client.delete(f"/v1/hosts/{ann}", headers=ADMIN).status_code == 204
    assert client.get(base, headers=ADMIN).status_code == 404
    assert client.get(f"/v1/webhook-endpoints/{admin_wide['id']}", headers=ADMIN).status_code == 200


def test_patch_validates_and_disabling_stops_pings(client) -> None:
    created = client.post("/v1/webhook-endpoints", json={"url": URL}, headers=ADMIN).get_json()
    base = f"/v1/webhook-endpoints/{created['id']}"
    for body, words in [
        ({"url": "https://169.254.1.1/"}, "link-local"),
        ({"enabled": "yes"}, "enabled"),
        ({"state": "active"}, "state"),
    ]:
        answer = client.patch(base, json=body, headers=ADMIN)
        assert answer.status_code == 400 and words in answer.get_json()["error"]["message"]
    assert client.get(base, headers=ADMIN).get_json()["url"] == URL
    off = client.patch(base, json={"enabled": False}, headers=ADMIN).get_json()
    assert off["state"] == "disabled" and off["stateReason"]
    answer = client.post(base + "/test", headers=ADMIN)
    assert answer.status_code == 409 and answer.get_json()["error"]["code"] == "endpoint_disabled"
    for body in ({}, {"since": "yesterday"}, {"since": "2026-01-01T00:00:00"}):
        answer = client.post(base + "/replay", json=body, headers=ADMIN)
        assert answer.status_code == 400, body
        assert "since" in answer.get_json()["error"]["message"]
    assert client.delete(base, headers=ADMIN).status_code == 204
    assert client.get(base, headers=ADMIN).status_code == 404
