"""GET /status/{host} through the Flask test client: what a host reads for each calendar
state, the timeline, and who may open which page."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from html import unescape
from urllib.parse import urlsplit

import pytest
import time_machine
from flask.testing import FlaskClient
from sqlalchemy import delete
from sqlalchemy.orm import Session

from models import Calendar, Channel, SyncState
from tests.conftest import TEST_ADMIN_TOKEN

from .conftest import Scene, build_scene

DASH = "\u2013"  # en dash between clock times
NOW = datetime(2025, 6, 10, 8, 30, tzinfo=UTC)  # 10:30 in Berlin (CEST)


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def scene(session: Session, frozen: None) -> Scene:
    return build_scene(session, NOW)


def _card(html: str, calendar_id: int) -> str:
    match = re.search(rf'<article [^>]*id="calendar-{calendar_id}".*?</article>', html, re.S)
    assert match, f"no card for calendar {calendar_id}"
    return match.group(0)


def _text(fragment: str) -> str:
    """Visible text: tags dropped, whitespace collapsed."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def _get(client: FlaskClient, scene: Scene, token: str | None = None, host_id: int | None = None):
    query = {} if token is None else {"token": token}
    return client.get(f"/status/{host_id or scene.host_id}", query_string=query)


def test_healthy_calendar_is_green_and_up_to_date(client: FlaskClient, scene: Scene) -> None:
    response = _get(client, scene, scene.token)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    card = _card(response.text, scene.healthy_id)
    assert 'data-state="ok"' in card
    assert 'class="badge tone-good"' in card
    text = _text(card)
    assert "Work" in text and "dana@example.com" in text
    assert "Up to date" in text
    assert "2 minutes ago" in text
    assert "Tue 10 Jun 2025, 10:28 CEST" in text  # last sync, in the host's zone
    assert "expires in 5 days" in text and "Sun 15 Jun 2025, 10:30 CEST" in text
    assert "Last error" not in text


def test_lagging_calendar_is_amber_with_its_lag(client: FlaskClient, scene: Scene) -> None:
    card = _card(_get(client, scene, scene.token).text, scene.lagging_id)
    assert 'data-state="lagging"' in card
    assert 'class="badge tone-warn"' in card
    text = _text(card)
    assert "Behind by 4 minutes" in text
    assert "4 minutes since the first unapplied change" in text
    assert "10 minutes ago" in text
    assert "calsync is catching up" in text


def test_needs_reauth_calendar_is_red_with_reconnect_link(
    client: FlaskClient, scene: Scene, settings
) -> None:
    card = _card(_get(client, scene, scene.token).text, scene.reauth_id)
    assert 'data-state="needs_reauth"' in card
    assert 'class="badge tone-bad"' in card
    text = _text(card)
    assert "Google access was revoked — reconnect" in text
    assert "Last error Google access was revoked or has expired." in text
    assert "What to do: Reconnect the Google account" in text
    # The link carries the token the page was opened with, to this service's connect flow.
    link = settings.public_url.rstrip("/") + (
        f"/connect/google?host={scene.host_id}&account={scene.reauth_account_id}"
        f"&token={scene.token}"
    )
    assert re.search(r'<a class="action" href="([^"]+)"', card).group(1) == link.replace(
        "&", "&amp;"
    )
    assert "3 hours ago" in text
    assert "Lag Unknown — calsync cannot read this calendar until it is reconnected" in text


def test_summary_banner_names_the_calendars_needing_attention(
    client: FlaskClient, scene: Scene
) -> None:
    html = _get(client, scene, scene.token).text
    banner = _text(re.search(r'<p class="banner[^"]*">.*?</p>', html, re.S).group(0))
    assert banner == "2 of 3 calendars need attention: Side project, Family"
    assert 'class="banner tone-bad"' in html


