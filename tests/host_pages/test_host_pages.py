"""The host pages over HTTP (Flask's client, the suite's database): sign-in links, the
session cookie and its revocation, CSRF, another host's 404s, manual blocks by the form
path (JavaScript off) counting in /busy at once, the explain popover's data, the sync log
and its CSV."""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
import time_machine
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from calsync.cli import cli
from core.logs import redact
from core.settings import Settings, SettingsError, configure
from models import Audit, CalendarEvent, ManualBlock, OutboxEvent, SignInLink, SyncRun
from models.db import session_scope
from models.host_log import prune_sync_runs
from models.outbound_endpoints import create_endpoint
from tests.status_page.conftest import HOST_ZONE, Scene
from webhook import create_app
from worker.celery_factory import _beat_schedule
from worker.tasks import prune_history

from .conftest import ADMIN, sign_in_link, signed_in

BERLIN = ZoneInfo(HOST_ZONE)


def _tomorrow() -> date:
    return datetime.now(BERLIN).date() + timedelta(days=1)


def _busy(client: FlaskClient, host_id: int, day: date) -> list[tuple[str, str]]:
    start = datetime.combine(day, datetime.min.time(), tzinfo=BERLIN)
    answer = client.get(
        f"/v1/hosts/{host_id}/busy",
        query_string={
            "timeMin": start.isoformat(),
            "timeMax": (start + timedelta(days=1)).isoformat(),
        },
        headers=ADMIN,
    )
    assert answer.status_code == 200, answer.get_json()
    return [(b["start"], b["end"]) for b in answer.get_json()["busy"]]


