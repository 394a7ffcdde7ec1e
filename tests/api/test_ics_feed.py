"""Issue 15, the ICS feed: `GET /feeds/{host}/{feedToken}.ics` serves the host's busy time
(every calendar plus manual blocks) as flattened VEVENTs that a subscriber (icalendar +
recurring-ical-events here, as Cal.com does with ical.js) turns into exactly what
`/v1/.../busy` answers; ETag/304; freshness and strict mode; a VFREEBUSY on request; and a
wrong or rotated token answers 404."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from icalendar import Calendar

from models import SyncState

from .conftest import ADMIN, SeededHost
from .feed_helpers import add_realistic_busy_set, api_busy, ical_busy, merged


def feed_url(client, host: SeededHost) -> str:
    answer = client.post(f"/v1/hosts/{host.id}/feed-token", headers=host.headers)
    assert answer.status_code == 200
    token = answer.get_json()["feedToken"]
    return f"/feeds/{host.id}/{token}.ics"


def inner_window() -> tuple[datetime, datetime]:
    """A window inside the feed's (now - 1 day, now + 90 days, moving once a minute)."""
    now = datetime.now(UTC).replace(microsecond=0)
    return now - timedelta(days=1) + timedelta(minutes=2), now + timedelta(days=90, minutes=-2)


def test_feed_gives_the_same_busy_time_as_the_api(client, hosts, session) -> None:
    add_realistic_busy_set(session, client, hosts.a)
    url = feed_url(client, hosts.a)
    answer = client.get(url)
    assert answer.status_code == 200
    assert answer.content_type == "text/calendar; charset=utf-8"
    start, end = inner_window()
    parsed = Calendar.from_ical(answer.data)
    expected = api_busy(client, hosts.a, start, end)
    assert len(expected) >= 5
    assert ical_busy([parsed], start, end) == expected
    # Another window, a few days of it: the same.
    few_start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    assert ical_busy([parsed], few_start, few_start + timedelta(days=14)) == api_busy(
        client, hosts.a, few_start, few_start + timedelta(days=14)
    )


def test_feed_shows_busy_and_source_only(client, hosts, session) -> None:
    add_realistic_busy_set(session, client, hosts.a)
    body = client.get(feed_url(client, hosts.a)).data
    text = body.decode()
    calendar = Calendar.from_ical(body)
    assert str(calendar["X-WR-CALNAME"]) == "Busy (calsync)"
    assert str(calendar["PRODID"]) and str(calendar["VERSION"]) == "2.0"
    assert "X-PUBLISHED-TTL:PT5M" in text
    assert "REFRESH-INTERVAL;VALUE=DURATION:PT5M" in text
    assert (
        "All calendars are up to date" in str(calendar["X-WR-CALDESC"])
        and "X-CALSYNC-STALE" not in text
    )
    events = calendar.walk("VEVENT")
    uids = {str(e["UID"]) for e in events}
    a = hosts.a
    # one VEVENT per source: 8 calendar blocks, the seeded manual block and the API's one
    assert len(events) == len(uids) == 10
    assert f"{a.calendar_id}-busy-1@calsync" in uids
    assert f"manual-{a.block_id}@calsync" in uids
    assert f"{a.calendar_id}-declined-1@calsync" not in uids  # declined: never busy
    for event in events:
        assert str(event["SUMMARY"]) == "Busy" and str(event["TRANSP"]) == "OPAQUE"
        assert not {"DESCRIPTION", "LOCATION", "ATTENDEE", "ORGANIZER", "RRULE"} & set(event)
        [category] = event["CATEGORIES"].cats
        is_manual = str(event["UID"]).startswith("manual-")
        assert (
            category == "manual"
            if is_manual
            else category
            in {
                "alice@example.com",
                "work@example.com",
            }
        )
    for line in text.splitlines():
        if line.startswith(("DTSTART", "DTEND", "DTSTAMP")):
            assert line.endswith("Z") and ";" not in line.split(":")[0]
    assert "dentist" not in text and "meeting" not in text  # no notes, no titles


