"""Issue 15, proof with the real clients Cal.com runs: tsdav (its CalDAV app) and ical.js (its
parser, also of its ICS-feed app), pinned in tests/clients/package-lock.json and driven by
Node scripts there against the app on a real HTTP server. What they compute as busy equals
`/v1/.../busy` for the same window.

Outside CI the tests skip when `node` or `tests/clients/node_modules` (`npm ci` there) is
missing; in CI (`CI=true`, `.ci/run` installs them) that is a failure."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from .conftest import SeededHost, z
from .feed_helpers import Span, add_realistic_busy_set, api_busy, merged, parse_z

CLIENTS = Path(__file__).resolve().parents[1] / "clients"


def _node() -> str:
    node = shutil.which("node")
    missing = []
    if node is None:
        missing.append("`node` (Debian package `nodejs`)")
    if (
        not (CLIENTS / "node_modules" / "tsdav").is_dir()
        or not (CLIENTS / "node_modules" / "ical.js").is_dir()
    ):
        missing.append("tests/clients/node_modules (run `npm ci` in tests/clients)")
    if missing:
        message = "tsdav/ical.js client tests need " + " and ".join(missing)
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    assert node is not None
    return node


def run_script(script: str, *args: str) -> dict:
    done = subprocess.run(
        [_node(), str(CLIENTS / script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=CLIENTS,
    )
    assert done.returncode == 0, f"{script} failed ({done.returncode}):\n{done.stderr}"
    return json.loads(done.stdout)


def spans(answer: dict) -> list[Span]:
    return [(parse_z(b["start"]), parse_z(b["end"])) for b in answer["busy"]]


def feed_credentials(client, host: SeededHost) -> dict:
    answer = client.post(f"/v1/hosts/{host.id}/feed-token", headers=host.headers)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def windows() -> list[tuple[datetime, datetime]]:
    """Cal.com asks for the weeks its booking page shows; and the feed's whole window."""
    now = datetime.now(UTC).replace(microsecond=0)
    return [
        (now, now + timedelta(days=14)),
        (now + timedelta(days=2), now + timedelta(days=16)),
        (now - timedelta(hours=23), now + timedelta(days=89)),
    ]


def test_tsdav_as_calcom_reads_the_busy_time_of_the_api(client, hosts, session, server) -> None:
    add_realistic_busy_set(session, client, hosts.a)
    values = feed_credentials(client, hosts.a)
    # The values to paste, with the test server's address in place of the public URL.
    caldav_url = server + urlsplit(values["caldavUrl"]).path
    for start, end in windows():
        answer = run_script(
            "busy_via_tsdav.mjs",
            caldav_url,
            values["username"],
            values["password"],
            z(start),
            z(end),
        )
        [calendar] = answer["calendars"]
        assert calendar["displayName"] == "Busy (calsync)"
        expected = api_busy(client, hosts.a, start, end)
        assert len(expected) >= 3
        assert merged(spans(answer), start, end) == expected, (start, end)
    # A person who pastes only the server's address: tsdav finds /dav/ by /.well-known/caldav.
    start, end = windows()[0]
    answer = run_script(
        "busy_via_tsdav.mjs", server + "/", values["username"], values["password"], z(start), z(end)
    )
    assert merged(spans(answer), start, end) == api_busy(client, hosts.a, start, end)


def test_tsdav_with_a_wrong_password_fails_loudly(client, hosts, server) -> None:
    values = feed_credentials(client, hosts.a)
    now = datetime.now(UTC)
    done = subprocess.run(
        [
            _node(),
            str(CLIENTS / "busy_via_tsdav.mjs"),
            server + "/dav/",
            values["username"],
            "csf_wrong",
            z(now),
            z(now + timedelta(days=14)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=CLIENTS,
    )
    assert done.returncode != 0


def test_icaljs_as_calcom_feed_app_reads_the_busy_time_of_the_api(
    client, hosts, session, server
) -> None:
    add_realistic_busy_set(session, client, hosts.a)
    values = feed_credentials(client, hosts.a)
    feed_url = server + urlsplit(values["icsUrl"]).path
    now = datetime.now(UTC).replace(microsecond=0)
    # Inside the feed's window (now - 1 day .. now + 90 days, moving once a minute).
    inner = (now - timedelta(days=1) + timedelta(minutes=2), now + timedelta(days=90, minutes=-2))
    for start, end in [*windows()[:2], inner]:
        answer = run_script("busy_via_icaljs.mjs", feed_url, z(start), z(end))
        assert answer["name"] == "Busy (calsync)"
        # The ICS-feed app keeps every VEVENT whatever the window; clip as a booking page does.
        assert merged(spans(answer), start, end) == api_busy(client, hosts.a, start, end)