def _utc(day: date, hour: int, minute: int = 0) -> str:
    moment = datetime.combine(day, datetime.min.time(), tzinfo=BERLIN).replace(
        hour=hour, minute=minute
    )
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_sign_in_sets_a_safe_cookie_and_redirects_to_a_url_without_token(
    client: FlaskClient, scene: Scene
) -> None:
    url = sign_in_link(client, scene.host_id)
    assert url.startswith("http://127.0.0.1") and "/sign-in/csl_" in url
    answer = client.get(urlsplit(url).path)
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/me"
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("calsync_session=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # the test's public URL is plain http
    assert "Expires=" in cookie  # 30 days, not a browser-session cookie
    page = client.get("/me")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Dana Example" in html and "csl_" not in html and scene.token not in html
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


def test_a_link_works_once_and_an_expired_one_says_what_to_do(
    client: FlaskClient, scene: Scene
) -> None:
    path = urlsplit(sign_in_link(client, scene.host_id)).path
    assert client.get(path).status_code == 303
    again = client.application.test_client().get(path)
    assert again.status_code == 410
    text = again.get_data(as_text=True)
    assert "already used" in text and "calsync hosts link" in text
    late = urlsplit(sign_in_link(client, scene.host_id)).path
    with time_machine.travel(datetime.now(UTC) + timedelta(minutes=16)):
        expired = client.application.test_client().get(late)
    assert expired.status_code == 410
    assert "has expired" in expired.get_data(as_text=True)
    assert client.application.test_client().get("/sign-in/csl_nope").status_code == 404


def test_the_admin_alone_makes_links(client: FlaskClient, scene: Scene) -> None:
    own = {"Authorization": f"Bearer {scene.api_token}"}
    assert client.post(f"/v1/hosts/{scene.host_id}/sign-in-link", headers=own).status_code == 403
    assert client.post("/v1/hosts/999999/sign-in-link", headers=ADMIN).status_code == 404


def test_without_a_session_the_pages_ask_to_sign_in(client: FlaskClient, scene: Scene) -> None:
    for path in ("/me", "/me/log", "/me/log.csv", f"/me/blocks/{1}"):
        answer = client.get(path)
        assert answer.status_code == 401
        assert "Sign in" in answer.get_data(as_text=True)
    assert client.get("/me/explain?date=2026-01-01&time=10:00").status_code == 401


def test_rotating_the_api_token_ends_every_session(client: FlaskClient, scene: Scene) -> None:
    signed_in(client, scene.host_id)
    assert client.post(f"/v1/hosts/{scene.host_id}/token", headers=ADMIN).status_code == 200
    assert client.get("/me").status_code == 401


def test_form_path_creates_edits_and_deletes_a_block_counted_in_busy_at_once(
    client: FlaskClient, scene: Scene, session: Session
) -> None:
    csrf = signed_in(client, scene.host_id)
    day = _tomorrow() + timedelta(days=1)  # no scene blocks that day
    form = {"csrf_token": csrf, "date": day.isoformat(), "start": "14:00", "end": "16:30"}
    answer = client.post("/me/blocks", data={**form, "note": "Focus"})
    assert answer.status_code == 303 and answer.headers["Location"].startswith("/me?week=")
    assert _busy(client, scene.host_id, day) == [(_utc(day, 14), _utc(day, 16, 30))]
    week = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "Blocked " in week and "14:00\u201316:30 Blocked by you: Focus" in week

    block_id = session.scalar(select(ManualBlock.id).where(ManualBlock.note == "Focus"))
    edit = {**form, "start": "15:00", "end": "24:00", "note": "Focus"}
    assert client.post(f"/me/blocks/{block_id}", data=edit).status_code == 303
    assert _busy(client, scene.host_id, day) == [(_utc(day, 15), _utc(day + timedelta(days=1), 0))]

    assert (
        client.post(f"/me/blocks/{block_id}/delete", data={"csrf_token": csrf}).status_code == 303
    )
    assert _busy(client, scene.host_id, day) == []


def test_block_changes_on_the_page_announce_busy_changed_with_their_ranges(
    client: FlaskClient, scene: Scene, session: Session
) -> None:
    """The page changes blocks through the same writer as the API: each change commits its
    `busy.changed` outbox row with the ranges whose answer changed (a weekly repeat is one
    event with one range per week)."""
    csrf = signed_in(client, scene.host_id)
    with session_scope() as listening:  # changes are recorded only while someone listens
        create_endpoint(
            listening,
            url="https://receiver.example/hooks",
            host_ids=[scene.host_id],
            description="test",
            created_by_host=None,
        )
    day = _tomorrow() + timedelta(days=1)  # no scene blocks that day
    form = {"csrf_token": csrf, "date": day.isoformat(), "start": "14:00", "end": "16:30"}
    form["repeat_until"] = (day + timedelta(days=7)).isoformat()

    def events() -> list[tuple[str, list[tuple[str, str]]]]:
        rows = session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.host_id == scene.host_id, OutboxEvent.type == "busy.changed")
            .order_by(OutboxEvent.id)
        )
        return [(r.cause, [(c["start"], c["end"]) for c in r.payload["changed"]]) for r in rows]

    before = len(events())
    assert client.post("/me/blocks", data={**form, "note": "Focus"}).status_code == 303
    later = day + timedelta(days=7)
    added = [(_utc(day, 14), _utc(day, 16, 30)), (_utc(later, 14), _utc(later, 16, 30))]
    assert events()[before:] == [("manual_block_added", added)]

    block_id = session.scalar(
        select(ManualBlock.id).where(ManualBlock.note == "Focus").order_by(ManualBlock.start)
    )
    edit = {**form, "start": "15:00", "end": "17:00", "note": "Focus", "repeat_until": ""}
    assert client.post(f"/me/blocks/{block_id}", data=edit).status_code == 303
    moved = [(_utc(day, 14), _utc(day, 15)), (_utc(day, 16, 30), _utc(day, 17))]
    assert events()[before + 1 :] == [("manual_block_changed", moved)]

    delete = {"csrf_token": csrf}
    assert client.post(f"/me/blocks/{block_id}/delete", data=delete).status_code == 303
    assert events()[before + 2 :] == [("manual_block_removed", [(_utc(day, 15), _utc(day, 17))])]


