"""Issue 15, read-only CalDAV, driven by the Python `caldav` client library against the app
served over real HTTP: discovery from the server URL, `calendars()`, `search(..., expand=
True)` and `freebusy_request` give exactly what `/v1/.../busy` answers; plus the protocol's
edges (auth, writes, depth, bad bodies, ctag/etag, sync-collection)."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta

import caldav
import requests
from icalendar import Calendar

from .conftest import SeededHost
from .feed_helpers import add_realistic_busy_set, api_busy, ical_busy, merged


def credentials(client, host: SeededHost) -> tuple[str, str]:
    answer = client.post(f"/v1/hosts/{host.id}/feed-token", headers=host.headers)
    return str(host.id), answer.get_json()["feedToken"]


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def window() -> tuple[datetime, datetime]:
    now = datetime.now(UTC).replace(microsecond=0)
    return now - timedelta(hours=23), now + timedelta(days=89)


def test_caldav_client_discovers_and_reads_the_busy_time(client, hosts, session, server) -> None:
    add_realistic_busy_set(session, client, hosts.a)
    user, password = credentials(client, hosts.a)
    dav = caldav.DAVClient(url=server + "/.well-known/caldav", username=user, password=password)
    principal = dav.principal()
    [calendar] = principal.calendars()
    assert calendar.get_display_name() == "Busy (calsync)"
    start, end = window()
    found = calendar.search(start=start, end=end, event=True, expand=True)
    parsed = [Calendar.from_ical(o.data) for o in found]
    for each in parsed:
        assert len(each.walk("VEVENT")) == 1  # one flattened VEVENT per resource
    expected = api_busy(client, hosts.a, start, end)
    assert len(expected) >= 5
    assert ical_busy(parsed, start, end) == expected
    # Two weeks, as Cal.com asks.
    two_weeks = (start + timedelta(days=2), start + timedelta(days=16))
    found = calendar.search(start=two_weeks[0], end=two_weeks[1], event=True, expand=True)
    assert ical_busy([Calendar.from_ical(o.data) for o in found], *two_weeks) == api_busy(
        client, hosts.a, *two_weeks
    )
    # free-busy-query: one VFREEBUSY with the merged periods.
    answer = calendar.freebusy_request(start, end)
    [freebusy] = Calendar.from_ical(answer.data).walk("VFREEBUSY")
    periods = [(p.dt[0], p.dt[1]) for p in freebusy.get("FREEBUSY")]
    assert periods == merged(periods, start, end) == expected


def test_discovery_by_hand_as_tsdav_does(client, hosts, server) -> None:
    user, password = credentials(client, hosts.a)
    auth = basic(user, password)
    first = requests.request(
        "PROPFIND", server + "/.well-known/caldav", headers=auth, allow_redirects=False
    )
    assert first.status_code == 301 and first.headers["Location"].endswith("/dav/")
    body = (
        '<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"'
        ' xmlns:cs="http://calendarserver.org/ns/" xmlns:ca="http://apple.com/ns/ical/"><d:prop>'
        "<d:displayname/><d:resourcetype/><c:supported-calendar-component-set/><cs:getctag/>"
        "<d:sync-token/><c:calendar-timezone/><c:calendar-description/><ca:calendar-color/>"
        "<d:supported-report-set/></d:prop></d:propfind>"
    )
    home = requests.request(
        "PROPFIND",
        f"{server}/dav/calendars/{user}/",
        headers={**auth, "Depth": "1"},
        data=body,
    )
    assert home.status_code == 207
    text = home.text
    for needle in (
        "Busy (calsync)",
        '<c:comp name="VEVENT"',
        "<c:calendar />",
        "getctag>",
        "urn:calsync:sync:",
        "calendar-query",
    ):
        assert needle in text, needle
    options = requests.options(server + "/dav/")
    assert "calendar-access" in options.headers["DAV"]


def _dav(server: str, method: str, path: str, auth: dict, body: str = "", **headers: str):
    return requests.request(method, server + path, headers={**auth, **headers}, data=body)


def test_auth_writes_and_bad_input_are_4xx_never_5xx(client, hosts, server) -> None:
    user, password = credentials(client, hosts.a)
    auth = basic(user, password)
    b_user, _ = credentials(client, hosts.b)
    for wrong in (
        basic(user, "csf_wrong"),
        basic(b_user, password),
        basic(user, hosts.a.token),
        {},
    ):
        answer = _dav(server, "PROPFIND", "/dav/", wrong, Depth="0")
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == 'Basic realm="calsync"'
        assert answer.content == b""
    # Another host's paths, with A's credentials: 404.
    assert _dav(server, "PROPFIND", f"/dav/calendars/{b_user}/", auth, Depth="0").status_code == 404
    calendar = f"/dav/calendars/{user}/busy/"
    for method in ("PUT", "DELETE", "MKCALENDAR", "PROPPATCH"):
        answer = _dav(server, method, calendar + "x.ics", auth, "BEGIN:VCALENDAR")
        assert answer.status_code == 403 and "need-privileges" in answer.text, method
    infinity = _dav(server, "PROPFIND", calendar, auth, Depth="infinity")
    assert infinity.status_code == 403 and "propfind-finite-depth" in infinity.text
    assert _dav(server, "REPORT", calendar, auth, "<not xml", Depth="1").status_code == 400
    bomb = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>'
    assert _dav(server, "REPORT", calendar, auth, bomb, Depth="1").status_code == 400
    huge = "<d:propfind xmlns:d='DAV:'>" + " " * 200_000 + "</d:propfind>"
    assert _dav(server, "PROPFIND", calendar, auth, huge, Depth="0").status_code == 413
    ten_years = (
        '<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
        "<d:prop><d:getetag/><c:calendar-data/></d:prop><c:filter>"
        '<c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT">'
        '<c:time-range start="20200101T000000Z" end="20300101T000000Z"/>'
        "</c:comp-filter></c:comp-filter></c:filter></c:calendar-query>"
    )
    bounded = _dav(server, "REPORT", calendar, auth, ten_years, Depth="1")
    assert bounded.status_code == 207 and bounded.text.count("<d:response>") == 2
    assert "HTTP/1.1 404" not in bounded.text  # (an etag may contain "404")
    bad_time = ten_years.replace("20200101T000000Z", "yesterday")
    assert _dav(server, "REPORT", calendar, auth, bad_time, Depth="1").status_code == 400


def test_ctag_etag_and_sync_collection_follow_the_busy_set(client, hosts, server) -> None:
    user, password = credentials(client, hosts.a)
    auth = basic(user, password)
    calendar = f"/dav/calendars/{user}/busy/"
    sync = (
        '<d:sync-collection xmlns:d="DAV:"><d:sync-token>{}</d:sync-token>'
        "<d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>"
    )

    def ctag() -> str:
        text = _dav(server, "PROPFIND", calendar, auth, "", Depth="0").text
        return text.split("getctag>")[1].split("<")[0]

    first = _dav(server, "REPORT", calendar, auth, sync.format(""), Depth="1")
    assert first.status_code == 207 and first.text.count("<d:response>") == 2
    token = first.text.split("<d:sync-token>")[-1].split("<")[0]
    same = _dav(server, "REPORT", calendar, auth, sync.format(token), Depth="1")
    assert same.status_code == 207 and "<d:response>" not in same.text
    before = ctag()
    assert ctag() == before
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    block = client.post(
        f"/v1/hosts/{hosts.a.id}/blocks",
        json={"start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat()},
        headers=hosts.a.headers,
    ).get_json()
    assert ctag() != before
    stale_token = _dav(server, "REPORT", calendar, auth, sync.format(token), Depth="1")
    assert stale_token.status_code == 403 and "valid-sync-token" in stale_token.text
    resource = f"{calendar}manual-{block['id']}.ics"
    got = _dav(server, "GET", resource, auth)
    assert got.status_code == 200 and "SUMMARY:Busy" in got.text
    assert (
        _dav(server, "GET", resource, auth, **{"If-None-Match": got.headers["ETag"]}).status_code
        == 304
    )
    client.delete(f"/v1/hosts/{hosts.a.id}/blocks/{block['id']}", headers=hosts.a.headers)
    assert ctag() == before
    assert _dav(server, "GET", resource, auth).status_code == 404


def test_multiget_answers_known_objects_only_never_a_404_response(client, hosts, server) -> None:
    user, password = credentials(client, hosts.a)
    calendar = f"/dav/calendars/{user}/busy/"
    known = f"{calendar}{hosts.a.calendar_id}-busy-1.ics"
    body = (
        '<c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
        "<d:prop><d:getetag/><c:calendar-data/></d:prop>"
        f"<d:href>{known}</d:href><d:href>{calendar}manual-999999.ics</d:href>"
        f"<d:href>/dav/calendars/{hosts.b.id}/busy/manual-{hosts.b.block_id}.ics</d:href>"
        "</c:calendar-multiget>"
    )
    answer = _dav(server, "REPORT", calendar, basic(user, password), body, Depth="1")
    assert answer.status_code == 207
    # Every status in the answer, not a bare "404" anywhere: an ETag's hex may hold those digits.
    statuses = re.findall(r"<d:status>([^<]*)</d:status>", answer.text)
    assert answer.text.count("<d:response>") == 1 and statuses == ["HTTP/1.1 200 OK"]
    assert known in answer.text and "SUMMARY:Busy" in answer.text
