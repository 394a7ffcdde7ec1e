"""Manual blocks: create, list, show, delete; limits; they count in busy reads at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from .conftest import ADMIN, z


def _busy(client, host, start: datetime, end: datetime) -> dict:
    answer = client.get(
        f"/v1/hosts/{host.id}/busy",
        query_string={"timeMin": z(start), "timeMax": z(end)},
        headers=host.headers,
    )
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def test_block_lifecycle_and_busy_at_once(client, hosts) -> None:
    a = hosts.a
    start = (datetime.now(UTC) + timedelta(days=5)).replace(minute=0, second=0, microsecond=0)
    window = (start - timedelta(hours=1), start + timedelta(hours=2))
    assert _busy(client, a, *window)["busy"] == []

    created = client.post(
        f"/v1/hosts/{a.id}/blocks",
        json={"start": z(start), "end": z(start + timedelta(minutes=5)), "note": "call"},
        headers=a.headers,
    )
    assert created.status_code == 201
    block = created.get_json()
    assert block["start"] == z(start) and block["note"] == "call" and block["hostId"] == a.id

    busy = _busy(client, a, *window)["busy"]
    assert busy == [
        {
            "start": z(start),
            "end": z(start + timedelta(minutes=5)),
            "sources": [{"type": "manual", "blockId": block["id"]}],
        }
    ]
    assert (
        client.get(f"/v1/hosts/{a.id}/blocks/{block['id']}", headers=a.headers).get_json() == block
    )
    listed = client.get(f"/v1/hosts/{a.id}/blocks", headers=a.headers).get_json()["blocks"]
    assert [b["id"] for b in listed] == [a.block_id, block["id"]]
    windowed = client.get(
        f"/v1/hosts/{a.id}/blocks",
        query_string={"timeMin": z(window[0]), "timeMax": z(window[1])},
        headers=a.headers,
    ).get_json()["blocks"]
    assert [b["id"] for b in windowed] == [block["id"]]

    assert (
        client.delete(f"/v1/hosts/{a.id}/blocks/{block['id']}", headers=a.headers).status_code
        == 204
    )
    assert _busy(client, a, *window)["busy"] == []
    gone = client.get(f"/v1/hosts/{a.id}/blocks/{block['id']}", headers=a.headers)
    assert gone.status_code == 404
    assert (
        client.delete(f"/v1/hosts/{a.id}/blocks/{block['id']}", headers=a.headers).status_code
        == 404
    )


def test_long_blocks_are_allowed(client, hosts) -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    answer = client.post(
        f"/v1/hosts/{hosts.a.id}/blocks",
        json={"start": z(start), "end": z(start + timedelta(days=366)), "note": "x" * 1000},
        headers=ADMIN,
    )
    assert answer.status_code == 201


@pytest.mark.parametrize(
    ("body", "name"),
    [
        ({"start": "2030-01-01T10:00:00Z", "end": "2030-01-01T10:00:59Z"}, "end"),
        ({"start": "2030-01-01T10:00:00Z", "end": "2030-01-01T09:00:00Z"}, "end"),
        ({"start": "2030-01-01T10:00:00Z", "end": "2031-01-03T10:00:00Z"}, "end"),
        ({"start": "2030-01-01T10:00:00", "end": "2030-01-01T11:00:00Z"}, "start"),
        ({"start": "2030-01-01T10:00:00Z"}, "end"),
        ({"start": 5, "end": "2030-01-01T11:00:00Z"}, "start"),
        (
            {"start": "2030-01-01T10:00:00Z", "end": "2030-01-01T11:00:00Z", "note": "x" * 1001},
            "note",
        ),
        ({"start": "2030-01-01T10:00:00Z", "end": "2030-01-01T11:00:00Z", "note": 3}, "note"),
        ({"start": "2030-01-01T10:00:00Z", "end": "2030-01-01T11:00:00Z", "id": 3}, "id"),
    ],
)
def test_block_validation_changes_nothing(client, hosts, snapshot, body, name) -> None:
    before = snapshot()
    answer = client.post(f"/v1/hosts/{hosts.a.id}/blocks", json=body, headers=hosts.a.headers)
    assert answer.status_code == 400, answer.get_json()
    error = answer.get_json()
    assert error["error"]["message"].startswith(name)
    assert snapshot() == before


def test_list_window_is_validated(client, hosts) -> None:
    answer = client.get(
        f"/v1/hosts/{hosts.a.id}/blocks",
        query_string={"timeMin": "2030-01-01T00:00:00Z"},
        headers=ADMIN,
    )
    assert answer.status_code == 400
    assert answer.get_json()["parameter"] == "timeMax"
