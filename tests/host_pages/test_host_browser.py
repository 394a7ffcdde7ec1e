"""The host's page in a real headless Chromium (Debian `chromium`, driven by Playwright),
JavaScript on, against the app on a real HTTP server and a calendar really synced from the
emulator by the worker's sync engine (run in this process, as a worker would run it).

The same flows at a desktop width and at a 390 px phone width: sign in with a link (the
address then holds no token); a Google event created at the emulator appears in the open
page by its own refresh; drag-select 14:00-16:30 tomorrow and save -> /busy has it; delete
it -> gone; a block made with the keyboard alone; the "why is this free" popover on a Free
event; the reconnect banner after access is revoked at the emulator; the log lists the runs
and its CSV parses; axe-core finds no serious or critical violation on the week view or the
log; and the Content-Security-Policy blocks nothing the page needs. Screenshots go to
tests/artifacts/ (ignored by git).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from flask.testing import FlaskClient

from emulator import EmulatorServer
from models import Calendar
from models.db import session_scope
from tests.factories import make_channel
from tests.pipeline import conftest as pipeline
from tests.status_page.conftest import build_scene
from tests.support.browser import launched_chromium
from tests.support.http_server import serving
from webhook import create_app
from worker.sync_engine import sync_calendar

from .conftest import ADMIN

# The emulator fixtures of the pipeline tests (assigned, not imported, to reuse them here).
emulator_server = pipeline.emulator_server
emulator = pipeline.emulator
google_settings = pipeline.google_settings

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
AXE = REPO / "tests" / "clients" / "node_modules" / "axe-core" / "axe.min.js"
BERLIN = ZoneInfo("Europe/Berlin")
EMAIL = "page@example.com"
QUARTER_PX = 10
TOKEN = re.compile(r"cs[lf]?_[A-Za-z0-9_-]{20,}|token=")  # --q in webhook/static/host.css


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    axe = {"tests/clients/node_modules/axe-core (run `npm ci` in tests/clients)": AXE}
    with launched_chromium("host page browser test", axe) as launched:
        yield launched


def _local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=BERLIN).replace(
        hour=hour, minute=minute
    )


def _timed(day: date, start: int, end: int, **fields: Any) -> dict[str, Any]:
    return {
        "start": {"dateTime": _local(day, start).isoformat()},
        "end": {"dateTime": _local(day, end).isoformat()},
        **fields,
    }


def _z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _busy(client: FlaskClient, host_id: int, day: date) -> list[tuple[str, str]]:
    answer = client.get(
        f"/v1/hosts/{host_id}/busy",
        query_string={"timeMin": _z(_local(day, 0)), "timeMax": _z(_local(day, 23, 59))},
        headers=ADMIN,
    )
    assert answer.status_code == 200
    return [(b["start"], b["end"]) for b in answer.get_json()["busy"]]


def _axe(page: Any) -> None:
    """axe-core in the page (evaluated over the DevTools protocol: the page's CSP stays on)."""
    page.evaluate(AXE.read_text() + "\n;true")
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    serious = [
        f"{v['id']}: {v['help']} ({len(v['nodes'])} nodes, e.g. {v['nodes'][0]['html'][:120]})"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not serious, "\n".join(serious)


def _drag(page: Any, day: date, first_row: int, last_row: int) -> None:
    """Press at the middle of `first_row` of `day`'s column and release at `last_row`."""
    slots = page.locator(f'.slots[data-date="{day.isoformat()}"]')
    slots.scroll_into_view_if_needed()
    page.evaluate(
        "([sel, y]) => { const r = document.querySelector(sel).getBoundingClientRect();"
        " window.scrollBy(0, r.top + y - 150); }",
        [f'.slots[data-date="{day.isoformat()}"]', first_row * QUARTER_PX],
    )
    box = slots.bounding_box()
    assert box is not None
    x = box["x"] + box["width"] / 2
    page.mouse.move(x, box["y"] + (first_row + 0.5) * QUARTER_PX)
    page.mouse.down()
    for row in range(first_row + 1, last_row + 1):
        page.mouse.move(x, box["y"] + (row + 0.5) * QUARTER_PX)
    page.mouse.up()


@pytest.mark.parametrize("width", [1280, 390], ids=["desktop", "phone"])
def test_host_page_flows_in_chromium(
    browser: Any,
    google_settings: Any,
    emulator: EmulatorServer,
    width: int,
) -> None:
    app = create_app(google_settings)  # not the `client` fixture: that one is not at the emulator
    client = app.test_client()
    # A host whose Google calendar has a busy meeting and a Free lunch tomorrow.
    cal = pipeline.attach(emulator, EMAIL)
    control = emulator.control
    today = datetime.now(BERLIN).date()
    tomorrow = today + timedelta(days=1)
    control.insert_event(EMAIL, _timed(tomorrow, 9, 10, summary="Standup"))
    control.insert_event(
        EMAIL, _timed(tomorrow, 12, 13, summary="Lunch", transparency="transparent")
    )
    with session_scope() as session:
        calendar = session.get(Calendar, cal.calendar_id)
        assert calendar is not None
        calendar.summary = "Work"
        # A live push channel (as the worker's watch opens one): the calendar reads "ok".
        make_channel(session, calendar, expiration=datetime.now(UTC) + timedelta(days=5))
    assert sync_calendar(cal.calendar_id, force=True).status == "done"

    csp_problems: list[str] = []
    context = browser.new_context(viewport={"width": width, "height": 900}, locale="en-GB")
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on(
        "console",
        lambda message: (
            csp_problems.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    with serving(app) as base:
        # Sign in: the link's token is gone from the address once the page shows.
        link = client.post(f"/v1/hosts/{cal.host_id}/sign-in-link", headers=ADMIN).get_json()
        page.goto(base + urlsplit(link["url"]).path)
        assert page.url == base + "/me"
        assert "csl_" not in page.url and "token" not in page.url
        assert page.locator("h1").inner_text().startswith(f"host {EMAIL}")
        page.goto(f"{base}/me?week={tomorrow.isoformat()}")
        day_column = page.locator(f'.slots[data-date="{tomorrow.isoformat()}"]')
        assert "09:00\u201310:00 Work" in day_column.inner_text()
        assert "Work: synced" in page.locator(".freshness").inner_text()
        assert page.locator(".banner").count() == 0

        # An event created at Google shows up in the open page by itself.
        planning = _timed(tomorrow, 10, 11, summary="Planning")
        planning["start"]["dateTime"] = _local(tomorrow, 10, 30).isoformat()
        planning["end"]["dateTime"] = _local(tomorrow, 11, 30).isoformat()
        control.insert_event(EMAIL, planning)
        assert sync_calendar(cal.calendar_id, force=True).status == "done"
        page.locator(".slots .blk.calendar", has_text="10:30\u201311:30 Work").first.wait_for(
            timeout=10_000
        )
        assert page.url.endswith(f"/me?week={tomorrow.isoformat()}")  # refreshed, not reloaded

        # Why is 12:15 free? The popover names the Free lunch and its reason.
        box = day_column.bounding_box()
        assert box is not None
        day_column.scroll_into_view_if_needed()
        page.evaluate(
            "([sel, y]) => { const r = document.querySelector(sel).getBoundingClientRect();"
            " window.scrollBy(0, r.top + y - 150); }",
            [f'.slots[data-date="{tomorrow.isoformat()}"]', 49 * QUARTER_PX],
        )
        box = day_column.bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + 49.5 * QUARTER_PX)
        popover = page.locator("#popover")
        popover.wait_for(state="visible", timeout=5000)
        assert "Lunch \u2014 marked Free in Google" in popover.inner_text()
        assert "12:15\u201312:30" in popover.inner_text()
        page.keyboard.press("Escape")
        assert popover.is_hidden()

        # Click a start, then an end: the form holds that range.
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + 49.5 * QUARTER_PX)
        popover.get_by_role("button", name="Start a block here").click()
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + 51.5 * QUARTER_PX)
        assert page.locator("#f-start").input_value() == "12:15"
        assert page.locator("#f-end").input_value() == "13:00"

        # Drag-select 14:00-16:30 tomorrow and save: /busy has it at once.
        _drag(page, tomorrow, 56, 65)
        assert page.locator("#f-start").input_value() == "14:00"
        assert page.locator("#f-end").input_value() == "16:30"
        assert page.locator("#f-date").input_value() == tomorrow.isoformat()
        page.locator("#save-block").click()
        page.wait_for_load_state()
        assert "Blocked " in page.locator(".flash").inner_text()
        block_span = (_z(_local(tomorrow, 14)), _z(_local(tomorrow, 16, 30)))
        assert block_span in _busy(client, cal.host_id, tomorrow)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"week-view-{width}.png"), full_page=True)
        _axe(page)

        # Delete it: gone from /busy.
        page.locator(".blk.manual", has_text="14:00\u201316:30").click()
        page.locator("#delete-block").click()
        page.wait_for_load_state()
        assert "deleted" in page.locator(".flash").inner_text()
        assert block_span not in _busy(client, cal.host_id, tomorrow)

        # The keyboard alone: Tab to the grid, arrows to tomorrow 18:00, Enter, down to
        # 18:45, Enter, then Enter on "Block this time".
        page.goto(f"{base}/me?week={tomorrow.isoformat()}")
        for _ in range(40):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "week":
                break
        else:
            pytest.fail("Tab never reached the week grid")
        monday = tomorrow - timedelta(days=tomorrow.weekday())
        start_column = today.weekday() if monday <= today else 0
        for _ in range(tomorrow.weekday() - start_column):
            page.keyboard.press("ArrowRight")
        for _ in range(72 - 36):  # the cursor starts at 09:00
            page.keyboard.press("ArrowDown")
        page.keyboard.press("Enter")
        for _ in range(3):
            page.keyboard.press("ArrowDown")
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "save-block"
        page.keyboard.press("Enter")
        page.wait_for_load_state()
        assert "18:00\u201319:00" in page.locator(".flash").inner_text()
        keyboard_span = (_z(_local(tomorrow, 18)), _z(_local(tomorrow, 19)))
        assert keyboard_span in _busy(client, cal.host_id, tomorrow)

        # Access revoked at Google: the page warns and offers to reconnect, by itself.
        control.revoke_account(EMAIL)
        control.insert_event(EMAIL, _timed(tomorrow, 20, 21, summary="Unseen"))
        sync_calendar(cal.calendar_id, force=True)
        banner = page.locator(".banner.tone-bad", has_text="Google access was revoked")
        banner.wait_for(timeout=10_000)
        reconnect = banner.locator("a.action")
        assert reconnect.inner_text() == "Reconnect Google Calendar"
        assert "/connect/google?host=" in (reconnect.get_attribute("href") or "")
        assert "token=" not in (reconnect.get_attribute("href") or "")

        # The log lists the runs, the failure in words, and its CSV parses.
        page.goto(f"{base}/me/log")
        summary = page.locator("#summary").inner_text()
        assert summary.startswith("3 syncs, 1 failure"), summary
        assert page.locator("#runs tbody tr").count() == 3
        assert "Google access was revoked" in page.locator("#runs tr.failed").inner_text()
        page.screenshot(path=str(ARTIFACTS / f"sync-log-{width}.png"), full_page=True)
        _axe(page)
        answer = page.request.get(f"{base}/me/log.csv")
        assert answer.ok and answer.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(answer.text())))
        assert [row["outcome"] for row in rows] == ["needs_reauth", "ok", "ok"]
        assert {row["calendar"] for row in rows} == {"Work"}
        page.locator("#only-failures").click()
        assert page.locator("#runs tbody tr").count() == 1

    context.close()
    assert not csp_problems, csp_problems
    # No address the browser asked for held a token, but the sign-in link itself.
    assert [url for url in requested if TOKEN.search(url)] == [base + urlsplit(link["url"]).path]


