"""GET /v1/hosts/{host}/explain: every item around an instant with its reason in words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from models import SyncState
from rules.busy_rules import EXPLANATIONS, Reason

from .conftest import ADMIN, seeded_hour, z


def _explain(client, host, at: datetime, **params) -> dict:
    answer = client.get(
        f"/v1/hosts/{host.id}/explain", query_string={"at": z(at), **params}, headers=host.headers
    )
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def test_busy_instant_lists_the_event(client, hosts) -> None:
    at = seeded_hour() + timedelta(minutes=30)
    body = _explain(client, hosts.a, at, marginMinutes=0)
    assert body["busy"] is True
    assert body["summary"].startswith("Not bookable")
    assert [(i["eventId"], i["reason"], i["coversAt"]) for i in body["items"]] == [
        ("busy-1", "busy", True)
    ]
    assert body["items"][0]["explanation"] == EXPLANATIONS[Reason.BUSY]
    assert body["calendars"][0]["coverage"] == "synced"


def test_declined_event_says_why_the_slot_is_bookable(client, hosts) -> None:
    at = seeded_hour() + timedelta(hours=1, minutes=30)
    body = _explain(client, hosts.a, at)  # default margin 15 minutes
    assert body["busy"] is False
    assert body["summary"].startswith("Bookable")
    declined = [i for i in body["items"] if i.get("eventId") == "declined-1"]
    assert declined and declined[0]["reason"] == "declined" and declined[0]["busy"] is False
    assert "declined" in declined[0]["explanation"]
    assert declined[0]["summary"] == "declined-1 meeting"


def test_margin_brings_in_neighbours_and_manual_blocks(client, hosts) -> None:
    at = seeded_hour() + timedelta(hours=2)  # the start of the manual block and end of declined
    body = _explain(client, hosts.a, at, marginMinutes=90)
    kinds = [(i["type"], i.get("eventId") or i.get("blockId")) for i in body["items"]]
    assert kinds == [("event", "busy-1"), ("event", "declined-1"), ("manual", hosts.a.block_id)]
    manual = body["items"][-1]
    assert manual["busy"] and manual["coversAt"] and "dentist" in manual["explanation"]
    assert body["busy"] is True


def test_outside_horizon_and_not_synced(client, hosts, session) -> None:
    far = datetime.now(UTC) + timedelta(days=400)
    body = _explain(client, hosts.a, far)
    assert body["calendars"][0]["coverage"] == "outside_horizon"
    assert "outside_horizon" in body["summary"]

    state = session.get(SyncState, hosts.a.calendar_id)
    state.last_success_at = None
    session.commit()
    body = _explain(client, hosts.a, seeded_hour() + timedelta(hours=1, minutes=30))
    assert body["calendars"][0]["coverage"] == "not_synced_yet"
    assert body["calendars"][0]["stale"] is True
    assert "not_synced_yet" in body["summary"]


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({}, "at"),
        ({"at": "2030-01-01T10:00:00"}, "at"),
        ({"at": "soon"}, "at"),
        ({"at": "2030-01-01T10:00:00Z", "marginMinutes": "-1"}, "marginMinutes"),
        ({"at": "2030-01-01T10:00:00Z", "marginMinutes": "1441"}, "marginMinutes"),
        ({"at": "2030-01-01T10:00:00Z", "marginMinutes": "9" * 5000}, "marginMinutes"),
        ({"at": "2030-01-01T10:00:00Z", "marginMinutes": "1.5"}, "marginMinutes"),
    ],
)
def test_explain_validation(client, hosts, params, name) -> None:
    answer = client.get(f"/v1/hosts/{hosts.a.id}/explain", query_string=params, headers=ADMIN)
    assert answer.status_code == 400
    assert answer.get_json()["parameter"] == name
