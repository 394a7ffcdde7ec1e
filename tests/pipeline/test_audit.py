"""The audit against the emulator over real HTTP: a silent divergence is found, named, healed
by a full resync and the next audit matches; a divergence that survives the resync is
persistent and shown; errors and changes in flight never count as a mismatch."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from models.audits import Audit, audits_for_host
from models.db import session_scope
from models.sync_status import calendar_status
from rules.busy_rules import Reason
from tests.support.http_server import serving
from worker import audit, google_client, rate_limit, sync_engine
from worker.alert_notifier import run_cycle
from worker.sync_engine import sync_calendar

from .conftest import Attached, attach

BERLIN = ZoneInfo("Europe/Berlin")


def at(days: int, hour: int) -> datetime:
    day = datetime.now(BERLIN).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, tzinfo=BERLIN)


def timed(days: int, start: int, end: int, **fields: Any) -> dict[str, Any]:
    return {
        "start": {"dateTime": at(days, start).isoformat()},
        "end": {"dateTime": at(days, end).isoformat()},
        **fields,
    }


def z(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def audits(calendar_id: int) -> list[Audit]:
    with session_scope() as session:
        rows = session.scalars(
            select(Audit).where(Audit.calendar_id == calendar_id).order_by(Audit.id)
        ).all()
        session.expunge_all()
        return list(rows)


@pytest.fixture
def synced(attached: Attached, emulator: Any) -> Attached:
    control = emulator.control
    control.insert_event(attached.google_calendar_id, timed(1, 9, 10))
    control.insert_event(attached.google_calendar_id, timed(2, 9, 10, transparency="transparent"))
    assert sync_calendar(attached.calendar_id, force=True).status == "done"
    return attached


def test_matching_calendar_records_a_matched_audit(synced: Attached) -> None:
    [report] = audit.audit_calendars([synced.calendar_id])
    assert report.outcome == "matched" and report.differences == []
    [row] = audits(synced.calendar_id)
    assert row.matched and row.outcome == "matched" and row.differences == []


def test_silent_divergence_is_found_named_healed_and_the_next_audit_matches(
    synced: Attached, emulator: Any
) -> None:
    emulator.control.insert_event(
        synced.google_calendar_id, timed(3, 14, 15, summary="private"), silent=True
    )
    [report] = audit.audit_calendars([synced.calendar_id])
    assert report.outcome == "matched" and report.healed
    first, second = audits(synced.calendar_id)
    assert (first.matched, first.outcome) == (False, "mismatch")
    assert first.differences == [{"start": z(at(3, 14)), "end": z(at(3, 15))}]
    assert first.differing_seconds == 3600
    assert "private" not in str(first.differences)
    assert second.matched
    [again] = audit.audit_calendars([synced.calendar_id])
    assert again.outcome == "matched" and not again.healed
    with session_scope() as session:
        status = calendar_status(session, synced.calendar_id, datetime.now(UTC))
    assert status is not None
    assert status["lastAudit"]["matched"] is True and status["differsFromGoogle"] is False


@pytest.fixture
def alert_receiver(google_settings: Any) -> Iterator[tuple[Any, list[dict[str, Any]]]]:
    """A Slack-style receiver over real HTTP, and settings that send alerts to it."""
    bodies: list[dict[str, Any]] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        bodies.append(json.loads(environ["wsgi.input"].read(length)))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    with serving(app) as url:
        yield dataclasses.replace(google_settings, alert_webhook_url=url + "/hook"), bodies


def test_a_mismatch_surviving_the_full_resync_is_persistent_until_an_audit_matches(
    synced: Attached,
    emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    alert_receiver: tuple[Any, list[dict[str, Any]]],
) -> None:
    # A busy-rule bug: the engine drops one event that Google counts as busy.
    real_decide = sync_engine.decide

    def buggy(facts: Any, policy: Any = None) -> Reason:
        if facts.summary == "bug":
            return Reason.FREE
        return real_decide(facts, policy) if policy is not None else real_decide(facts)

    monkeypatch.setattr(sync_engine, "decide", buggy)
    emulator.control.insert_event(synced.google_calendar_id, timed(4, 8, 12, summary="bug"))
    assert sync_calendar(synced.calendar_id, force=True).status == "done"
    [report] = audit.audit_calendars([synced.calendar_id])
    assert report.outcome == "persistent"
    assert report.differences == [{"start": z(at(4, 8)), "end": z(at(4, 12))}]
    with session_scope() as session:
        status = calendar_status(session, synced.calendar_id, datetime.now(UTC))
    assert status is not None and status["differsFromGoogle"] is True
    assert status["lastAudit"]["differences"] == report.differences
    assert [row.outcome for row in audits(synced.calendar_id)] == ["mismatch", "persistent"]
    from models.audits import audit_gauges

    with session_scope() as session:
        assert audit_gauges(session, datetime.now(UTC))[1] == 1

    # The built-in notifier alerts once, naming the calendar and the UTC range, no title.
    alert_settings, bodies = alert_receiver
    key = f"calsync/differs-from-google/{synced.calendar_id}"
    assert key in run_cycle(alert_settings).firing
    [trigger] = bodies
    assert f"calendar {synced.calendar_id} of host {synced.host_id} differs" in trigger["text"]
    assert f"{z(at(4, 8))}..{z(at(4, 12))}" in trigger["text"]
    assert "bug" not in trigger["text"]
    assert run_cycle(alert_settings).sent == [] and len(bodies) == 1  # once per incident

    monkeypatch.setattr(sync_engine, "decide", real_decide)
    [fixed] = audit.audit_calendars([synced.calendar_id])
    assert fixed.outcome == "matched"  # healed by the full resync after the rule was fixed
    with session_scope() as session:
        status = calendar_status(session, synced.calendar_id, datetime.now(UTC))
    assert status is not None and status["differsFromGoogle"] is False
    assert run_cycle(alert_settings).sent == [("resolve", key)]
    assert bodies[-1]["text"].startswith(":white_check_mark: RESOLVED")

    # The host's log reads every audit of its calendars since a moment, newest first.
    with session_scope() as session:
        logged = audits_for_host(session, synced.host_id, datetime.now(UTC) - timedelta(hours=1))
        assert [row.outcome for row in logged][:3] == ["matched", "mismatch", "persistent"]
        assert (
            audits_for_host(session, synced.host_id + 999, datetime.min.replace(tzinfo=UTC)) == []
        )


def methods(emulator: Any, since: int) -> list[str]:
    return [entry["methodId"] for entry in emulator.control.requests(since=since)]


def test_a_matching_audit_costs_one_freebusy_request_and_no_listing(
    synced: Attached, emulator: Any
) -> None:
    since = len(emulator.control.requests())
    [report] = audit.audit_calendars([synced.calendar_id])
    assert report.outcome == "matched"
    assert methods(emulator, since) == ["calendar.freebusy.query"]


def test_a_change_in_flight_defers_is_synced_and_the_retry_matches(
    synced: Attached, emulator: Any
) -> None:
    # At Google before the answer, not yet synced (its notification is on its way).
    emulator.control.insert_event(synced.google_calendar_id, timed(5, 9, 11))
    since = len(emulator.control.requests())
    [report] = audit.audit_calendars([synced.calendar_id])
    assert (report.outcome, report.detail) == ("deferred", "changed during the audit")
    # The race check asked Google for changes since the table's position, then synced them.
    assert methods(emulator, since) == [
        "calendar.freebusy.query",
        "calendar.events.list",
        "calendar.events.list",
    ]
    [row] = audits(synced.calendar_id)
    assert (row.outcome, row.matched, row.differences) == ("deferred", None, [])
    [retry] = audit.audit_calendars([synced.calendar_id])
    assert retry.outcome == "matched"
    with session_scope() as session:
        status = calendar_status(session, synced.calendar_id, datetime.now(UTC))
    assert status is not None and status["lastAudit"]["matched"] is True


def test_a_change_synced_after_the_answer_defers_instead_of_a_false_alarm(
    synced: Attached, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_query = google_client.query_freebusy

    def answer_then_change_and_sync(*args: Any, **kwargs: Any) -> dict[str, Any]:
        answer = real_query(*args, **kwargs)
        emulator.control.insert_event(synced.google_calendar_id, timed(5, 9, 11))
        assert sync_calendar(synced.calendar_id, force=True).status == "done"
        return answer

    monkeypatch.setattr(google_client, "query_freebusy", answer_then_change_and_sync)
    [report] = audit.audit_calendars([synced.calendar_id])
    assert (report.outcome, report.detail) == ("deferred", "synced during the audit")
    monkeypatch.setattr(google_client, "query_freebusy", real_query)
    [report] = audit.audit_calendars([synced.calendar_id])
    assert report.outcome == "matched"
    assert [row.outcome for row in audits(synced.calendar_id)] == ["deferred", "matched"]


def test_audits_under_30_percent_injected_429_and_503_never_mark_a_mismatch(
    google_settings: Any, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cals = [attach(emulator, f"u{n}@example.com") for n in range(3)]
    for cal in cals:
        emulator.control.insert_event(cal.google_calendar_id, timed(1, 9, 10))
        assert sync_calendar(cal.calendar_id, force=True).status == "done"
    since = len(emulator.control.requests())
    permits: list[str | None] = []
    real_acquire = rate_limit.acquire

    def counted(user_key: str | None, *args: Any, **kwargs: Any) -> float:
        permits.append(user_key)
        return real_acquire(user_key, *args, **kwargs)

    monkeypatch.setattr(rate_limit, "acquire", counted)
    emulator.control.set_faults(error_rates={"429": 0.15, "503": 0.15}, seed=3)
    try:
        reports = [
            r for _ in range(20) for r in audit.audit_calendars([c.calendar_id for c in cals])
        ]
    finally:
        emulator.control.set_faults(error_rates={})
    outcomes = [r.outcome for r in reports]
    assert len(outcomes) == 60 and set(outcomes) <= {"matched", "error"}, outcomes
    assert outcomes.count("matched") >= 55  # 5 tries per request: 0.3**5 fail at all
    answers = [e for e in emulator.control.requests(since=since) if "freebusy" in e["methodId"]]
    failed = [e for e in answers if e["status"] in (429, 503)]
    # The injected rate really was ~30%, and every failure was retried (same policy as syncs).
    assert 0.15 < len(failed) / len(answers) < 0.45
    assert len(answers) - len(failed) == 60 - outcomes.count("error")
    # Each attempt, failed or not, took a rate-limiter permit first.
    assert len(permits) == len(emulator.control.requests(since=since))
    rows = [row for cal in cals for row in audits(cal.calendar_id)]
    assert len(rows) == 60 and not [r for r in rows if r.matched is False]


def test_one_freebusy_request_per_account(google_settings: Any, emulator: Any) -> None:
    first = attach(emulator, "ann@example.com")
    second = attach(emulator, "bob@example.com")
    for cal in (first, second):
        assert sync_calendar(cal.calendar_id, force=True).status == "done"
    since = len(emulator.control.requests())
    reports = audit.audit_calendars([first.calendar_id, second.calendar_id])
    assert [r.outcome for r in reports] == ["matched", "matched"]
    calls = [
        entry
        for entry in emulator.control.requests(since=since)
        if entry["methodId"] == "calendar.freebusy.query"
    ]
    assert len(calls) == 2  # two accounts: one request each


def test_schedule_audits_enqueues_one_task_per_account_for_due_calendars(
    google_settings: Any, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker import tasks

    first = attach(emulator, "ann@example.com")
    second = attach(emulator, "bob@example.com")
    sent: list[list[int]] = []
    monkeypatch.setattr(tasks, "enqueue_audit", lambda ids, *, reason: sent.append(ids))
    monkeypatch.setattr("rules.audit.audit_due", lambda key, last, now, period: last is None)
    assert tasks.schedule_audits() == 2
    assert sorted(sent) == [[first.calendar_id], [second.calendar_id]]
    assert sync_calendar(first.calendar_id, force=True).status == "done"
    audit.audit_calendars([first.calendar_id])
    sent.clear()
    assert tasks.schedule_audits() == 1 and sent == [[second.calendar_id]]


def test_gauges_at_scrape_last_match_age_and_calendars_differing(synced: Attached) -> None:
    from models.audits import audit_gauges

    with session_scope() as session:
        assert audit_gauges(session, datetime.now(UTC)) == (0.0, 0)
    audit.audit_calendars([synced.calendar_id])
    later = datetime.now(UTC) + timedelta(hours=3)
    with session_scope() as session:
        age, differing = audit_gauges(session, later)
    assert 3 * 3600 - 60 < age <= 3 * 3600 + 60 and differing == 0


def test_google_semantics_every_kind_of_event_matches_and_only_unanswered_is_tolerated(
    attached: Attached, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The emulator's freeBusy follows Google's documented semantics, and calsync's table
    agrees under them, also for a host whose policy differs (tentative as free). Where
    Google documents nothing (unanswered invitations) either answer is accepted; a Google
    that differed anywhere else would be a mismatch."""
    from emulator import freebusy
    from models.hosts import Host

    gid = attached.google_calendar_id
    me = {"email": gid, "self": True}
    kinds = {
        "busy": timed(1, 9, 10),
        "transparent": timed(1, 11, 12, transparency="transparent"),
        "declined": timed(1, 13, 14, attendees=[{**me, "responseStatus": "declined"}]),
        "working location": timed(2, 8, 17, eventType="workingLocation"),
        "out of office": timed(3, 9, 18, eventType="outOfOffice"),
        "unanswered": timed(4, 15, 16, attendees=[{**me, "responseStatus": "needsAction"}]),
        "tentative answer": timed(4, 17, 18, attendees=[{**me, "responseStatus": "tentative"}]),
    }
    for body in kinds.values():
        emulator.control.insert_event(gid, body)
    day = (datetime.now(BERLIN) + timedelta(days=5)).date()
    emulator.control.insert_event(
        gid,
        {
            "start": {"date": day.isoformat()},
            "end": {"date": (day + timedelta(days=1)).isoformat()},
        },
    )
    with session_scope() as session:
        host = session.get(Host, attached.host_id)
        assert host is not None
        host.busy_policy = {"tentativeBusy": False}  # the host's own choice, not Google's
    assert sync_calendar(attached.calendar_id, force=True).status == "done"

    [report] = audit.audit_calendars([attached.calendar_id])
    assert report.outcome == "matched" and report.policy_touched == 2
    with session_scope() as session:
        status = calendar_status(session, attached.calendar_id, datetime.now(UTC))
    assert status is not None and status["lastAudit"]["policyTouchedEvents"] == 2

    real_is_busy = freebusy.is_busy

    def google_with(response: str) -> Any:
        def is_busy(event: Any) -> bool:
            own = [a for a in event.get("attendees") or [] if a.get("self")]
            if own and own[0].get("responseStatus") == response:
                return response != "needsAction"  # the other answer for this one event
            return real_is_busy(event)

        return is_busy

    # Google answers an unanswered invitation as free (undocumented): tolerated, said so.
    monkeypatch.setattr(freebusy, "is_busy", google_with("needsAction"))
    [report] = audit.audit_calendars([attached.calendar_id])
    assert report.outcome == "matched" and "unanswered invitations" in report.detail
    # Google answering a declined invitation as busy is not tolerated: named, persistent.
    monkeypatch.setattr(freebusy, "is_busy", google_with("declined"))
    [report] = audit.audit_calendars([attached.calendar_id])
    assert report.outcome == "persistent"
    assert report.differences == [{"start": z(at(1, 13)), "end": z(at(1, 14))}]


