"""Incremental sync through the real client: replay equals a fresh listing, pagination, 410."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from googleapiclient.errors import HttpError
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    multiple,
    rule,
    run_state_machine_as_test,
)

from emulator import EmulatorServer
from tests.emulator.conftest import (
    ACCOUNT_EMAIL,
    CALENDAR_TZ,
    CalendarHelper,
    make_service,
    timed,
)

BERLIN = ZoneInfo(CALENDAR_TZ)
# Two bases: plain winter weeks, and the days around the 2027-03-28 DST change.
BASE_DAYS = (datetime(2026, 12, 7, tzinfo=BERLIN), datetime(2027, 3, 22, tzinfo=BERLIN))


def _key(item: dict[str, Any]) -> tuple[Any, ...]:
    return (
        item.get("start"),
        item.get("end"),
        item.get("status"),
        item.get("transparency", "opaque"),
    )


def _apply(
    state: dict[str, dict[str, Any]],
    items: list[dict[str, Any]],
    window: tuple[datetime, datetime] | None = None,
) -> None:
    """Replay changes; with a window, keep only events overlapping it (filtered locally)."""
    for item in items:
        if item["status"] == "cancelled" or (
            window is not None
            and not (_parse(item["end"]) > window[0] and _parse(item["start"]) < window[1])
        ):
            state.pop(item["id"], None)
        else:
            state[item["id"]] = item


def _local(base: int, day: int, hour: int) -> datetime:
    return (BASE_DAYS[base] + timedelta(days=day)).replace(hour=hour)


def _utc_stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _parse(value: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(value["dateTime"])


class _SyncMachine(RuleBasedStateMachine):
    """Random edits interleaved with incremental consumer steps; replay must equal a listing.

    Each example gets a fresh calendar (cheaper than a reset and a new client). The
    subclass syncs like the product: a windowed full sync, showDeleted, local filtering.
    """

    window: tuple[datetime, datetime] | None = None
    show_deleted = False

    server: EmulatorServer
    service: Any
    counter = itertools.count()

    singles = Bundle("singles")
    series = Bundle("series")

    def __init__(self) -> None:
        super().__init__()
        calendar_id = f"prop{next(self.counter)}@example.com"
        self.server.control.create_calendar(calendar_id, CALENDAR_TZ, ACCOUNT_EMAIL)
        self.cal = CalendarHelper(self.service, self.server.control, calendar_id, CALENDAR_TZ)
        self.freq: dict[str, str] = {}
        self.state: dict[str, dict[str, Any]] = {}
        self.sync_token = ""

    def _window(self) -> dict[str, Any]:
        if self.window is None:
            return {}
        return {"timeMin": self.window[0].isoformat(), "timeMax": self.window[1].isoformat()}

    @initialize()
    def full_sync(self) -> None:
        items, self.sync_token = self.cal.list_all(
            singleEvents=True, maxResults=3, showDeleted=self.show_deleted, **self._window()
        )
        _apply(self.state, items, self.window)

    # ----- single events -------------------------------------------------------------
    @rule(
        target=singles,
        base=st.integers(0, 1),
        day=st.integers(0, 10),
        hour=st.integers(7, 18),
        hours=st.integers(1, 3),
        transparent=st.booleans(),
    )
    def insert_single(self, base: int, day: int, hour: int, hours: int, transparent: bool) -> str:
        start = _local(base, day, hour)
        body = timed(start.isoformat(), (start + timedelta(hours=hours)).isoformat())
        if transparent:
            body["transparency"] = "transparent"
        return self.cal.insert(body)["id"]

    @rule(event_id=singles, shift=st.integers(-3, 3), transparent=st.booleans())
    def patch_single(self, event_id: str, shift: int, transparent: bool) -> None:
        event = self.cal.get(event_id)
        start, end = _parse(event["start"]), _parse(event["end"])
        self.cal.patch(
            event_id,
            {
                "start": {
                    "dateTime": (start + timedelta(hours=shift)).isoformat(),
                    "timeZone": CALENDAR_TZ,
                },
                "end": {
                    "dateTime": (end + timedelta(hours=shift)).isoformat(),
                    "timeZone": CALENDAR_TZ,
                },
                "transparency": "transparent" if transparent else "opaque",
            },
        )

    @rule(event_id=consumes(singles))
    def delete_single(self, event_id: str) -> None:
        self.cal.delete(event_id)

    # ----- recurring series ----------------------------------------------------------
    @rule(
        target=series,
        base=st.integers(0, 1),
        day=st.integers(0, 6),
        hour=st.integers(7, 18),
        freq=st.sampled_from(["DAILY", "WEEKLY", "MONTHLY"]),
        count=st.integers(1, 6),
        until=st.booleans(),
        exdate=st.booleans(),
    )
    def insert_series(
        self, base: int, day: int, hour: int, freq: str, count: int, until: bool, exdate: bool
    ) -> str:
        start = _local(base, day, hour)
        step = {
            "DAILY": timedelta(days=1),
            "WEEKLY": timedelta(weeks=1),
            "MONTHLY": timedelta(days=31),
        }[freq]
        if until:
            rule_line = f"RRULE:FREQ={freq};UNTIL={_utc_stamp(start + step * (count - 1))}"
        else:
            rule_line = f"RRULE:FREQ={freq};COUNT={count}"
        recurrence = [rule_line]
        if exdate and count > 2 and freq == "DAILY":
            second = start + timedelta(days=1)
            recurrence.append(f"EXDATE;TZID={CALENDAR_TZ}:{second:%Y%m%dT%H%M%S}")
        body = timed(
            start.isoformat(),
            (start + timedelta(minutes=45)).isoformat(),
            recurrence=recurrence,
            summary="series",
        )
        master_id = self.cal.insert(body)["id"]
        self.freq[master_id] = freq
        return master_id

    @rule(target=series, event_id=consumes(singles), count=st.integers(2, 4))
    def make_recurring(self, event_id: str, count: int) -> str:
        self.cal.patch(event_id, {"recurrence": [f"RRULE:FREQ=DAILY;COUNT={count}"]})
        self.freq[event_id] = "DAILY"
        return event_id

    @rule(master_id=series, shift=st.sampled_from([-1, 2, 24]))
    def shift_series(self, master_id: str, shift: int) -> None:
        master = self.cal.get(master_id)
        start, end = _parse(master["start"]), _parse(master["end"])
        self.cal.patch(
            master_id,
            {
                "start": {
                    "dateTime": (start + timedelta(hours=shift)).isoformat(),
                    "timeZone": CALENDAR_TZ,
                },
                "end": {
                    "dateTime": (end + timedelta(hours=shift)).isoformat(),
                    "timeZone": CALENDAR_TZ,
                },
            },
        )

    @rule(master_id=series, count=st.integers(1, 6))
    def change_rule(self, master_id: str, count: int) -> None:
        self.cal.patch(
            master_id, {"recurrence": [f"RRULE:FREQ={self.freq[master_id]};COUNT={count}"]}
        )

    def _instance(self, master_id: str, index: int) -> dict[str, Any] | None:
        instances = self.cal.instances(master_id)
        return instances[index % len(instances)] if instances else None

    @rule(master_id=series, index=st.integers(0, 6), shift=st.sampled_from([-2, -1, 1, 3, 26]))
    def move_instance(self, master_id: str, index: int, shift: int) -> None:
        instance = self._instance(master_id, index)
        if instance is None:
            return
        start, end = _parse(instance["start"]), _parse(instance["end"])
        self.cal.patch(
            instance["id"],
            {
                "start": {
                    "dateTime": (start + timedelta(hours=shift)).isoformat(),
                    "timeZone": CALENDAR_TZ,
                },
                "end": {
                    "dateTime": (end + timedelta(hours=shift)).isoformat(),
                    "timeZone": CALENDAR_TZ,
                },
            },
        )

    @rule(master_id=series, index=st.integers(0, 6))
    def cancel_instance(self, master_id: str, index: int) -> None:
        instance = self._instance(master_id, index)
        if instance is not None:
            self.cal.delete(instance["id"])

    @rule(target=series, master_id=series, index=st.integers(1, 6))
    def split_series(self, master_id: str, index: int) -> Any:
        """ "This and following": end the old series before an instance, start a new one."""
        instances = self.cal.instances(master_id, showDeleted=True)
        if len(instances) < 2:
            return multiple()  # nothing to split
        pivot = instances[1 + index % (len(instances) - 1)]
        pivot_start = _parse(pivot["originalStartTime"])
        remaining = len(instances) - instances.index(pivot)
        freq = self.freq[master_id]
        self.cal.patch(
            master_id,
            {
                "recurrence": [
                    f"RRULE:FREQ={freq};UNTIL={_utc_stamp(pivot_start - timedelta(seconds=1))}"
                ]
            },
        )
        body = timed(
            pivot_start.isoformat(),
            (pivot_start + timedelta(minutes=45)).isoformat(),
            recurrence=[f"RRULE:FREQ={freq};COUNT={remaining}"],
            summary="split",
        )
        new_id = self.cal.insert(body)["id"]
        self.freq[new_id] = freq
        return new_id

    @rule(master_id=consumes(series))
    def delete_series(self, master_id: str) -> None:
        self.cal.delete(master_id)

    # ----- the consumer --------------------------------------------------------------
    @rule(page_size=st.integers(1, 4))
    def consume_incrementally(self, page_size: int) -> None:
        changed, self.sync_token = self.cal.list_all(
            singleEvents=True,
            maxResults=page_size,
            syncToken=self.sync_token,
            showDeleted=self.show_deleted,
        )
        _apply(self.state, changed, self.window)
        full, _ = self.cal.list_all(
            singleEvents=True, showDeleted=False, maxResults=2500, **self._window()
        )
        assert {i: _key(e) for i, e in self.state.items()} == {e["id"]: _key(e) for e in full}


class _WindowedSyncMachine(_SyncMachine):
    window = (datetime(2026, 12, 10, 12, tzinfo=UTC), datetime(2027, 3, 25, tzinfo=UTC))
    show_deleted = True


@pytest.mark.parametrize(
    "machine", [_SyncMachine, _WindowedSyncMachine], ids=["unbounded", "product-like"]
)
def test_incremental_replay_equals_full_listing(
    emulator: EmulatorServer, service: Any, machine: type[_SyncMachine]
) -> None:
    machine.server = emulator
    machine.service = service
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


# ----- pagination ------------------------------------------------------------------------
def _insert_singles(calendar: CalendarHelper, count: int) -> list[str]:
    base = datetime(2026, 12, 1, 9, tzinfo=BERLIN)
    return [
        calendar.insert(
            timed(
                (base + timedelta(days=n)).isoformat(),
                (base + timedelta(days=n, hours=1)).isoformat(),
            )
        )["id"]
        for n in range(count)
    ]


@pytest.mark.parametrize(
    ("count", "max_results", "sizes"),
    [
        (0, 3, [0]),
        (3, 3, [3]),
        (4, 3, [3, 1]),
        (6, 3, [3, 3]),
        (3, 1, [1, 1, 1]),
        (2, 5, [2]),
    ],
)
def test_page_sizes_and_token_placement(
    calendar: CalendarHelper, count: int, max_results: int, sizes: list[int]
) -> None:
    ids = _insert_singles(calendar, count)
    pages = calendar.pages(maxResults=max_results)
    assert [len(page["items"]) for page in pages] == sizes
    assert all("nextPageToken" in page and "nextSyncToken" not in page for page in pages[:-1])
    assert "nextSyncToken" in pages[-1] and "nextPageToken" not in pages[-1]
    assert sorted(item["id"] for page in pages for item in page["items"]) == sorted(ids)


def test_incremental_pages_and_empty_result(calendar: CalendarHelper) -> None:
    _, token = calendar.list_all()
    ids = _insert_singles(calendar, 5)
    pages = calendar.pages(syncToken=token, maxResults=2)
    assert [len(page["items"]) for page in pages] == [2, 2, 1]
    assert sorted(item["id"] for page in pages for item in page["items"]) == sorted(ids)
    token = pages[-1]["nextSyncToken"]
    empty = calendar.pages(syncToken=token, maxResults=2)
    assert len(empty) == 1 and empty[0]["items"] == []
    assert empty[0]["nextSyncToken"]


def test_list_envelope_carries_calendar_time_zone(calendar: CalendarHelper) -> None:
    page = calendar.pages()[0]
    assert page["kind"] == "calendar#events"
    assert page["timeZone"] == CALENDAR_TZ


def test_changes_made_while_paging_reach_the_next_incremental(calendar: CalendarHelper) -> None:
    first, *_ = _insert_singles(calendar, 3)
    page = calendar.service.events().list(calendarId=calendar.calendar_id, maxResults=1).execute()
    calendar.patch(first, {"summary": "edited between pages"})
    late = _insert_singles(calendar, 1)[0]
    rest = calendar.pages(maxResults=1, pageToken=page["nextPageToken"])
    token = rest[-1]["nextSyncToken"]
    changed, _ = calendar.list_all(syncToken=token)
    by_id = {item["id"]: item for item in changed}
    assert by_id[first]["summary"] == "edited between pages"
    assert late in by_id


def test_default_page_size_250_and_clamp_at_2500(calendar: CalendarHelper) -> None:
    start = datetime(2026, 12, 1, 0, tzinfo=UTC)
    calendar.insert(
        timed(
            start.isoformat(),
            (start + timedelta(minutes=30)).isoformat(),
            time_zone="UTC",
            recurrence=["RRULE:FREQ=HOURLY;COUNT=2600"],
        )
    )
    default = (
        calendar.service.events().list(calendarId=calendar.calendar_id, singleEvents=True).execute()
    )
    assert len(default["items"]) == 250 and "nextPageToken" in default
    clamped = calendar.pages(singleEvents=True, maxResults=5000)
    assert [len(page["items"]) for page in clamped] == [2500, 100]
    ids = [item["id"] for page in clamped for item in page["items"]]
    assert len(set(ids)) == 2600


# ----- 410 fullSyncRequired --------------------------------------------------------------
def _assert_full_sync_required(error: HttpError) -> None:
    assert error.status_code == 410
    detail = error.error_details[0]
    assert detail["reason"] == "fullSyncRequired"
    assert detail["domain"] == "calendar"
    assert detail.get("location") == "syncToken"


def test_invalidated_tokens_give_410_and_a_new_full_sync_recovers(
    calendar: CalendarHelper, emulator: EmulatorServer
) -> None:
    _insert_singles(calendar, 2)
    _, old_token = calendar.list_all(singleEvents=True)
    emulator.control.invalidate_sync_tokens(calendar.calendar_id)
    with pytest.raises(HttpError) as gone:
        calendar.list_all(singleEvents=True, syncToken=old_token)
    _assert_full_sync_required(gone.value)
    items, new_token = calendar.list_all(singleEvents=True)
    assert len(items) == 2
    added = _insert_singles(calendar, 1)
    changed, _ = calendar.list_all(singleEvents=True, syncToken=new_token)
    assert [item["id"] for item in changed] == added
    with pytest.raises(HttpError) as still_gone:
        calendar.list_all(singleEvents=True, syncToken=old_token)
    _assert_full_sync_required(still_gone.value)


def test_sync_token_410_rate_fault(calendar: CalendarHelper, emulator: EmulatorServer) -> None:
    _, token = calendar.list_all()
    emulator.control.set_faults(sync_token_410_rate=1.0)
    with pytest.raises(HttpError) as gone:
        calendar.list_all(syncToken=token)
    _assert_full_sync_required(gone.value)
    calendar.list_all()  # full sync is unaffected by the fault
    emulator.control.set_faults(sync_token_410_rate=0.0)
    _, token = calendar.list_all()
    assert calendar.list_all(syncToken=token)[0] == []


def test_sync_token_410_rate_is_reproducible_by_seed(
    calendar: CalendarHelper, emulator: EmulatorServer
) -> None:
    _, token = calendar.list_all()

    def outcomes() -> list[int]:
        result = []
        for _ in range(16):
            try:
                calendar.list_all(syncToken=token)
                result.append(200)
            except HttpError as error:
                result.append(error.status_code)
        return result

    emulator.control.set_faults(seed=11, sync_token_410_rate=0.5)
    first = outcomes()
    emulator.control.set_faults(seed=11, sync_token_410_rate=0.5)
    assert outcomes() == first
    assert set(first) == {200, 410}


def test_sync_token_max_age(calendar: CalendarHelper, emulator: EmulatorServer) -> None:
    _, token = calendar.list_all()
    emulator.control.set_faults(sync_token_max_age_seconds=60)
    calendar.list_all(syncToken=token)
    emulator.control.advance_clock(61)
    with pytest.raises(HttpError) as gone:
        calendar.list_all(syncToken=token)
    _assert_full_sync_required(gone.value)


def test_deleted_calendar_recreated_invalidates_tokens(
    calendar: CalendarHelper, emulator: EmulatorServer
) -> None:
    _, token = calendar.list_all()
    emulator.control.delete_calendar(ACCOUNT_EMAIL)
    emulator.control.create_calendar(ACCOUNT_EMAIL, CALENDAR_TZ, ACCOUNT_EMAIL)
    with pytest.raises(HttpError) as gone:
        calendar.list_all(syncToken=token)
    _assert_full_sync_required(gone.value)


def test_concurrent_writers_and_an_incremental_reader(
    calendar: CalendarHelper, emulator: EmulatorServer, account: dict[str, Any]
) -> None:
    """Changes racing with paged incremental reads are neither lost nor duplicated."""
    _, token = calendar.list_all(singleEvents=True)
    state: dict[str, dict[str, Any]] = {}
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            own = CalendarHelper(
                make_service(emulator, account), emulator.control, calendar.calendar_id, CALENDAR_TZ
            )
            for n in range(12):
                start = _local(0, n % 7, 8 + worker)
                made = own.insert(
                    timed(
                        start.isoformat(),
                        (start + timedelta(minutes=30)).isoformat(),
                        recurrence=["RRULE:FREQ=DAILY;COUNT=2"] if n % 4 == 0 else [],
                    )
                )
                if n % 3 == 0:
                    own.patch(made["id"], {"transparency": "transparent"})
                if n % 5 == 0:
                    own.delete(made["id"])
        except BaseException as error:  # surfaced in the main thread
            errors.append(error)

    writers = [threading.Thread(target=write, args=(worker,)) for worker in range(4)]
    for thread in writers:
        thread.start()
    while any(thread.is_alive() for thread in writers):
        changed, token = calendar.list_all(singleEvents=True, maxResults=3, syncToken=token)
        _apply(state, changed)
    for thread in writers:
        thread.join()
    assert errors == []
    changed, token = calendar.list_all(singleEvents=True, maxResults=3, syncToken=token)
    _apply(state, changed)
    full, _ = calendar.list_all(singleEvents=True)
    assert {i: _key(e) for i, e in state.items()} == {e["id"]: _key(e) for e in full}
    assert len(full) > 30