def test_etag_answers_304_and_changes_exactly_with_the_busy_set(client, hosts) -> None:
    url = feed_url(client, hosts.a)
    first = client.get(url)
    etag = first.headers["ETag"]
    assert etag.startswith('"') and first.headers["Last-Modified"]
    assert "no-cache" in first.headers["Cache-Control"]
    assert "private" in first.headers["Cache-Control"]
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b"" and again.headers["ETag"] == etag
    assert client.get(url).data == first.data  # same set, same bytes

    start = datetime.now(UTC) + timedelta(days=4)
    block = client.post(
        f"/v1/hosts/{hosts.a.id}/blocks",
        json={"start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat()},
        headers=hosts.a.headers,
    ).get_json()
    changed = client.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert f"manual-{block['id']}@calsync".encode() in changed.data

    deleted = client.delete(f"/v1/hosts/{hosts.a.id}/blocks/{block['id']}", headers=ADMIN)
    assert deleted.status_code == 204
    back = client.get(url, headers={"If-None-Match": etag})
    assert back.status_code == 304  # the set is what it was: so is the tag
    assert client.get(url).data == first.data


def test_rotated_wrong_and_other_hosts_tokens_answer_404(client, hosts) -> None:
    old = feed_url(client, hosts.a)
    new = feed_url(client, hosts.a)
    assert client.get(new).status_code == 200
    old_answer = client.get(old)
    assert old_answer.status_code == 404
    b_url = feed_url(client, hosts.b)
    b_token = b_url.rsplit("/", 1)[1]
    unknown_host = 999_999
    for url in (
        f"/feeds/{hosts.a.id}/{b_token}",  # another host's token
        f"/feeds/{unknown_host}/{b_token}",  # no such host
        f"/feeds/{hosts.a.id}/csf_wrong.ics",
        f"/feeds/{hosts.a.id}/{hosts.a.token}.ics",  # the API token is not a feed token
        f"/feeds/{hosts.a.id}/{new.rsplit('/', 1)[1].removesuffix('.ics')}",  # no .ics
        f"/feeds/{hosts.a.id}/{'x' * 5000}.ics",
        f"/feeds/abc/{b_token}",
    ):
        answer = client.get(url)
        assert answer.status_code == 404, url
        assert answer.get_json()["error"]["code"] == "not_found"
    # The same answer for a wrong token and for an unknown host: nothing to probe.
    assert client.get(f"/feeds/{unknown_host}/{b_token}").data == old_answer.data


def _make_stale(session, calendar_id: int) -> None:
    state = session.get(SyncState, calendar_id)
    state.dirty_since = datetime.now(UTC) - timedelta(minutes=10)
    session.commit()


def test_stale_calendar_is_named_and_strict_answers_503(client, hosts, session) -> None:
    url = feed_url(client, hosts.a)
    assert client.get(url + "?strict=1").status_code == 200
    fresh_etag = client.get(url).headers["ETag"]
    _make_stale(session, hosts.a.calendar_id)
    answer = client.get(url, headers={"If-None-Match": fresh_etag})
    assert answer.status_code == 200  # freshness changed: so did the tag
    calendar = Calendar.from_ical(answer.data)
    assert str(calendar["X-CALSYNC-STALE"]) == "alice@example.com lagging"
    description = str(calendar["X-WR-CALDESC"])
    assert "WARNING" in description and "alice@example.com (lagging)" in description
    assert "may be missing" in description
    by_uid = {str(e["UID"]): e for e in calendar.walk("VEVENT")}
    assert str(by_uid[f"{hosts.a.calendar_id}-busy-1@calsync"]["X-CALSYNC-STALE"]) == "TRUE"
    assert "X-CALSYNC-STALE" not in by_uid[f"manual-{hosts.a.block_id}@calsync"]

    strict = client.get(url + "?strict=1")
    assert strict.status_code == 503
    assert strict.headers["Retry-After"] == "30"
    assert strict.get_json()["error"]["code"] == "stale_calendars"
    # Another host's calendars do not count.
    assert client.get(feed_url(client, hosts.b) + "?strict=1").status_code == 200


@pytest.mark.parametrize("flag", ["1", "true"])
def test_freebusy_is_one_vfreebusy_equal_to_busy(client, hosts, session, flag) -> None:
    add_realistic_busy_set(session, client, hosts.a)
    answer = client.get(feed_url(client, hosts.a) + f"?freebusy={flag}")
    assert answer.status_code == 200
    calendar = Calendar.from_ical(answer.data)
    assert not calendar.walk("VEVENT")
    [freebusy] = calendar.walk("VFREEBUSY")
    start, end = freebusy.decoded("DTSTART"), freebusy.decoded("DTEND")
    assert timedelta(days=90, hours=23) < end - start <= timedelta(days=91)
    periods = []
    for prop in freebusy.get("FREEBUSY"):
        assert prop.params["FBTYPE"] == "BUSY"
        periods.append(prop.dt)
    spans = [(s, e) for s, e in periods]
    assert spans == merged(spans, start, end)  # merged, ordered, inside the window
    assert spans == api_busy(client, hosts.a, start, end)
    assert answer.headers["ETag"] != client.get(feed_url(client, hosts.a)).headers["ETag"]


def test_feed_token_answer_gives_what_a_booking_tool_needs(client, hosts, settings) -> None:
    answer = client.post(f"/v1/hosts/{hosts.a.id}/feed-token", headers=hosts.a.headers)
    assert answer.headers["Cache-Control"] == "no-store"
    values = answer.get_json()
    token = values["feedToken"]
    base = settings.public_url.rstrip("/")
    assert values["caldavUrl"] == f"{base}/dav/"
    assert (values["username"], values["password"]) == (str(hosts.a.id), token)
    assert values["icsUrl"] == f"{base}/feeds/{hosts.a.id}/{token}.ics"
    assert client.get(values["icsUrl"].removeprefix(base)).status_code == 200