def test_not_watched_and_failing_calendars_say_why(
    client: FlaskClient, scene: Scene, session: Session, settings
) -> None:
    healthy = session.get(Calendar, scene.healthy_id)
    healthy.watch_problem = (
        "Google refused push notifications: pushNotSupportedForRequestedResource"
    )
    session.execute(delete(Channel).where(Channel.calendar_id == scene.healthy_id))
    lagging = session.get(SyncState, scene.lagging_id)
    lagging.dirty_since = None
    lagging.consecutive_failures = 3
    lagging.last_error_code = "calendar_not_found"
    lagging.last_error_message = "Google says this calendar does not exist."
    session.commit()

    html = _get(client, scene, scene.token).text
    minutes = settings.poll_seconds // 60
    watched = _text(_card(html, scene.healthy_id))
    assert f"Not receiving push notifications — polling every {minutes} minutes" in watched
    assert "pushNotSupportedForRequestedResource" in watched
    assert "No active channel" in watched
    assert 'class="badge tone-warn"' in _card(html, scene.healthy_id)
    failing = _text(_card(html, scene.lagging_id))
    assert "Sync is failing" in failing
    assert "Google says this calendar no longer exists" in failing
    assert "shared with the connected account" in failing
    assert 'class="badge tone-bad"' in _card(html, scene.lagging_id)


def test_timeline_shows_each_source_in_the_host_zone(client: FlaskClient, scene: Scene) -> None:
    html = _get(client, scene, scene.token).text
    days = re.findall(
        r'<div class="day(?: today)?">.*?(?=<div class="day[ \"]|</section>)', html, re.S
    )
    assert len(days) == 7
    assert _text(days[0]).startswith("Today, Tue 10 Jun")
    tomorrow = _text(days[1])
    assert tomorrow.startswith("Wed 11 Jun")
    assert f"09:00{DASH}10:30 Work" in tomorrow
    assert f"12:00{DASH}13:00 Side project" in tomorrow
    assert f"15:00{DASH}17:00 Manual blocks: Dentist <b>bring card</b>" in tomorrow
    assert "Free all day" in _text(days[2])
    # One lane for everything together, one per calendar, one for manual blocks.
    assert days[1].count('class="lane ') == 5
    # 09:00 is 37.5 % into the day; 15:00-17:00 is 62.5 % wide 8.333 %.
    assert 'style="left: 37.5%; width: 6.25%;' in days[1]
    assert 'class="bar manual" style="left: 62.5%; width: 8.333%;' in days[1]
    assert 'class="now" style="left: 43.75%"' in days[0]  # 10:30 local


def test_page_refreshes_and_states_its_data_time(client: FlaskClient, scene: Scene) -> None:
    response = _get(client, scene, scene.token)
    assert '<meta http-equiv="refresh" content="30">' in response.text
    assert "Data as of" in response.text
    assert 'datetime="2025-06-10T08:30:00+00:00">Tue 10 Jun 2025, 10:30:00 CEST' in response.text
    assert "<script" not in response.text
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    assert "script-src" not in response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_everything_is_escaped(client: FlaskClient, session: Session, frozen: None) -> None:
    scene = build_scene(session, NOW, host_name="<script>alert('x')</script>")
    html = _get(client, scene, scene.token).text
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "<b>bring card</b>" not in html
    assert "Dentist &lt;b&gt;bring card&lt;/b&gt;" in html


def _secret(html: str) -> str:
    match = re.search(r'<details class="secret">.*?</details>', html, re.S)
    assert match, "no folded connect values"
    return match.group(0)


def test_feed_token_appears_only_in_the_reconnect_link_and_the_folded_connect_values(
    client: FlaskClient, scene: Scene
) -> None:
    page = _get(client, scene, scene.token).text
    outside = page.replace(_secret(page), "")
    assert scene.token not in _text(outside)  # shown only when the host unfolds it
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert outside.count(scene.token) == 1
    assert [h for h in hrefs if scene.token in h] == [
        h for h in hrefs if "/connect/google?" in h and f"account={scene.reauth_account_id}" in h
    ]
    assert scene.other_token not in page
    assert scene.api_token not in page and TEST_ADMIN_TOKEN not in page


@pytest.mark.parametrize("which", ["admin", "api"])
def test_admin_and_api_tokens_are_refused_in_the_url(
    client: FlaskClient, scene: Scene, which: str
) -> None:
    """Issue 14: a URL carries only a feed token; an admin or API token there is refused
    (and so can never be copied into the page's links)."""
    token = TEST_ADMIN_TOKEN if which == "admin" else scene.api_token
    response = _get(client, scene, token)
    assert response.status_code == 401
    assert token not in response.text
    assert "Dana Example" not in response.text


