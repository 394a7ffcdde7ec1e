"""POST /v1/hosts, GET and PATCH /v1/hosts/{host}: admin-only creation, token shown once,
validation that changes nothing, and policy changes that re-decide stored events."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from models import BusyBlock, CalendarEvent, Host
from models.registry import hash_api_token

from .conftest import ADMIN, bearer, seeded_hour, z


def test_admin_creates_a_host_and_its_token_works_once_shown(client, db) -> None:
    answer = client.post(
        "/v1/hosts",
        json={"name": "Ada", "timeZone": "Europe/Berlin", "busyPolicy": {"declinedBusy": True}},
        headers=ADMIN,
    )
    assert answer.status_code == 201
    body = answer.get_json()
    assert body["name"] == "Ada" and body["timeZone"] == "Europe/Berlin"
    assert body["busyPolicy"]["declinedBusy"] is True
    assert body["busyPolicy"]["tentativeBusy"] is True  # defaults filled in
    token = body["apiToken"]
    assert token.startswith("cs_") and len(token) > 30

    shown = client.get(f"/v1/hosts/{body['id']}", headers=bearer(token))
    assert shown.status_code == 200
    assert "apiToken" not in shown.get_json()
    assert shown.get_json()["id"] == body["id"]


def test_token_is_stored_hashed(client, session) -> None:
    body = client.post("/v1/hosts", json={"name": "Ada"}, headers=ADMIN).get_json()
    host = session.get(Host, body["id"])
    assert host.api_token_hash == hash_api_token(body["apiToken"])
    assert body["apiToken"] not in repr(
        session.execute(select(Host.__table__).where(Host.id == host.id)).one()
    )


def test_creating_a_host_needs_the_admin_token(client, hosts, snapshot) -> None:
    before = snapshot()
    missing = client.post("/v1/hosts", json={"name": "x"})
    assert missing.status_code == 401
    assert missing.get_json()["error"]["code"] == "unauthorized"
    assert "Bearer" in missing.headers["WWW-Authenticate"]
    wrong = client.post("/v1/hosts", json={"name": "x"}, headers=bearer("cs_nope"))
    assert wrong.status_code == 401
    host_token = client.post("/v1/hosts", json={"name": "x"}, headers=hosts.a.headers)
    assert host_token.status_code == 403
    assert host_token.get_json()["error"]["code"] == "forbidden"
    assert snapshot() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": 5}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "x", "timeZone": "Mars/Olympus"}, "timeZone"),
        ({"name": "x", "timeZone": 1}, "timeZone"),
        ({"name": "x", "busyPolicy": {"declineBusy": True}}, "busyPolicy"),
        ({"name": "x", "busyPolicy": {"declinedBusy": "yes"}}, "busyPolicy"),
        ({"name": "x", "busyPolicy": []}, "busyPolicy"),
        ({"name": "x", "colour": "red"}, "colour"),
        ({"name": "x", "time_zone": "UTC"}, "time_zone"),  # named as sent, not as timeZone
    ],
)
def test_create_validation(client, db, snapshot, body, field) -> None:
    before = snapshot()
    answer = client.post("/v1/hosts", json=body, headers=ADMIN)
    assert answer.status_code == 400, answer.get_json()
    error = answer.get_json()
    assert error["error"]["code"] == "invalid_field"
    assert error["field"] == field and error["error"]["message"].startswith(field)
    assert snapshot() == before


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"[1]", b'"x"', b"NaN", b'{"name": NaN}', b"\xff\xfe", b"[" * 50000]
)
def test_bad_json_is_400(client, db, snapshot, raw) -> None:
    before = snapshot()
    answer = client.post(
        "/v1/hosts", data=raw, headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert answer.status_code == 400
    assert answer.get_json()["error"]["code"] == "invalid_json"
    assert snapshot() == before


def test_patch_time_zone_and_name(client, hosts) -> None:
    answer = client.patch(
        f"/v1/hosts/{hosts.a.id}",
        json={"timeZone": "America/New_York", "name": "Alice B."},
        headers=hosts.a.headers,
    )
    assert answer.status_code == 200
    assert answer.get_json()["timeZone"] == "America/New_York"
    assert "redecided" not in answer.get_json()
    again = client.get(f"/v1/hosts/{hosts.a.id}", headers=ADMIN).get_json()
    assert again["name"] == "Alice B." and again["timeZone"] == "America/New_York"


@pytest.mark.parametrize(
    "body",
    [
        {"busyPolicy": {"declinedBusy": True, "typo": False}},
        {"busyPolicy": {"declinedBusy": 1}},
        {"busyPolicy": None},
        {"timeZone": "Not/AZone"},
        {"timezone": "UTC"},
        {"apiToken": "cs_mine"},
    ],
)
def test_patch_validation_changes_nothing(client, hosts, snapshot, body) -> None:
    before = snapshot()
    answer = client.patch(f"/v1/hosts/{hosts.a.id}", json=body, headers=hosts.a.headers)
    assert answer.status_code == 400
    assert answer.get_json()["error"]["code"] == "invalid_field"
    assert snapshot() == before


def _busy_window(client, host) -> list[dict]:
    start = seeded_hour()
    answer = client.get(
        f"/v1/hosts/{host.id}/busy",
        query_string={"timeMin": z(start), "timeMax": z(start + timedelta(hours=4))},
        headers=host.headers,
    )
    assert answer.status_code == 200
    return answer.get_json()["busy"]


def test_policy_change_redecides_stored_events(client, hosts, session) -> None:
    start = seeded_hour()
    assert [(b["start"], b["end"]) for b in _busy_window(client, hosts.a)] == [
        (z(start), z(start + timedelta(hours=1))),
        (z(start + timedelta(hours=2)), z(start + timedelta(hours=2, minutes=30))),
    ]
    answer = client.patch(
        f"/v1/hosts/{hosts.a.id}",
        json={"busyPolicy": {"declinedBusy": True}},
        headers=hosts.a.headers,
    )
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["busyPolicy"]["declinedBusy"] is True
    assert body["redecided"] == {"eventsChanged": 1, "blocksAdded": 1, "blocksRemoved": 0}
    # The declined hour now blocks: busy, declined and manual block touch, so one interval.
    assert [(b["start"], b["end"]) for b in _busy_window(client, hosts.a)] == [
        (z(start), z(start + timedelta(hours=2, minutes=30)))
    ]
    decision = session.scalar(
        select(CalendarEvent.decision).where(
            CalendarEvent.google_event_id == "declined-1",
            CalendarEvent.calendar_id == hosts.a.calendar_id,
        )
    )
    assert decision == "busy"
    # Host B is untouched.
    assert (
        session.scalar(
            select(BusyBlock.id).where(
                BusyBlock.calendar_id == hosts.b.calendar_id, BusyBlock.event_key == "declined-1"
            )
        )
        is None
    )

    # A later PATCH with another key keeps declinedBusy and can switch it back.
    back = client.patch(
        f"/v1/hosts/{hosts.a.id}",
        json={"busyPolicy": {"focusTimeBusy": False}},
        headers=ADMIN,
    ).get_json()
    assert (
        back["busyPolicy"]["declinedBusy"] is True and back["busyPolicy"]["focusTimeBusy"] is False
    )
    assert back["redecided"] == {"eventsChanged": 0, "blocksAdded": 0, "blocksRemoved": 0}
    off = client.patch(
        f"/v1/hosts/{hosts.a.id}", json={"busyPolicy": {"declinedBusy": False}}, headers=ADMIN
    ).get_json()
    assert off["redecided"] == {"eventsChanged": 1, "blocksAdded": 0, "blocksRemoved": 1}
    assert len(_busy_window(client, hosts.a)) == 2