def test_repeat_weekly_makes_one_block_per_week(
    client: FlaskClient, scene: Scene, session: Session
) -> None:
    csrf = signed_in(client, scene.host_id)
    day = _tomorrow() + timedelta(days=1)
    form = {
        "csrf_token": csrf,
        "date": day.isoformat(),
        "start": "08:00",
        "end": "08:45",
        "note": "Gym",
        "repeat_until": (day + timedelta(days=21)).isoformat(),
    }
    assert client.post("/me/blocks", data=form).status_code == 303
    starts = list(session.scalars(select(ManualBlock.start).where(ManualBlock.note == "Gym")))
    assert [s.astimezone(BERLIN).date() for s in sorted(starts)] == [
        day + timedelta(days=7 * week) for week in range(4)
    ]


def test_bad_form_input_is_explained_and_changes_nothing(
    client: FlaskClient, scene: Scene, session: Session
) -> None:
    csrf = signed_in(client, scene.host_id)
    before = session.scalars(select(ManualBlock.id)).all()
    for bad, words in (
        ({"start": "14:00", "end": "13:00"}, "The end must be after the start."),
        ({"start": "14:07", "end": "15:00"}, "quarter hour"),
        ({"date": "tomorrow"}, "Give a date like"),
        ({"repeat_until": "2000-01-01"}, "on or after the first day"),
    ):
        form = {"csrf_token": csrf, "date": _tomorrow().isoformat(), "start": "09:00"}
        form |= {"end": "10:00", **bad}
        answer = client.post("/me/blocks", data=form)
        assert answer.status_code == 400
        assert words in answer.get_data(as_text=True)
    session.expire_all()
    assert session.scalars(select(ManualBlock.id)).all() == before


def test_a_form_without_its_csrf_token_is_refused(
    client: FlaskClient, scene: Scene, session: Session
) -> None:
    csrf = signed_in(client, scene.host_id)
    block_id = session.scalar(select(ManualBlock.id))
    form = {"date": _tomorrow().isoformat(), "start": "09:00", "end": "10:00"}
    for path, data in (
        ("/me/blocks", form),
        ("/me/blocks", {**form, "csrf_token": csrf[:-2] + "xx"}),
        (f"/me/blocks/{block_id}", form),
        (f"/me/blocks/{block_id}/delete", {}),
    ):
        answer = client.post(path, data=data)
        assert answer.status_code == 400, path
        assert "Reload the page" in answer.get_data(as_text=True)
    session.expire_all()
    assert session.get(ManualBlock, block_id) is not None


def test_another_hosts_session_can_neither_read_nor_change_a_block(
    client: FlaskClient, scene: Scene, session: Session
) -> None:
    block_id = session.scalar(select(ManualBlock.id))
    csrf = signed_in(client, scene.other_host_id)
    assert client.get(f"/me/blocks/{block_id}").status_code == 404
    form = {"csrf_token": csrf, "date": _tomorrow().isoformat(), "start": "09:00", "end": "10:00"}
    assert client.post(f"/me/blocks/{block_id}", data=form).status_code == 404
    assert (
        client.post(f"/me/blocks/{block_id}/delete", data={"csrf_token": csrf}).status_code == 404
    )
    week = client.get("/me").get_data(as_text=True)
    assert "Dentist" not in week and "Work" not in week
    session.expire_all()
    assert session.get(ManualBlock, block_id) is not None
    # Nor the other host's status page with this session.
    assert client.get(f"/status/{scene.host_id}").status_code == 401


def test_week_view_draws_sources_freshness_reconnect_and_weeks(
    client: FlaskClient, scene: Scene
) -> None:
    signed_in(client, scene.host_id)
    html = client.get("/me").get_data(as_text=True)
    assert "09:00\u201310:30 Work" in html and "12:00\u201313:00 Side project" in html
    assert "15:00\u201317:00 Blocked by you: Dentist &lt;b&gt;bring card&lt;/b&gt;" in html
    assert 'class="now r' in html
    assert "Work:" in html and "synced" in html
    assert "Family: Google access was revoked" in html
    assert "Reconnect Google Calendar" in html and f"/connect/google?host={scene.host_id}" in html
    monday = datetime.now(BERLIN).date() - timedelta(days=datetime.now(BERLIN).weekday())
    later = client.get(f"/me?week={(monday + timedelta(days=9)).isoformat()}")
    assert f"week={(monday + timedelta(days=14)).isoformat()}" in later.get_data(as_text=True)
    assert 'class="now r' not in later.get_data(as_text=True)
    fragment = client.get(f"/me/live?week={monday.isoformat()}").get_data(as_text=True)
    assert "<html" not in fragment and "09:00\u201310:30 Work" in fragment