@pytest.mark.parametrize("which", ["admin", "api"])
def test_a_bearer_token_is_not_copied_into_links(
    client: FlaskClient, scene: Scene, which: str
) -> None:
    token = TEST_ADMIN_TOKEN if which == "admin" else scene.api_token
    # Even with a feed token in the address too: a page opened with a header links nothing.
    page = client.get(
        f"/status/{scene.host_id}",
        query_string={"token": scene.token},
        headers={"Authorization": f"Bearer {token}"},
    ).text
    assert "Dana Example" in page
    assert token not in page and scene.token not in page
    assert "token=" not in page


def test_bearer_header_opens_the_page(client: FlaskClient, scene: Scene) -> None:
    response = client.get(
        f"/status/{scene.host_id}", headers={"Authorization": f"Bearer {scene.api_token}"}
    )
    assert response.status_code == 200
    assert "Dana Example" in response.text


def test_admin_header_opens_any_host(client: FlaskClient, scene: Scene) -> None:
    admin = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
    assert "Dana Example" in client.get(f"/status/{scene.host_id}", headers=admin).text
    other = client.get(f"/status/{scene.other_host_id}", headers=admin)
    assert other.status_code == 200
    assert "Other Host" in other.text
    assert "Dana Example" not in other.text and "Work" not in other.text


def test_a_rotated_feed_token_stops_at_once(
    client: FlaskClient, scene: Scene, session: Session
) -> None:
    from models import Host
    from models.registry import rotate_feed_token

    new = rotate_feed_token(session, session.get(Host, scene.host_id))
    session.commit()
    assert _get(client, scene, scene.token).status_code == 401
    assert _get(client, scene, new).status_code == 200


@pytest.mark.parametrize(("token", "problem"), [(None, "has no token"), ("nope", "not valid")])
def test_without_a_valid_token_a_small_html_page_says_how_to_open_it(
    client: FlaskClient, scene: Scene, token: str | None, problem: str
) -> None:
    response = _get(client, scene, token)
    assert response.status_code == 401
    assert response.mimetype == "text/html"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    text = _text(response.text)
    assert problem in text
    assert f"/status/{scene.host_id}?token=YOUR-TOKEN" in text
    assert "Dana Example" not in text and "Work" not in text
    if token:
        assert token not in response.text


def test_another_hosts_page_is_not_found(client: FlaskClient, scene: Scene) -> None:
    response = _get(client, scene, scene.other_token, scene.host_id)
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "Dana Example" not in response.text and "Work" not in response.text
    assert _get(client, scene, scene.token, scene.other_host_id).status_code == 404