def test_blocks_with_javascript_off(browser: Any, settings: Any, session: Any) -> None:
    """The form path alone, in a phone-sized Chromium with JavaScript disabled: create,
    edit and delete a block, each counted in /busy at once; then sign out."""
    scene = build_scene(session, datetime.now(UTC))
    app = create_app(settings)
    client = app.test_client()
    day = datetime.now(BERLIN).date() + timedelta(days=2)
    context = browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 800})
    page = context.new_page()
    with serving(app) as base:
        link = client.post(f"/v1/hosts/{scene.host_id}/sign-in-link", headers=ADMIN).get_json()
        page.goto(base + urlsplit(link["url"]).path)
        assert page.url == base + "/me"
        page.fill("#f-date", day.isoformat())
        page.select_option("#f-start", "07:15")
        page.select_option("#f-end", "08:00")
        page.fill("#f-note", "School run")
        page.click("#save-block")
        assert "Blocked " in page.locator(".flash").inner_text()
        span = (_z(_local(day, 7, 15)), _z(_local(day, 8)))
        assert span in _busy(client, scene.host_id, day)

        page.locator("ul.blocks li", has_text="School run").get_by_role("link").click()
        page.select_option("#f-end", "08:30")
        page.get_by_role("button", name="Save changes").click()
        assert "Block changed" in page.locator(".flash").inner_text()
        assert (_z(_local(day, 7, 15)), _z(_local(day, 8, 30))) in _busy(client, scene.host_id, day)

        page.locator("ul.blocks li", has_text="School run").get_by_role("button").click()
        assert "deleted" in page.locator(".flash").inner_text()
        assert _busy(client, scene.host_id, day) == []

        page.get_by_role("button", name="Sign out").click()
        assert "You are signed out" in page.locator("h1").inner_text()
        assert page.goto(base + "/me").status == 401
    context.close()