def test_reconnect_from_the_page_starts_the_connect_flow_with_the_session(
    client: FlaskClient, scene: Scene
) -> None:
    signed_in(client, scene.host_id)
    answer = client.get(f"/connect/google?host={scene.host_id}&account={scene.reauth_account_id}")
    # Without Google client settings the flow says so; with no session it would be 401.
    assert answer.status_code == 503, answer.get_data(as_text=True)
    assert (
        client.application.test_client().get(f"/connect/google?host={scene.host_id}").status_code
        == 401
    )


def test_explain_says_why_a_slot_is_free(
    client: FlaskClient, scene: Scene, session: Session
) -> None:
    day = _tomorrow()
    calendar_id = scene.healthy_id
    start = datetime.combine(day, datetime.min.time(), tzinfo=BERLIN).replace(hour=18)
    session.add(
        CalendarEvent(
            calendar_id=calendar_id,
            google_event_id="lunch",
            start=start.astimezone(UTC),
            end=(start + timedelta(hours=1)).astimezone(UTC),
            all_day=False,
            status="confirmed",
            transparency="transparent",
            event_type="default",
            summary="Lunch",
            decision="free",
        )
    )
    session.commit()
    signed_in(client, scene.host_id)
    answer = client.get(f"/me/explain?date={day.isoformat()}&time=18:30")
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["busy"] is False
    assert body["items"][0]["title"] == "Lunch"
    assert body["items"][0]["short"] == "marked Free in Google"
    html = client.get("/me").get_data(as_text=True)
    assert "Lunch — marked Free in Google (does not block)" in html
    assert client.get("/me/explain?date=x&time=18:30").status_code == 400
    assert client.get(f"/me/explain?date={day}&time=18:31").status_code == 400


def _run(calendar_id: int, ago: timedelta, outcome: str = "ok", **fields) -> SyncRun:
    started = datetime.now(UTC) - ago
    return SyncRun(
        calendar_id=calendar_id,
        kind="incremental",
        trigger="push",
        started_at=started,
        finished_at=started + timedelta(milliseconds=300),
        duration_ms=300,
        events_seen=3,
        blocks_upserted=2,
        blocks_deleted=1,
        outcome=outcome,
        **fields,
    )


def test_log_lists_runs_filters_failures_and_downloads_csv(
    client: FlaskClient, scene: Scene, session: Session
) -> None:
    session.add_all(
        [
            _run(scene.healthy_id, timedelta(hours=1), notification_lag_ms=1400),
            _run(scene.healthy_id, timedelta(hours=2)),
            _run(
                scene.reauth_id,
                timedelta(hours=3),
                "needs_reauth",
                error_code="auth_revoked",
                error_message="invalid_grant",
            ),
            _run(scene.healthy_id, timedelta(days=8)),  # older than the log's week
            _run(scene.other_host_id and scene.healthy_id, timedelta(days=9)),
        ]
    )
    session.commit()
    signed_in(client, scene.host_id)
    html = client.get("/me/log").get_data(as_text=True)
    assert "3 syncs, 1 failure, longest lag 1.4 s, channel renewed" in html
    assert "Google access was revoked or has expired." in html
    failures = client.get("/me/log?failures=1").get_data(as_text=True)
    assert failures.count('class="failed"') == 1 and "Show all runs" in failures

    answer = client.get("/me/log.csv")
    assert answer.mimetype == "text/csv" and "attachment" in answer.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    assert len(rows) == 3
    assert {row["calendar"] for row in rows} == {"Work", "Family"}
    assert rows[0]["lag_ms"] == "1400" and rows[0]["blocks_added"] == "2"
    failed = list(
        csv.DictReader(io.StringIO(client.get("/me/log.csv?failures=1").get_data(as_text=True)))
    )
    assert [row["outcome"] for row in failed] == ["needs_reauth"]

    # One calendar: its runs only, and its own summary; another host's calendar is 404.
    work = client.get(f"/me/log?calendar={scene.healthy_id}").get_data(as_text=True)
    assert "2 syncs, 0 failures" in work and "Family" not in work.split("<table")[1]
    per_calendar = client.get(f"/me/log.csv?calendar={scene.reauth_id}").get_data(as_text=True)
    assert [row["calendar"] for row in csv.DictReader(io.StringIO(per_calendar))] == ["Family"]
    assert client.get("/me/log?calendar=999999").status_code == 404
    assert client.get("/me/log?calendar=x").status_code == 404