@pytest.mark.parametrize("ref", ["999999", "abc", "1e3", "99999999999999999999999", "-1"])
def test_unknown_or_malformed_host_is_not_found(client: FlaskClient, scene: Scene, ref) -> None:
    response = client.get(f"/status/{ref}", headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"})
    assert response.status_code == 404
    assert response.mimetype == "text/html"


def test_host_without_calendars_says_so(
    client: FlaskClient, session: Session, frozen: None
) -> None:
    from models.registry import create_host, rotate_feed_token

    host, _api_token = create_host(session, "New Host", "Not/AZone")
    token = rotate_feed_token(session, host)
    session.commit()
    response = client.get(f"/status/{host.id}", query_string={"token": token})
    assert response.status_code == 200
    assert "No calendars are connected yet" in response.text
    assert "times in UTC" in _text(response.text)  # an unknown zone falls back to UTC
    assert response.text.count("Free all day") == 7


def test_stale_old_sync_is_said_in_days(client: FlaskClient, scene: Scene, session) -> None:
    state = session.get(SyncState, scene.healthy_id)
    state.last_success_at = NOW - timedelta(days=3)
    session.commit()
    assert "3 days ago" in _text(_card(_get(client, scene, scene.token).text, scene.healthy_id))


def _connect(html: str) -> str:
    match = re.search(r'<section class="connect".*?</section>', html, re.S)
    assert match, "no Connect to Cal.com block"
    return match.group(0)


def test_connect_to_calcom_gives_the_values_to_paste(
    client: FlaskClient, scene: Scene, settings
) -> None:
    """Issue 15: opened with the feed token, the page gives exactly what the feed-token answer
    gives (CalDAV URL, username, password, ICS URL), and those values work."""
    from rules.busy_feed import connection_values

    page = _get(client, scene, scene.token).text
    block = _connect(page)
    assert "Connect to Cal.com" in page and "CalDAV" in _text(block)
    expected = connection_values(settings.public_url, scene.host_id, scene.token)

    def value(css: str) -> str:
        match = re.search(rf'<code class="{css}">([^<]*)</code>', block)
        assert match, css
        return unescape(match.group(1))

    assert value("caldav-url") == expected["caldavUrl"]
    assert value("username") == expected["username"] == str(scene.host_id)
    secret = _secret(block)
    assert value("password-value") == expected["password"] == scene.token
    assert value("ics-url") == expected["icsUrl"]
    assert scene.token in secret and scene.other_token not in block
    assert scene.api_token not in page and TEST_ADMIN_TOKEN not in page
    # The values work: CalDAV with Basic auth, and the ICS feed by its URL's path.
    basic = base64.b64encode(f"{value('username')}:{value('password-value')}".encode()).decode()
    dav_path = urlsplit(value("caldav-url")).path
    propfind = client.open(
        dav_path, method="PROPFIND", headers={"Authorization": f"Basic {basic}", "Depth": "0"}
    )
    assert propfind.status_code == 207
    assert client.get(urlsplit(value("ics-url")).path).status_code == 200


@pytest.mark.parametrize("which", ["admin", "api"])
def test_connect_to_calcom_opened_with_a_header_says_how_to_get_the_password(
    client: FlaskClient, scene: Scene, which: str, settings
) -> None:
    token = TEST_ADMIN_TOKEN if which == "admin" else scene.api_token
    page = client.get(f"/status/{scene.host_id}", headers={"Authorization": f"Bearer {token}"}).text
    block = _connect(page)
    text = _text(block)
    assert settings.public_url.rstrip("/") + "/dav/" in text
    assert f"Username {scene.host_id}" in text
    assert f"POST /v1/hosts/{scene.host_id}/feed-token" in text
    assert f"calsync hosts feeds {scene.host_id}" in text
    assert "<details" not in block and "/feeds/" not in block
    assert token not in page and scene.token not in page


def _audit(session: Session, calendar_id: int, at: datetime, outcome: str, ranges=()) -> None:
    from models import Audit

    session.add(
        Audit(
            calendar_id=calendar_id,
            at=at,
            window_start=at,
            window_end=at + timedelta(days=14),
            matched={"matched": True, "deferred": None}.get(outcome, False),
            outcome=outcome,
            differences=[{"start": s, "end": e} for s, e in ranges],
            differing_seconds=3600.0 * len(ranges),
            policy_touched=0,
        )
    )
    session.commit()


def test_last_audit_is_shown_and_a_persistent_difference_says_differs_from_google(
    client: FlaskClient, scene: Scene, session: Session
) -> None:
    text = _text(_card(_get(client, scene, scene.token).text, scene.healthy_id))
    assert "Last audit Not audited yet" in text
    _audit(session, scene.healthy_id, NOW - timedelta(hours=3), "matched")
    _audit(session, scene.healthy_id, NOW - timedelta(hours=1), "deferred")  # no verdict
    card = _card(_get(client, scene, scene.token).text, scene.healthy_id)
    assert "Matched Google 3 hours ago" in _text(card) and "Up to date" in _text(card)
    assert 'class="badge tone-good"' in card

    _audit(
        session,
        scene.healthy_id,
        NOW - timedelta(minutes=20),
        "persistent",
        [("2025-06-11T07:00:00Z", "2025-06-11T08:00:00Z")],
    )
    card = _card(_get(client, scene, scene.token).text, scene.healthy_id)
    text = _text(card)
    assert 'class="badge tone-bad"' in card and "Differs from Google" in text
    assert "Differed from Google 20 minutes ago (60 minutes differing)" in text
    assert f"Wed 11 Jun 2025, 09:00 CEST{DASH}10:00" in text  # the range, in the host's zone
    assert "a full re-sync did not repair it" in text
    assert "clears when an audit matches" in text

    _audit(session, scene.healthy_id, NOW - timedelta(minutes=1), "matched")
    card = _card(_get(client, scene, scene.token).text, scene.healthy_id)
    assert "Differs from Google" not in _text(card) and 'class="badge tone-good"' in card
