"""`calsync` command line, built on Flask's click CLI. Each verb is a thin caller of the same
code the HTTP API and the worker use."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from flask import Flask
from flask.cli import FlaskGroup, with_appcontext

from core.settings import SettingsError


def _create_app() -> Flask:
    # The app factory also checks the encryption keys: every verb stops on a weak one.
    from webhook import create_app

    return create_app()


@click.group(cls=FlaskGroup, create_app=_create_app, add_version_option=False)
def cli() -> None:
    """calsync: Google Calendar busy time, kept in step by push notifications."""


def _parse_time(value: str | None, default: datetime) -> datetime:
    if value is None:
        return default
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --- db ---------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Database schema (Alembic)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION."""
    from models.migrate import upgrade

    upgrade(revision=revision)
    click.echo(f"database at {revision}")
    from core.settings import get_settings

    if get_settings().is_embedded_broker:
        from worker.celery_app import app
        from worker.celery_factory import declare_queue

        declare_queue(app)
        click.echo("embedded broker ready")


# --- hosts and calendars ----------------------------------------------------------------


@cli.group()
def hosts() -> None:
    """Hosts: the people whose time is booked."""


@hosts.command("add")
@click.argument("name")
@click.option("--time-zone", default="UTC", show_default=True)
@with_appcontext
def hosts_add(name: str, time_zone: str) -> None:
    """Create a host; prints its id and API token (shown once)."""
    from models.db import session_scope
    from models.registry import create_host

    with session_scope() as session:
        host, token = create_host(session, name, time_zone)
        host_id = host.id
    click.echo(json.dumps({"id": host_id, "apiToken": token}))


@hosts.command("rotate-token")
@click.argument("host_id", type=int)
@with_appcontext
def hosts_rotate_token(host_id: int) -> None:
    """New API token for a host; the old one stops at once. Prints it (shown once)."""
    from models.db import session_scope
    from models.hosts import Host
    from models.registry import rotate_api_token

    with session_scope() as session:
        host = session.get(Host, host_id)
        if host is None:
            raise click.ClickException(f"no host {host_id}")
        token = rotate_api_token(session, host)
    click.echo(json.dumps({"id": host_id, "apiToken": token}))


@hosts.command("feeds")
@click.argument("host_id", type=int)
@with_appcontext
def hosts_feeds(host_id: int) -> None:
    """New feed token for a host (the old one stops), with everything a booking tool needs:
    CalDAV URL, username and password, ICS URL, and the status page link (shown once)."""
    from core.settings import get_settings
    from models.db import session_scope
    from models.hosts import Host
    from models.registry import rotate_feed_token
    from rules.busy_feed import connection_values

    with session_scope() as session:
        host = session.get(Host, host_id)
        if host is None:
            raise click.ClickException(f"no host {host_id}")
        token = rotate_feed_token(session, host)
    click.echo(json.dumps(connection_values(get_settings().public_url, host_id, token)))


@hosts.command("link")
@click.argument("host_id", type=int)
@with_appcontext
def hosts_link(host_id: int) -> None:
    """A one-time sign-in link to the host's own page (week view, blocks, sync log): good
    for 15 minutes, once; the browser that opens it stays signed in for 30 days."""
    from core.settings import get_settings
    from models.db import session_scope
    from models.hosts import Host
    from models.sign_in_links import issue_sign_in_link, sign_in_url

    with session_scope() as session:
        host = session.get(Host, host_id)
        if host is None:
            raise click.ClickException(f"no host {host_id}")
        token = issue_sign_in_link(session, host, datetime.now(UTC))
    click.echo(sign_in_url(get_settings().public_url, token))


# The earlier name of the same command.
hosts.add_command(hosts_feeds, "feed-token")