def test_beat_prunes_runs_past_the_retention_and_spent_links(
    session: Session, scene: Scene, settings: Settings, client: FlaskClient
) -> None:
    assert _beat_schedule(settings)["prune-history"]["task"] == "calsync.prune_history"
    session.add_all(
        [
            _run(scene.healthy_id, timedelta(days=11)),
            _run(scene.healthy_id, timedelta(days=9)),
            _run(scene.healthy_id, timedelta(days=1)),
        ]
    )
    session.commit()
    sign_in_link(client, scene.host_id)
    configure(dataclasses.replace(settings, sync_run_retention_days=10))
    with time_machine.travel(datetime.now(UTC) + timedelta(days=2)):
        pruned = prune_history()
    assert (pruned["syncRuns"], pruned["signInLinks"]) == (2, 1)
    session.expire_all()
    assert len(session.scalars(select(SyncRun)).all()) == 1
    assert session.scalars(select(SignInLink)).all() == []
    assert prune_sync_runs(session, datetime.now(UTC)) == 1


def test_retention_setting_is_read_and_checked() -> None:
    assert Settings.from_env({}).sync_run_retention_days == 30
    assert (
        Settings.from_env({"CALSYNC_SYNC_RUN_RETENTION_DAYS": "90"}).sync_run_retention_days == 90
    )
    with pytest.raises(SettingsError, match="CALSYNC_SYNC_RUN_RETENTION_DAYS"):
        Settings.from_env({"CALSYNC_SYNC_RUN_RETENTION_DAYS": "0"})


def test_status_page_offers_to_sign_in(client: FlaskClient, scene: Scene) -> None:
    html = client.get(f"/status/{scene.host_id}?token={scene.token}").get_data(as_text=True)
    assert "calsync hosts link" in html and 'href="/me"' in html


