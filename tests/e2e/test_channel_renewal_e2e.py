"""Issue 14, item 8, on real processes: with short channel lifetimes (TTL 12 s, renewed 6 s
before expiry) beat's renewal check follows the renew-ahead, so across several renewals
there is no moment without a live channel at Google (here: the emulator)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from core.settings import Settings
from tests.backends import Backend

from .conftest import Stack, attach_watched, running_stack, wait_for, watching_and_synced

pytestmark = pytest.mark.e2e

TTL = 12
RENEW_BEFORE = 6
RENEWALS = 3  # observed until this many channels replaced the first one
SAMPLE_EVERY = 0.1


@pytest.fixture(scope="module")
def stack(
    backend: Backend, base_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with running_stack(
        backend,
        base_settings,
        tmp_path_factory,
        "e2e-renewal-logs",
        channel_ttl_seconds=TTL,
        renew_before_seconds=RENEW_BEFORE,
    ) as running:
        yield running


def live_channels(stack: Stack, google_calendar_id: str) -> list[dict]:
    return [
        c
        for c in stack.emulator.control.channels()
        if c["calendarId"] == google_calendar_id and not c["stopped"] and not c["expired"]
    ]


def test_no_moment_without_a_live_channel_across_renewals(live: Stack) -> None:
    cal = attach_watched(live, "renewals@example.com")
    wait_for(lambda: watching_and_synced([cal.calendar_id]), 30, "the first channel", live)
    uncovered: list[datetime] = []
    seen: set[str] = set()
    # Each channel lives 12 s and is replaced ~6 s before it ends; a renewal that never
    # comes shows as uncovered samples once the channel expires, then as this deadline.
    deadline = time.monotonic() + (RENEWALS + 1) * TTL
    while len(seen) < 1 + RENEWALS and time.monotonic() < deadline:
        channels = live_channels(live, cal.google_calendar_id)
        seen.update(c["id"] for c in channels)
        if not channels:
            uncovered.append(datetime.now(UTC))
        time.sleep(SAMPLE_EVERY)
    assert len(seen) >= 1 + RENEWALS, f"only {len(seen)} channels were opened"
    uncovered_seconds = len(uncovered) * SAMPLE_EVERY
    assert not uncovered, (
        f"{len(uncovered)} samples ({uncovered_seconds:.1f} s) without a live channel, "
        f"first at {uncovered[0].isoformat()}\n{live.logs_tail()}"
    )