def test_an_undecided_audit_is_retried_soon_a_bounded_number_of_times(
    synced: Attached, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models.audits import audit_candidates
    from models.stored_moments import START, PagePosition
    from worker import tasks

    sent: list[tuple[list[int], dict[str, Any], float]] = []
    monkeypatch.setattr(
        tasks.audit_calendars,
        "apply_async",
        lambda args, kwargs, countdown: sent.append((args[0], kwargs, countdown)),
    )
    emulator.control.insert_event(synced.google_calendar_id, timed(6, 9, 10))  # in flight
    assert tasks.audit_calendars([synced.calendar_id]) == {"deferred": 1}
    [(ids, kwargs, countdown)] = sent
    assert ids == [synced.calendar_id] and kwargs == {"reason": "undecided", "attempt": 1}
    assert 45 <= countdown <= 75  # about a minute: the change's own sync has run by then
    # The attempt counts for beat's schedule: the retry chain, not beat, asks next.
    candidates: list[Any] = []
    position: PagePosition | None = START
    with session_scope() as session:
        while position is not None:
            page, position = audit_candidates(session, datetime.now(UTC), position)
            candidates += page
    [(calendar_id, _account, last_at, _moment)] = candidates
    assert calendar_id == synced.calendar_id and last_at is not None

    sent.clear()
    assert tasks.audit_calendars([synced.calendar_id], attempt=1) == {"matched": 1}
    assert sent == []  # decided: nothing more
    emulator.control.insert_event(synced.google_calendar_id, timed(6, 11, 12))
    assert tasks.audit_calendars([synced.calendar_id], attempt=3) == {"deferred": 1}
    assert sent == []  # the last retry: the next regular audit decides
