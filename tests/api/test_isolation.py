"""Host isolation: with host B's token, every endpoint treats host A's resources as absent
(404, or notFound in freeBusy), leaks nothing of them, and changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from .conftest import TwoHosts, seeded_hour, z

WINDOW = {"timeMin": "2030-01-01T00:00:00Z", "timeMax": "2030-01-02T00:00:00Z"}
CREDENTIALS = {"client_id": "c", "client_secret": "s", "refresh_token": "r"}

# (method, path template, keyword arguments); {a}/{b} are host ids, {cal_a} and {block_a}
# host A's calendar and block.
REQUESTS = [
    ("GET", "/v1/hosts/{a}", {}),
    ("PATCH", "/v1/hosts/{a}", {"json": {"busyPolicy": {"declinedBusy": True}}}),
    ("PATCH", "/v1/hosts/{a}", {"json": {"timeZone": "Asia/Tokyo"}}),
    ("GET", "/v1/hosts/{a}/calendars", {}),
    ("DELETE", "/v1/hosts/{a}/calendars/{cal_a}", {}),
    ("DELETE", "/v1/hosts/{b}/calendars/{cal_a}", {}),
    ("GET", "/v1/calendars/{cal_a}/sync-status", {}),
    ("GET", "/v1/hosts/{a}/busy", {"query_string": WINDOW}),
    ("GET", "/v1/hosts/{a}/busy", {"query_string": {**WINDOW, "strict": "true"}}),
    ("GET", "/v1/hosts/{a}/blocks", {}),
    (
        "POST",
        "/v1/hosts/{a}/blocks",
        {"json": {"start": "2030-01-01T10:00:00Z", "end": "2030-01-01T11:00:00Z"}},
    ),
    ("GET", "/v1/hosts/{a}/blocks/{block_a}", {}),
    ("DELETE", "/v1/hosts/{a}/blocks/{block_a}", {}),
    ("GET", "/v1/hosts/{b}/blocks/{block_a}", {}),
    ("DELETE", "/v1/hosts/{b}/blocks/{block_a}", {}),
    ("GET", "/v1/hosts/{a}/explain", {"query_string": {"at": "2030-01-01T10:00:00Z"}}),
    ("GET", "/status/{a}", {}),
    # Last of the writes: a new calendar is not synced yet, so strict busy reads would 503.
    (
        "POST",
        "/v1/hosts/{a}/calendars",
        {"json": {"googleCalendarId": "x@example.com", "credentials": CREDENTIALS}},
    ),
]


def _fill(template: str, hosts: TwoHosts) -> str:
    return template.format(
        a=hosts.a.id, b=hosts.b.id, cal_a=hosts.a.calendar_id, block_a=hosts.a.block_id
    )


@pytest.mark.parametrize(("method", "template", "kwargs"), REQUESTS)
def test_other_hosts_resources_are_404(
    client, hosts, tasks, snapshot, method, template, kwargs
) -> None:
    before = snapshot()
    answer = client.open(_fill(template, hosts), method=method, headers=hosts.b.headers, **kwargs)
    assert answer.status_code == 404, (answer.status_code, answer.get_data(as_text=True)[:300])
    text = answer.get_data(as_text=True)
    assert "alice" not in text and "busy-1" not in text and "dentist" not in text
    if answer.is_json:
        assert answer.get_json()["error"]["code"] == "not_found"
    assert snapshot() == before
    assert tasks.calls == []


def test_the_same_requests_work_with_the_owners_token(client, hosts, tasks) -> None:
    """Proves the 404s above come from isolation, not from broken requests."""
    # Deletions last, so every other request still finds what it reads.
    for method, template, kwargs in sorted(REQUESTS, key=lambda r: r[0] == "DELETE"):
        if template.startswith("/v1/hosts/{b}"):
            continue
        answer = client.open(
            _fill(template, hosts), method=method, headers=hosts.a.headers, **kwargs
        )
        assert answer.status_code < 300, (method, template, answer.get_data(as_text=True)[:300])


def test_free_busy_never_reveals_another_hosts_calendar(client, hosts, snapshot) -> None:
    before = snapshot()
    start = seeded_hour()
    answer = client.post(
        "/v1/freeBusy",
        json={
            "timeMin": z(start),
            "timeMax": z(start + timedelta(hours=3)),
            "items": [{"id": "alice@example.com"}, {"id": str(hosts.a.calendar_id)}],
        },
        headers=hosts.b.headers,
    )
    assert answer.status_code == 200
    for entry in answer.get_json()["calendars"].values():
        assert entry == {"errors": [{"domain": "global", "reason": "notFound"}], "busy": []}
    assert snapshot() == before


def test_host_token_cannot_create_hosts(client, hosts, snapshot) -> None:
    before = snapshot()
    answer = client.post("/v1/hosts", json={"name": "mallory"}, headers=hosts.b.headers)
    assert answer.status_code == 403
    assert snapshot() == before
