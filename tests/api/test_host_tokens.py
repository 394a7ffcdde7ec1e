"""Issue 14: token scopes, rotation and host deletion.

- `/v1` takes a token only from the Authorization header (never `?token=`).
- `POST /v1/hosts/{host}/token` rotates the API token: the old one stops at once.
- `POST /v1/hosts/{host}/feed-token` issues the feed token, the one token a URL may carry.
- `DELETE /v1/hosts/{host}` leaves nothing of the host in any table and stops its channels
  after the commit.
- Answers carrying a token are `Cache-Control: no-store`.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from models import Base, Host, SyncRun, fleet_counts
from models.alerts import AlertIncident
from models.base import utcnow
from models.db import get_engine, session_factory
from models.registry import hash_api_token
from tests.conftest import TEST_ADMIN_TOKEN

from .conftest import ADMIN, bearer


@pytest.mark.parametrize("who", ["admin", "host"])
def test_url_tokens_are_refused_by_the_api(client, hosts, who) -> None:
    """Item 1: before, `?token=` opened every endpoint, admin writes included."""
    token = TEST_ADMIN_TOKEN if who == "admin" else hosts.a.token
    answer = client.get(f"/v1/hosts/{hosts.a.id}?token={token}")
    assert answer.status_code == 401
    created = client.post(f"/v1/hosts?token={TEST_ADMIN_TOKEN}", json={"name": "Mallory"})
    assert created.status_code == 401
    assert client.get(f"/v1/hosts/{hosts.a.id}", headers=bearer(token)).status_code == 200


def test_a_feed_token_reaches_no_api_endpoint(client, hosts) -> None:
    feed = client.post(f"/v1/hosts/{hosts.a.id}/feed-token", headers=hosts.a.headers).get_json()
    token = feed["feedToken"]
    assert client.get(f"/v1/hosts/{hosts.a.id}", headers=bearer(token)).status_code == 401
    busy = f"/v1/hosts/{hosts.a.id}/busy?timeMin=2030-01-01T00:00:00Z&timeMax=2030-01-02T00:00:00Z"
    assert client.get(busy, headers=bearer(token)).status_code == 401


@pytest.mark.parametrize("who", ["admin", "host"])
def test_rotating_the_api_token_stops_the_old_one_at_once(client, hosts, session, who) -> None:
    headers = ADMIN if who == "admin" else hosts.a.headers
    answer = client.post(f"/v1/hosts/{hosts.a.id}/token", headers=headers)
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"
    new = answer.get_json()["apiToken"]
    assert new.startswith("cs_") and new != hosts.a.token
    assert answer.get_json()["id"] == hosts.a.id
    assert client.get(f"/v1/hosts/{hosts.a.id}", headers=hosts.a.headers).status_code == 401
    assert client.get(f"/v1/hosts/{hosts.a.id}", headers=bearer(new)).status_code == 200
    session.expire_all()
    assert session.get(Host, hosts.a.id).api_token_hash == hash_api_token(new)
    # Host B is untouched, and may not rotate A's token (A is absent to it).
    assert client.get(f"/v1/hosts/{hosts.b.id}", headers=hosts.b.headers).status_code == 200
    assert client.post(f"/v1/hosts/{hosts.a.id}/token", headers=hosts.b.headers).status_code == 404


def test_feed_token_is_shown_once_with_the_status_link(client, hosts, session, settings) -> None:
    answer = client.post(f"/v1/hosts/{hosts.a.id}/feed-token", headers=hosts.a.headers)
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"
    body = answer.get_json()
    token = body["feedToken"]
    assert token.startswith("csf_")
    link = urlsplit(body["statusPageUrl"])
    assert body["statusPageUrl"].startswith(settings.public_url.rstrip("/") + "/status/")
    assert link.path == f"/status/{hosts.a.id}" and parse_qs(link.query) == {"token": [token]}
    session.expire_all()
    assert session.get(Host, hosts.a.id).feed_token_hash == hash_api_token(token)
    assert client.get(f"{link.path}?{link.query}").status_code == 200
    again = client.post(f"/v1/hosts/{hosts.a.id}/feed-token", headers=ADMIN).get_json()
    assert client.get(f"{link.path}?{link.query}").status_code == 401  # rotated: old one stops
    assert client.get(f"/status/{hosts.a.id}?token={again['feedToken']}").status_code == 200
    other = client.post(f"/v1/hosts/{hosts.a.id}/feed-token", headers=hosts.b.headers)
    assert other.status_code == 404


def test_host_creation_answer_is_not_cached(client, db) -> None:
    answer = client.post("/v1/hosts", json={"name": "Ada"}, headers=ADMIN)
    assert answer.status_code == 201 and answer.headers["Cache-Control"] == "no-store"


def _rows(settings) -> dict[str, int]:
    with get_engine(settings.database_url).connect() as conn:
        return {
            table.name: conn.scalar(select(func.count()).select_from(table))
            for table in Base.metadata.sorted_tables
            if table.name != "fleet_counts"  # change rows: the counts are compared below
        }


def test_deleting_a_host_leaves_nothing_of_it(client, hosts, session, settings, tasks) -> None:
    """Item 2: every table is counted before and after; only host B's rows remain, and the
    channels are stopped after the commit."""
    session.add(
        SyncRun(
            calendar_id=hosts.a.calendar_id,
            kind="full",
            started_at=utcnow(),
            finished_at=utcnow(),
            outcome="ok",
        )
    )
    key = f"calsync/calendar-failing/{hosts.a.calendar_id}"
    now = utcnow()
    session.add(
        AlertIncident(
            key=key, rule="r", severity="critical", summary="s", opened_at=now, last_seen_at=now
        )
    )
    client.post(f"/v1/hosts/{hosts.a.id}/feed-token", headers=ADMIN)
    session.commit()
    before = _rows(settings)
    assert before["hosts"] == 2 and before["sync_runs"] == 1

    assert client.delete(f"/v1/hosts/{hosts.a.id}", headers=hosts.a.headers).status_code == 403
    assert client.delete(f"/v1/hosts/{hosts.a.id}", headers=ADMIN).status_code == 204

    after = _rows(settings)
    # What host B alone holds: one of each, as seeded (no runs, no alerts).
    expected = {name: 0 for name in before}
    expected.update(
        hosts=1,
        google_accounts=1,
        calendars=1,
        sync_states=1,
        channels=1,
        calendar_events=2,
        busy_blocks=1,
        manual_blocks=1,
    )
    assert after == expected, (before, after)
    with session_factory(settings.database_url)() as fresh:
        assert fleet_counts.current(fresh) == fleet_counts.FleetTotals(1, 1)
    assert [c[0] for c in tasks.calls] == ["stop"]
    assert len(tasks.calls[0][2]) == 1
    # Gone for every token; another delete is a 404; host B still works.
    assert client.get(f"/v1/hosts/{hosts.a.id}", headers=ADMIN).status_code == 404
    assert client.get(f"/v1/hosts/{hosts.a.id}", headers=hosts.a.headers).status_code == 401
    assert client.delete(f"/v1/hosts/{hosts.a.id}", headers=ADMIN).status_code == 404
    assert client.get(f"/v1/hosts/{hosts.b.id}", headers=hosts.b.headers).status_code == 200


def test_a_stop_is_enqueued_only_after_the_deletion_commits(
    client, hosts, settings, monkeypatch
) -> None:
    from worker import enqueue as task_queue

    seen: list[int] = []

    def stop(account_id, channels, **_sealed) -> None:
        seen.append(_rows(settings)["hosts"])  # what another process sees at that moment

    monkeypatch.setattr(task_queue, "enqueue_stop_channels", stop)
    assert client.delete(f"/v1/hosts/{hosts.a.id}", headers=ADMIN).status_code == 204
    assert seen == [1]
