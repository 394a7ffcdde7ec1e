"""The outbox is written in the transaction of the change: busy writers (a sync, a policy
change, manual blocks, a detached calendar, a deleted host) add a busy.changed row with the
ranges whose answer changed, none when nothing changed, and a rollback leaves nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import OutboxEvent
from models.busy_block_writer import DecidedEvent, Horizon, apply_events, redecide_host_events
from models.db import session_scope
from models.manual_blocks import add_blocks
from models.outbound_endpoints import create_endpoint
from models.registry import delete_host, detach_calendar
from rules.busy_rules import BusyPolicy, decide, parse_event
from tests.factories import make_account, make_calendar, make_host

from .conftest import Driver

NOW = datetime.now(UTC).replace(microsecond=0)
HORIZON = Horizon(NOW - timedelta(days=1), NOW + timedelta(days=365))
DAY = (NOW + timedelta(days=3)).replace(hour=0, minute=0, second=0)


def z(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def item(event_id: str, start_hour: float, hours: float = 1, **fields) -> DecidedEvent:
    start = DAY + timedelta(hours=start_hour)
    facts = parse_event(
        {
            "id": event_id,
            "summary": "secret board meeting",
            "updated": NOW.isoformat(),
            "start": {"dateTime": start.isoformat()},
            "end": {"dateTime": (start + timedelta(hours=hours)).isoformat()},
            **fields,
        },
        "UTC",
    )
    return DecidedEvent(facts, decide(facts))


def rows(session: Session) -> list[OutboxEvent]:
    return list(session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)))


def changed(row: OutboxEvent) -> list[tuple[str, str]]:
    return [(c["start"], c["end"]) for c in row.payload["changed"]]


def hours(start: float, end: float) -> tuple[str, str]:
    return z(DAY + timedelta(hours=start)), z(DAY + timedelta(hours=end))


def listening(session: Session, host_ids: list[int] | None = None) -> None:
    """An endpoint receiving these hosts (all by default): only then are changes recorded."""
    create_endpoint(
        session,
        url="https://receiver.example/hooks",
        host_ids=host_ids,
        description="test",
        created_by_host=None,
    )


def test_sync_writes_changed_ranges_and_nothing_for_free_events(
    session: Session, driver: Driver
) -> None:
    host = make_host(session)
    calendar = make_calendar(session, host, make_account(session, host))
    other = make_calendar(session, host, make_account(session, host))
    listening(session)

    def apply(calendar_id: int, items: list[DecidedEvent], full: bool = False) -> None:
        apply_events(
            session, calendar_id, items, horizon=HORIZON, now=NOW, replace_all=full, cause="sync"
        )

    apply(other.id, [item("o", 13, 2)], full=True)  # the other calendar: busy 13-15
    apply(calendar.id, [item("a", 10)], full=True)  # 10-11
    apply(calendar.id, [item("a", 14)])  # moved into 13-15 busy anyway: only 10-11 freed
    # A Free event, and the same event again: nothing changed, no row.
    apply(calendar.id, [item("f", 8, transparency="transparent"), item("a", 14)])
    apply(calendar.id, [item("a", 16)])  # moved out of 13-15: 16-17 became busy
    apply(calendar.id, [item("a", 16, status="cancelled")])  # cancelled: 16-17 free again
    session.commit()
    written = rows(session)
    assert [changed(r) for r in written] == [
        [hours(13, 15)],
        [hours(10, 11)],
        [hours(10, 11)],
        [hours(16, 17)],
        [hours(16, 17)],
    ]
    assert {(r.type, r.host_id, r.cause) for r in written} == {("busy.changed", host.id, "sync")}
    assert [r.calendar_id for r in written] == [other.id] + [calendar.id] * 4
    # Never an event's title: the outbox holds times and ids only.
    assert all("secret" not in str(r.payload) for r in written)
    # Each commit's rows ask for a fan-out of the host once committed.
    assert driver.kinds() == [("fan_out", host.id)]


def test_a_rolled_back_change_leaves_no_row_and_sends_nothing(
    session: Session, driver: Driver
) -> None:
    host = make_host(session)
    calendar = make_calendar(session, host, make_account(session, host))
    listening(session, [host.id])
    session.commit()
    apply_events(session, calendar.id, [item("a", 10)], horizon=HORIZON, now=NOW, replace_all=True)
    assert len(rows(session)) == 1  # inside the transaction
    session.rollback()
    assert rows(session) == []
    assert driver.messages == []


def test_policy_change_and_detach_write_their_changes(session: Session, driver: Driver) -> None:
    host = make_host(session)
    host_id = host.id
    calendar = make_calendar(session, host, make_account(session, host))
    listening(session, [host_id])
    declined = item(
        "d", 9, attendees=[{"email": "h@example.com", "self": True, "responseStatus": "declined"}]
    )
    apply_events(
        session, calendar.id, [item("a", 12), declined], horizon=HORIZON, now=NOW, replace_all=True
    )
    session.commit()
    before = len(rows(session))
    # The host now counts declined invitations as busy: 9-10 becomes busy.
    redecide_host_events(session, host.id, BusyPolicy(declined_busy=True), NOW)
    session.commit()
    policy_row = rows(session)[before]
    assert (policy_row.cause, changed(policy_row)) == ("policy_changed", [hours(9, 10)])

    assert detach_calendar(session, calendar.id) is not None
    session.commit()
    detached = rows(session)[-1]
    assert (detached.cause, changed(detached)) == (
        "calendar_detached",
        [hours(9, 10), hours(12, 13)],
    )

    second = make_calendar(session, host, make_account(session, host))
    apply_events(session, second.id, [item("b", 20)], horizon=HORIZON, now=NOW, replace_all=True)
    session.commit()
    assert rows(session)
    # Deleting the host keeps nothing of it, its outbound events included.
    with session_scope() as other:
        assert delete_host(other, host_id) is not None
    session.expire_all()
    assert rows(session) == []


def test_nothing_is_recorded_for_a_host_no_endpoint_receives(
    session: Session, driver: Driver
) -> None:
    host = make_host(session)
    calendar = make_calendar(session, host, make_account(session, host))
    other = make_host(session)
    session.commit()
    # No endpoint at all: a sync and a manual block write busy time and nothing else.
    apply_events(session, calendar.id, [item("a", 10)], horizon=HORIZON, now=NOW, replace_all=True)
    add_blocks(session, host.id, [(DAY + timedelta(hours=15), DAY + timedelta(hours=16))], "x")
    session.commit()
    assert rows(session) == [] and driver.messages == []
    # An endpoint of another host does not announce this one; one for this host does.
    listening(session, [other.id])
    session.commit()
    apply_events(session, calendar.id, [item("a", 11)], horizon=HORIZON, now=NOW, replace_all=False)
    session.commit()
    assert rows(session) == []
    listening(session, [host.id])
    session.commit()
    apply_events(session, calendar.id, [item("a", 12)], horizon=HORIZON, now=NOW, replace_all=False)
    session.commit()
    assert [changed(r) for r in rows(session)] == [[hours(11, 13)]]


def test_sent_events_are_dropped_after_a_week(session: Session, driver: Driver) -> None:
    from models import WebhookDelivery, WebhookEndpoint
    from models.outbound_deliveries import RETENTION, prune

    host = make_host(session)
    old, fresh = NOW - RETENTION - timedelta(hours=1), NOW
    endpoint = WebhookEndpoint(id="we_x", url="http://127.0.0.1/", secret_encrypted=b"x")
    session.add(endpoint)
    events = [
        OutboxEvent(
            type="busy.changed",
            host_id=host.id,
            cause="sync",
            payload={},
            committed_at=at,
            fanned_out_at=at,
        )
        for at in (old, old, fresh)
    ]
    session.add_all(events)
    session.flush()
    session.add_all(
        [
            WebhookDelivery(endpoint_id="we_x", event_id=events[0].id, status="delivered"),
            WebhookDelivery(endpoint_id="we_x", event_id=events[1].id, status="pending"),
            WebhookDelivery(endpoint_id="we_x", event_id=events[2].id, status="delivered"),
        ]
    )
    session.commit()
    assert prune(session, NOW) == 1
    session.commit()
    assert [r.id for r in rows(session)] == [events[1].id, events[2].id]  # pending one kept


def test_key_rotation_reencrypts_webhook_secrets(session: Session, settings) -> None:
    import dataclasses
    import secrets

    from core.settings import configure
    from models import WebhookEndpoint
    from models.credentials_box import rotate_credentials
    from models.db import session_factory
    from models.outbound_endpoints import create_endpoint, rotate_secret, signing_secrets

    endpoint, first = create_endpoint(
        session, url="http://127.0.0.1/", host_ids=None, description="", created_by_host=None
    )
    second = rotate_secret(session, endpoint, NOW)
    session.commit()
    old_key, new_key = settings.secret_key, secrets.token_urlsafe(32)
    configure(dataclasses.replace(settings, secret_key=new_key, secret_key_previous=old_key))
    counts = rotate_credentials(session_factory(settings.database_url))
    assert (counts.reencrypted, counts.undecryptable) == (2, 0)
    configure(dataclasses.replace(settings, secret_key=new_key))  # the old key dropped
    session.expire_all()
    stored = session.get(WebhookEndpoint, endpoint.id)
    assert stored is not None
    assert signing_secrets(stored, NOW) == [second, first]
    configure(settings)


def test_a_fan_out_of_many_hosts_goes_in_several_transactions(
    session: Session, driver: Driver
) -> None:
    from models import WebhookDelivery
    from worker import outbound_tasks

    hosts = [make_host(session) for _ in range(25)]  # more than one chunk of hosts
    listening(session)
    for host in hosts:
        calendar = make_calendar(session, host, make_account(session, host))
        apply_events(
            session, calendar.id, [item("a", 10)], horizon=HORIZON, now=NOW, replace_all=True
        )
    session.commit()
    outbound_tasks.outbound_sweep()
    session.expire_all()
    assert all(row.fanned_out_at is not None for row in rows(session))
    delivered_hosts = set(session.scalars(select(WebhookDelivery.host_id)))
    assert delivered_hosts == {host.id for host in hosts}
