"""GET /v1/hosts/{host}/busy and POST /v1/freeBusy: merged intervals with sources,
freshness per calendar, strict mode, and window validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from models import SyncState

from .conftest import ADMIN, seeded_hour, z


def _window() -> dict[str, str]:
    start = seeded_hour() - timedelta(hours=1)
    return {"timeMin": z(start), "timeMax": z(start + timedelta(hours=5))}


def test_busy_merges_calendars_and_manual_blocks_with_sources(client, hosts) -> None:
    a = hosts.a
    answer = client.get(f"/v1/hosts/{a.id}/busy", query_string=_window(), headers=a.headers)
    assert answer.status_code == 200
    body = answer.get_json()
    start = seeded_hour()
    assert body["timeMin"] == _window()["timeMin"] and body["stale"] is False
    assert body["busy"] == [
        {
            "start": z(start),
            "end": z(start + timedelta(hours=1)),
            "sources": [{"type": "event", "calendarId": a.calendar_id, "eventId": "busy-1"}],
        },
        {
            "start": z(start + timedelta(hours=2)),
            "end": z(start + timedelta(hours=2, minutes=30)),
            "sources": [{"type": "manual", "blockId": a.block_id}],
        },
    ]
    [calendar] = body["calendars"]
    assert calendar["id"] == a.calendar_id and calendar["googleCalendarId"] == "alice@example.com"
    assert calendar["state"] == "ok" and calendar["stale"] is False
    assert calendar["lagSeconds"] == 0 and calendar["syncedAt"].endswith("Z")


def test_busy_is_clipped_to_the_window(client, hosts) -> None:
    start = seeded_hour()
    answer = client.get(
        f"/v1/hosts/{hosts.a.id}/busy",
        query_string={
            "timeMin": z(start + timedelta(minutes=30)),
            "timeMax": z(start + timedelta(minutes=45)),
        },
        headers=ADMIN,
    ).get_json()
    assert [(b["start"], b["end"]) for b in answer["busy"]] == [
        (z(start + timedelta(minutes=30)), z(start + timedelta(minutes=45)))
    ]


def _make_stale(session, calendar_id: int) -> None:
    state = session.get(SyncState, calendar_id)
    state.dirty_since = datetime.now(UTC) - timedelta(minutes=10)
    session.commit()


def test_stale_calendar_is_flagged_and_strict_answers_503(client, hosts, session) -> None:
    _make_stale(session, hosts.a.calendar_id)
    relaxed = client.get(
        f"/v1/hosts/{hosts.a.id}/busy", query_string=_window(), headers=hosts.a.headers
    ).get_json()
    assert relaxed["stale"] is True
    assert relaxed["calendars"][0]["state"] == "lagging"
    assert relaxed["calendars"][0]["lagSeconds"] >= 600
    assert relaxed["busy"]  # the data still comes, flagged

    strict = client.get(
        f"/v1/hosts/{hosts.a.id}/busy",
        query_string={**_window(), "strict": "true"},
        headers=hosts.a.headers,
    )
    assert strict.status_code == 503
    body = strict.get_json()
    assert body["error"]["code"] == "stale_calendars"
    assert str(hosts.a.calendar_id) in body["error"]["message"]
    assert [c["id"] for c in body["staleCalendars"]] == [hosts.a.calendar_id]
    assert strict.headers["Retry-After"]

    # Host B is fresh: strict mode answers normally.
    fresh = client.get(
        f"/v1/hosts/{hosts.b.id}/busy",
        query_string={**_window(), "strict": "true"},
        headers=hosts.b.headers,
    )
    assert fresh.status_code == 200 and fresh.get_json()["stale"] is False


def test_never_synced_calendar_is_stale(client, hosts, session) -> None:
    state = session.get(SyncState, hosts.a.calendar_id)
    state.last_success_at = None
    session.commit()
    body = client.get(f"/v1/hosts/{hosts.a.id}/busy", query_string=_window(), headers=ADMIN)
    calendar = body.get_json()["calendars"][0]
    assert calendar["stale"] is True and calendar["syncedAt"] is None
    assert calendar["lagSeconds"] is None


@pytest.mark.parametrize(
    ("params", "name", "words"),
    [
        ({"timeMax": "2030-01-01T00:00:00Z"}, "timeMin", "required"),
        ({"timeMin": "2030-01-01T00:00:00Z"}, "timeMax", "required"),
        (
            {"timeMin": "2030-01-01T00:00:00", "timeMax": "2030-01-02T00:00:00Z"},
            "timeMin",
            "offset",
        ),
        (
            {"timeMin": "2030-13-01T00:00:00Z", "timeMax": "2030-01-02T00:00:00Z"},
            "timeMin",
            "valid",
        ),
        (
            {"timeMin": "2030-01-02T00:00:00Z", "timeMax": "2030-01-01T00:00:00Z"},
            "timeMax",
            "later",
        ),
        (
            {"timeMin": "2030-01-01T00:00:00Z", "timeMax": "2031-01-01T00:00:00Z"},
            "timeMax",
            "92 days",
        ),
        (
            {"timeMin": "2030-01-01T00:00:00Z", "timeMax": "2030-01-02T00:00:00Z", "strict": "yes"},
            "strict",
            "true or false",
        ),
    ],
)
def test_window_validation(client, hosts, params, name, words) -> None:
    answer = client.get(f"/v1/hosts/{hosts.a.id}/busy", query_string=params, headers=ADMIN)
    assert answer.status_code == 400
    body = answer.get_json()
    assert body["error"]["code"] == "invalid_parameter" and body["parameter"] == name
    assert words in body["error"]["message"]


def test_max_window_follows_the_setting(settings, db, hosts) -> None:
    import dataclasses

    from webhook import create_app

    app = create_app(dataclasses.replace(settings, max_window_days=400))
    answer = app.test_client().get(
        f"/v1/hosts/{hosts.a.id}/busy",
        query_string={"timeMin": "2030-01-01T00:00:00Z", "timeMax": "2031-01-01T00:00:00Z"},
        headers=ADMIN,
    )
    assert answer.status_code == 200


def _free_busy(client, headers, *ids: str, **extra) -> dict:
    start = seeded_hour() - timedelta(hours=1)
    body = {
        "timeMin": z(start),
        "timeMax": z(start + timedelta(hours=5)),
        "items": [{"id": i} for i in ids],
        **extra,
    }
    answer = client.post("/v1/freeBusy", json=body, headers=headers)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def test_free_busy_speaks_googles_shape(client, hosts) -> None:
    a = hosts.a
    body = _free_busy(
        client,
        a.headers,
        "alice@example.com",
        str(a.calendar_id),
        "nobody@example.com",
        "bob@example.com",
        str(hosts.b.calendar_id),
        timeZone="Europe/Berlin",
    )
    assert body["kind"] == "calendar#freeBusy"
    start = seeded_hour()
    expected_busy = [{"start": z(start), "end": z(start + timedelta(hours=1))}]
    for key in ("alice@example.com", str(a.calendar_id)):
        entry = body["calendars"][key]
        assert entry["busy"] == expected_busy  # manual blocks are host-level, not a calendar's
        assert entry["state"] == "ok" and entry["stale"] is False and "errors" not in entry
        assert entry["calendarId"] == a.calendar_id
    # Unknown ids and another host's calendars look the same: notFound.
    for key in ("nobody@example.com", "bob@example.com", str(hosts.b.calendar_id)):
        assert body["calendars"][key] == {
            "errors": [{"domain": "global", "reason": "notFound"}],
            "busy": [],
        }
    assert body["stale"] is False


def test_free_busy_flags_untrustworthy_calendars(client, hosts, session) -> None:
    state = session.get(SyncState, hosts.a.calendar_id)
    state.last_success_at = None
    session.commit()
    entry = _free_busy(client, hosts.a.headers, "alice@example.com")["calendars"][
        "alice@example.com"
    ]
    assert entry["errors"] == [{"domain": "calsync", "reason": "notSyncedYet"}]
    assert entry["stale"] is True


def test_admin_free_busy_sees_every_calendar(client, hosts) -> None:
    body = _free_busy(client, ADMIN, "alice@example.com", "bob@example.com")
    assert all(
        "errors" not in body["calendars"][k] for k in ("alice@example.com", "bob@example.com")
    )


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"timeMax": "2030-01-02T00:00:00Z"}, "timeMin"),
        (
            {"timeMin": "2030-01-01T00:00:00Z", "timeMax": "2030-01-02T00:00:00Z", "items": {}},
            "items",
        ),
        (
            {
                "timeMin": "2030-01-01T00:00:00Z",
                "timeMax": "2030-01-02T00:00:00Z",
                "items": [{"id": 5}],
            },
            "id",
        ),
        (
            {"timeMin": "2030-01-01T00:00:00Z", "timeMax": "2030-01-02T00:00:00Z", "items": ["x"]},
            "items[0]",
        ),
        (
            {
                "timeMin": "2030-01-01T00:00:00Z",
                "timeMax": "2030-01-02T00:00:00Z",
                "items": [{"id": "x"}] * 51,
            },
            "at most 50",
        ),
        (
            {
                "timeMin": "2030-01-01T00:00:00Z",
                "timeMax": "2030-01-02T00:00:00Z",
                "timeZone": "Moon/Base",
            },
            "timeZone",
        ),
        (
            {
                "timeMin": "2030-01-01T00:00:00Z",
                "timeMax": "2030-01-02T00:00:00Z",
                "groupExpansionMax": "5",
            },
            "groupExpansionMax",
        ),
        (
            {"timeMin": "2030-01-01T00:00:00Z", "timeMax": "2030-01-02T00:00:00Z", "extra": 1},
            "extra",
        ),
        ({"timeMin": "2030-01-02T00:00:00Z", "timeMax": "2030-01-01T00:00:00Z"}, "later"),
    ],
)
def test_free_busy_validation(client, hosts, body, words) -> None:
    answer = client.post("/v1/freeBusy", json=body, headers=hosts.a.headers)
    assert answer.status_code == 400
    assert words in answer.get_json()["error"]["message"]


def test_free_busy_needs_a_token(client, hosts) -> None:
    answer = client.post("/v1/freeBusy", json={"timeMin": "x", "timeMax": "y"})
    assert answer.status_code == 401