def test_cli_hosts_link_prints_a_working_one_time_link(client: FlaskClient, scene: Scene) -> None:
    result = CliRunner().invoke(cli, ["hosts", "link", str(scene.host_id)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    url = result.output.strip()
    assert url.startswith("http://127.0.0.1:8000/sign-in/csl_")
    assert client.get(urlsplit(url).path).status_code == 303
    assert client.get("/me").status_code == 200
    missing = CliRunner().invoke(cli, ["hosts", "link", "999999"])
    assert missing.exit_code != 0 and "no host 999999" in missing.output


def test_the_cookie_is_secure_behind_https_and_lasts_30_days(
    settings: Settings, scene: Scene
) -> None:
    app = create_app(dataclasses.replace(settings, public_url="https://calsync.example.com"))
    client = app.test_client()
    url = sign_in_link(client, scene.host_id)
    assert url.startswith("https://calsync.example.com/sign-in/csl_")
    answer = client.get(urlsplit(url).path)
    cookie = answer.headers["Set-Cookie"]
    assert "; Secure" in cookie and "HttpOnly" in cookie
    expires = parsedate_to_datetime(cookie.split("Expires=")[1].split(";")[0])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=1)


def test_a_time_the_clocks_skip_is_refused_not_a_500(
    client: FlaskClient, scene: Scene, session: Session
) -> None:
    csrf = signed_in(client, scene.host_id)
    # Berlin skips 02:00-03:00 on the last Sunday of March.
    form = {"csrf_token": csrf, "date": "2027-03-28", "start": "02:00", "end": "03:00"}
    answer = client.post("/me/blocks", data=form)
    assert answer.status_code == 400
    assert "the clocks change" in answer.get_data(as_text=True)
    weekly = {**form, "date": "2027-03-21", "repeat_until": "2027-04-04"}
    assert client.post("/me/blocks", data=weekly).status_code == 400
    session.expire_all()
    assert (
        session.scalar(
            select(ManualBlock.id).where(ManualBlock.start > datetime(2027, 1, 1, tzinfo=UTC))
        )
        is None
    )


def test_a_block_longer_than_a_day_is_not_cut_by_the_edit_form(
    client: FlaskClient, scene: Scene, session: Session
) -> None:
    start = datetime.now(UTC) + timedelta(days=3)
    block = ManualBlock(host_id=scene.host_id, start=start, end=start + timedelta(days=2), note="")
    session.add(block)
    session.commit()
    csrf = signed_in(client, scene.host_id)
    page = client.get(f"/me/blocks/{block.id}").get_data(as_text=True)
    assert "longer than one day" in page and "Save changes" not in page
    form = {"csrf_token": csrf, "date": start.date().isoformat(), "start": "09:00", "end": "10:00"}
    assert client.post(f"/me/blocks/{block.id}", data=form).status_code == 400
    session.expire_all()
    assert session.get(ManualBlock, block.id).end == start + timedelta(days=2)


def test_a_sign_in_link_in_an_access_log_line_is_masked(client: FlaskClient, scene: Scene) -> None:
    path = urlsplit(sign_in_link(client, scene.host_id)).path
    line = redact(f'127.0.0.1 - - "GET {path} HTTP/1.1" 303 -')
    assert "csl_" not in line and "/sign-in/[redacted]" in line


def test_the_page_makes_a_new_booking_tool_password_once(client: FlaskClient, scene: Scene) -> None:
    csrf = signed_in(client, scene.host_id)
    week = client.get("/me").get_data(as_text=True)
    assert "/dav/" in week and "Make a new password" in week and "csf_" not in week
    assert client.post("/me/booking-tool", data={}).status_code == 400
    answer = client.post("/me/booking-tool", data={"csrf_token": csrf})
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    page = answer.get_data(as_text=True)
    password = re.search(r'id="caldav-password">(csf_[^<]+)<', page)
    assert password and f"/feeds/{scene.host_id}/{password.group(1)}.ics" in page
    # The old feed token stops; the new one opens the read-only status page.
    assert client.get(f"/status/{scene.host_id}?token={scene.token}").status_code == 401
    fresh = client.application.test_client()
    assert fresh.get(f"/status/{scene.host_id}?token={password.group(1)}").status_code == 200


def test_a_deleted_hosts_session_never_opens_a_new_host(client: FlaskClient, scene: Scene) -> None:
    signed_in(client, scene.other_host_id)  # the newest host: SQLite may give its id again
    assert client.delete(f"/v1/hosts/{scene.other_host_id}", headers=ADMIN).status_code == 204
    assert client.get("/me").status_code == 401
    # On SQLite the new host gets the deleted one's id (and the same session epoch, 0).
    client.post("/v1/hosts", json={"name": "Newcomer"}, headers=ADMIN)
    answer = client.get("/me")
    assert answer.status_code == 401 and "Newcomer" not in answer.get_data(as_text=True)


def test_log_shows_the_calendars_audits(
    client: FlaskClient, scene: Scene, session: Session
) -> None:
    now = datetime.now(UTC)
    window = {"window_start": now, "window_end": now + timedelta(days=14)}
    session.add_all(
        [
            Audit(
                calendar_id=scene.healthy_id,
                at=now - timedelta(hours=2),
                matched=True,
                outcome="matched",
                **window,
            ),
            Audit(
                calendar_id=scene.lagging_id,
                at=now - timedelta(hours=1),
                matched=False,
                outcome="mismatch",
                differing_seconds=1800.0,
                **window,
            ),
            Audit(
                calendar_id=scene.healthy_id,
                at=now - timedelta(days=9),
                matched=True,
                outcome="matched",
                **window,
            ),
        ]
    )
    session.commit()
    signed_in(client, scene.host_id)
    audits = client.get("/me/log").get_data(as_text=True).split('id="audits"')[1]
    assert audits.count("<li>") == 2
    assert "Work · Matched Google (matched)" in audits
    assert "Side project · Differed from Google by 30 min (mismatch)" in audits