@hosts.command("delete")
@click.argument("host_id", type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_appcontext
def hosts_delete(host_id: int, yes: bool) -> None:
    """Delete a host and all its data; its channels are stopped at Google."""
    from models.db import session_scope
    from models.registry import delete_host
    from worker.enqueue import EnqueueError, enqueue_stop_channels

    if not yes:
        click.confirm(f"Delete host {host_id} and all its data?", abort=True)
    with session_scope() as session:
        to_stop = delete_host(session, host_id)
        if to_stop is None:
            raise click.ClickException(f"no host {host_id}")
    # After the commit: never a stop for a deletion that rolled back.
    try:
        for account_id, stops in to_stop.items():
            enqueue_stop_channels(
                account_id, stops.channel_pairs(), sealed_credentials=stops.sealed_text()
            )
    except EnqueueError as exc:
        click.echo(f"channels not stopped (they lapse at Google): {exc}", err=True)
    click.echo(json.dumps({"deleted": host_id}))


@cli.group()
def calendars() -> None:
    """Google calendars of a host."""


@calendars.command("add")
@click.argument("host_id", type=int)
@click.argument("google_calendar_id")
@click.option(
    "--credentials",
    "credentials_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Google authorized-user JSON (client_id, client_secret, refresh_token, token_uri).",
)
@click.option("--no-watch", is_flag=True, help="Do not open a push channel (poll only).")
@with_appcontext
def calendars_add(
    host_id: int, google_calendar_id: str, credentials_file: Path, no_watch: bool
) -> None:
    """Attach a Google calendar; a full sync and a watch start in the background."""
    from models.credentials_box import CredentialsError
    from models.db import session_scope
    from models.hosts import Host
    from models.registry import attach_calendar
    from worker.enqueue import after_commit, enqueue_sync, enqueue_watch

    try:
        credentials = json.loads(credentials_file.read_text())
    except ValueError as exc:
        raise click.BadParameter(f"credentials file is not JSON: {exc}") from None
    with session_scope() as session:
        if session.get(Host, host_id) is None:
            raise click.ClickException(f"no host {host_id}")
        try:
            calendar, _created = attach_calendar(session, host_id, google_calendar_id, credentials)
        except CredentialsError as exc:
            raise click.BadParameter(str(exc)) from None
        calendar_id = calendar.id
        sends = after_commit(session, enqueue_sync, calendar_id, reason="attach", full=True)
        if not no_watch:
            after_commit(session, enqueue_watch, calendar_id)
    sends.raise_if_failed()  # the calendar is attached; the broker error is the command's
    click.echo(json.dumps({"id": calendar_id}))


# --- keys -------------------------------------------------------------------------------


@cli.group()
def keys() -> None:
    """The key that encrypts stored Google credentials."""


@keys.command("rotate")
@click.option("--batch-size", default=100, show_default=True, type=click.IntRange(min=1))
@with_appcontext
def keys_rotate(batch_size: int) -> None:
    """Re-encrypt every stored credential with CALSYNC_SECRET_KEY (after the old key moved to
    CALSYNC_SECRET_KEY_PREVIOUS); one transaction per batch, safe to run again."""
    from models.credentials_box import rotate_credentials
    from models.db import session_factory

    counts = rotate_credentials(session_factory(), batch_size=batch_size)
    click.echo(json.dumps(counts.as_dict()))
    if counts.undecryptable:
        raise click.ClickException(
            f"{counts.undecryptable} stored credentials match none of the keys: "
            "is a previous key missing from CALSYNC_SECRET_KEY_PREVIOUS?"
        )


# --- sync, busy, status -----------------------------------------------------------------


@cli.command("sync")
@click.argument("calendar_id", type=int)
@click.option("--full", is_flag=True, help="Full resync instead of incremental.")
@click.option("--inline", is_flag=True, help="Run here instead of enqueueing for a worker.")
@with_appcontext
def sync(calendar_id: int, full: bool, inline: bool) -> None:
    """Sync one calendar now."""
    if inline:
        from worker.sync_engine import sync_calendar

        result = sync_calendar(calendar_id, trigger="cli", full=full, force=True)
        click.echo(json.dumps({"status": result.status, "detail": result.detail}))
        if result.status not in ("done", "skipped"):
            sys.exit(1)
        return
    from worker.enqueue import enqueue_sync

    enqueue_sync(calendar_id, reason="cli", full=full, force=True)
    click.echo(json.dumps({"enqueued": calendar_id}))


@cli.command("audit")
@click.argument("calendar_id", type=int)
@with_appcontext
def audit(calendar_id: int) -> None:
    """Compare one calendar's busy table with Google's freeBusy now (in this process) and
    print the outcome with the differing ranges (UTC, no titles). Exit 1 unless it matched."""
    from worker.audit import audit_calendars

    [report] = audit_calendars([calendar_id])
    click.echo(
        json.dumps(
            {
                "calendarId": report.calendar_id,
                "outcome": str(report.outcome),
                "healedByFullResync": report.healed,
                "differencesBeforeResync": report.healed_differences,
                "detail": report.detail or None,
                "windowStart": report.window_start.isoformat() if report.window_start else None,
                "windowEnd": report.window_end.isoformat() if report.window_end else None,
                "differences": report.differences,
                "differingSeconds": report.differing_seconds,
                "policyTouchedEvents": report.policy_touched,
            },
            indent=2,
        )
    )
    if report.outcome != "matched":
        sys.exit(1)


@cli.command("busy")
@click.argument("host_id", type=int)
@click.option("--from", "time_from", help="Window start, ISO 8601 (default: now).")
@click.option("--to", "time_to", help="Window end, ISO 8601 (default: 14 days later).")
@with_appcontext
def busy(host_id: int, time_from: str | None, time_to: str | None) -> None:
    """Print the host's merged busy intervals (all calendars plus manual blocks)."""
    from models.busy_queries import host_busy
    from models.db import session_scope

    start = _parse_time(time_from, datetime.now(UTC))
    end = _parse_time(time_to, start + timedelta(days=14))
    if end <= start:
        raise click.BadParameter("--to must be after --from")
    with session_scope() as session:
        intervals = host_busy(session, host_id, start, end)
    for interval in intervals:
        click.echo(
            f"{interval.start.isoformat()}  {interval.end.isoformat()}  "
            + ",".join(interval.sources)
        )
    if not intervals:
        click.echo("(no busy time)")


@cli.command("status")
@click.argument("calendar_id", type=int)
@with_appcontext
def status(calendar_id: int) -> None:
    """Print one calendar's sync state."""
    from models.db import session_scope
    from models.sync_status import calendar_status

    with session_scope() as session:
        report = calendar_status(session, calendar_id, datetime.now(UTC))
    if report is None:
        raise click.ClickException(f"no calendar {calendar_id}")
    click.echo(json.dumps(report, indent=2, default=str))


# --- emulator and demo ------------------------------------------------------------------


@cli.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--scenario", type=click.Path(exists=True, dir_okay=False), default=None)
def emulator(host: str, port: int, seed: int, scenario: str | None) -> None:
    """Run the Google Calendar API emulator in the foreground."""
    from emulator.server import serve

    serve(host=host, port=port, seed=seed, scenario_path=scenario)


@cli.command("demo")
@click.option("--port", default=8000, show_default=True, type=int, help="Web port.")
@click.option("--emulator-port", default=0, type=int, help="Emulator port (default: free).")
@click.option("--keep-running/--exit-after-script", default=True, show_default=True)
def demo(port: int, emulator_port: int, keep_running: bool) -> None:
    """Run everything locally (emulator, web, worker, beat) and watch a calendar sync."""
    from calsync.demo import run_demo

    sys.exit(run_demo(web_port=port, emulator_port=emulator_port, keep_running=keep_running))


def main() -> None:
    try:
        cli.main(prog_name="calsync")
    except SettingsError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)
