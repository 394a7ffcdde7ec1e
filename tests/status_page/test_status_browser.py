"""The status page in a real headless Chromium (Debian package `chromium`, driven by
Playwright) against a live server, with JavaScript disabled: the three calendar states read
right in words and colour, the page refreshes itself, and a screenshot is kept as a test
artifact (test-artifacts/status-page.png)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

from core.settings import Settings
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, require_browser
from webhook import create_app

from .conftest import build_scene

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "test-artifacts" / "status-page.png"
# The CSS colours of the health tones (webhook/templates/status_base.html).
GREEN, AMBER, RED = "rgb(26, 127, 55)", "rgb(154, 103, 0)", "rgb(207, 34, 46)"


@pytest.fixture
def server_url(settings: Settings, db: None) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, create_app(settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)


@pytest.fixture
def browser_context():
    require_browser("status page browser test")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(
            java_script_enabled=False, viewport={"width": 1280, "height": 900}
        )
        try:
            yield context
        finally:
            context.close()
            browser.close()


def test_status_page_in_chromium(
    browser_context, server_url: str, session: Session, settings: Settings
) -> None:
    scene = build_scene(session, datetime.now(UTC))
    page = browser_context.new_page()

    response = page.goto(f"{server_url}/status/{scene.host_id}?token={scene.token}")
    assert response is not None and response.status == 200
    assert page.title() == "Sync status · Dana Example · calsync"
    assert page.locator('meta[http-equiv="refresh"]').get_attribute("content") == "30"

    expectations = [
        (scene.healthy_id, "Up to date", "tone-good", GREEN),
        (scene.lagging_id, "Behind by 4 minutes", "tone-warn", AMBER),
        (scene.reauth_id, "Google access was revoked — reconnect", "tone-bad", RED),
    ]
    for calendar_id, words, tone_class, colour in expectations:
        badge = page.locator(f"#calendar-{calendar_id} .badge")
        assert badge.is_visible()
        assert words in badge.inner_text()
        assert tone_class in (badge.get_attribute("class") or "")
        assert badge.evaluate("e => getComputedStyle(e).color") == colour
        card = page.locator(f"#calendar-{calendar_id}")
        assert card.evaluate("e => getComputedStyle(e).borderLeftColor") == colour

    reconnect = page.locator(f"#calendar-{scene.reauth_id} a.action")
    assert reconnect.is_visible()
    assert reconnect.inner_text() == "Reconnect Google Calendar"
    assert reconnect.get_attribute("href") == settings.public_url.rstrip("/") + (
        f"/connect/google?host={scene.host_id}&account={scene.reauth_account_id}"
        f"&token={scene.token}"
    )
    assert (
        "What to do: Reconnect the Google account"
        in page.locator(f"#calendar-{scene.reauth_id} .fix").inner_text()
    )

    # The timeline draws tomorrow's blocks as visible bars and lists them in words.
    tomorrow = page.locator(".day").nth(1)
    for kind in ("all", "calendar", "manual"):
        box = tomorrow.locator(f".bar.{kind}").first.bounding_box()
        assert box is not None and box["width"] > 10 and box["height"] > 5
    entries = tomorrow.locator(".entries").inner_text()
    assert "Work" in entries and "Side project" in entries
    assert "Manual blocks: Dentist <b>bring card</b>" in entries
    assert page.locator(".day.today .now").count() == 1
    data_as_of = page.locator("#data-as-of")
    assert data_as_of.is_visible() and data_as_of.inner_text().endswith(("CET", "CEST"))
    stamped = datetime.fromisoformat(data_as_of.get_attribute("datetime") or "")
    assert abs((datetime.now(UTC) - stamped).total_seconds()) < 60

    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000

    # Without a token the browser gets a readable page, not JSON.
    response = page.goto(f"{server_url}/status/{scene.host_id}")
    assert response is not None and response.status == 401
    assert "This page needs your calsync token" in page.locator("h1").inner_text()
    assert "Dana Example" not in page.content()
