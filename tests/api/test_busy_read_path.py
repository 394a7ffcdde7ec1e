"""The busy read path's cost does not grow with a host's calendars (a fixed number of
statements per request), it leaves pooled connections as it found them, and freeBusy ids
that cannot name a calendar are answered `notFound`, never a database error."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import event, func, select

from models import BusyBlock, Host
from models.db import get_engine, session_factory
from models.registry import create_host
from tests.factories import make_account, make_calendar, make_channel

from .conftest import ADMIN, bearer, z


@contextmanager
def statements(url: str) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        seen.append(statement)

    engine = get_engine(url)
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _host_with_calendars(session, name: str, count: int) -> tuple[int, str, list[str]]:
    host, token = create_host(session, name)
    account = make_account(session, host)
    now = datetime.now(UTC)
    google_ids = []
    for k in range(count):
        calendar = make_calendar(session, host, account, google_calendar_id=f"{name}{k}@x.test")
        make_channel(session, calendar, expiration=now + timedelta(days=5))
        session.add(
            BusyBlock(
                calendar_id=calendar.id,
                event_key=f"e{k}",
                start=now + timedelta(hours=k + 1),
                end=now + timedelta(hours=k + 1, minutes=30),
            )
        )
        google_ids.append(calendar.google_calendar_id)
    session.commit()
    return host.id, token, google_ids


def _window() -> dict[str, str]:
    start = datetime.now(UTC).replace(microsecond=0)
    return {"timeMin": z(start), "timeMax": z(start + timedelta(days=1))}


def test_host_busy_statements_do_not_grow_with_calendars(client, session, settings) -> None:
    counts = []
    for name, calendars in (("one", 1), ("five", 5)):
        host_id, token, _ = _host_with_calendars(session, name, calendars)
        with statements(settings.database_url) as seen:
            answer = client.get(
                f"/v1/hosts/{host_id}/busy", query_string=_window(), headers=bearer(token)
            )
        assert answer.status_code == 200
        assert len(answer.get_json()["busy"]) == calendars
        assert len(answer.get_json()["calendars"]) == calendars
        counts.append(len(seen))
    # token -> host, freshness of every calendar, blocks of every calendar + manual blocks
    assert counts == [3, 3]


def test_free_busy_statements_do_not_grow_with_calendars(client, session, settings) -> None:
    counts = []
    for name, calendars in (("one", 1), ("five", 5)):
        _, token, google_ids = _host_with_calendars(session, name, calendars)
        body = {**_window(), "items": [{"id": g} for g in google_ids]}
        with statements(settings.database_url) as seen:
            answer = client.post("/v1/freeBusy", json=body, headers=bearer(token))
        assert answer.status_code == 200
        assert all(len(c["busy"]) == 1 for c in answer.get_json()["calendars"].values())
        counts.append(len(seen))
    assert counts[0] == counts[1]


def test_busy_reads_leave_pooled_connections_transactional(client, session, settings) -> None:
    host_id, token, _ = _host_with_calendars(session, "pooled", 2)
    for _ in range(3):
        answer = client.get(
            f"/v1/hosts/{host_id}/busy", query_string=_window(), headers=bearer(token)
        )
        assert answer.status_code == 200
    # A later unit of work on the same pool still rolls back.
    other = session_factory(settings.database_url)()
    try:
        other.add(Host(name="rolled back", time_zone="UTC", busy_policy={}))
        other.flush()
        other.rollback()
    finally:
        other.close()
    check = session_factory(settings.database_url)()
    try:
        assert check.scalar(select(func.count()).where(Host.name == "rolled back")) == 0
    finally:
        check.close()


def test_free_busy_ids_that_cannot_name_a_calendar_are_not_found(client, hosts) -> None:
    requested = ["99999999999", "2147483648", "0" + str(hosts.a.calendar_id), "٣"]
    body = {**_window(), "items": [{"id": i} for i in requested]}
    answer = client.post("/v1/freeBusy", json=body, headers=ADMIN)
    assert answer.status_code == 200
    calendars = answer.get_json()["calendars"]
    assert all(calendars[i]["errors"][0]["reason"] == "notFound" for i in requested)
    by_number = {**body, "items": [{"id": str(hosts.a.calendar_id)}]}
    found = client.post("/v1/freeBusy", json=by_number, headers=ADMIN).get_json()
    assert found["calendars"][str(hosts.a.calendar_id)]["calendarId"] == hosts.a.calendar_id
