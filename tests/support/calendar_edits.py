"""Random but replayable edits of an emulator calendar, shared by the end-to-end tests and
the fault soak."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from emulator.control import EmulatorControl


class CalendarEditor:
    """Random but replayable edits of one calendar: every kind that has caused double
    bookings (moves, deletes, free/busy flips, invitations, all-day, recurring series)."""

    def __init__(self, control: EmulatorControl, google_calendar_id: str, rng: random.Random):
        self.control = control
        self.gid = google_calendar_id
        self.rng = rng
        self.zone = ZoneInfo("Europe/Berlin")
        self.singles: list[str] = []
        self.series: list[tuple[str, datetime]] = []
        self.first_edited: set[str] = set()

    def _local(self, day: int, minutes: int) -> datetime:
        base = datetime.now(self.zone).date() + timedelta(days=day)
        midnight = datetime(base.year, base.month, base.day, tzinfo=self.zone)
        return midnight + timedelta(minutes=minutes)

    def _span(self) -> dict:
        start = self._local(self.rng.randint(1, 40), self.rng.randrange(7 * 60, 19 * 60, 15))
        end = start + timedelta(minutes=self.rng.choice([15, 30, 60, 90, 180]))
        return {"start": {"dateTime": start.isoformat()}, "end": {"dateTime": end.isoformat()}}

    def insert(self) -> None:
        body: dict[str, Any] = {"summary": "meeting", **self._span()}
        roll = self.rng.random()
        if roll < 0.15:
            body["transparency"] = "transparent"
        elif roll < 0.3:
            status = self.rng.choice(["declined", "tentative", "accepted"])
            body["attendees"] = [{"email": self.gid, "self": True, "responseStatus": status}]
        self.singles.append(self.control.insert_event(self.gid, body)["id"])

    def insert_all_day(self) -> None:
        day = datetime.now(self.zone).date() + timedelta(days=self.rng.randint(1, 40))
        end = day + timedelta(days=self.rng.randint(1, 3))
        body = {"summary": "all day", "start": {"date": day.isoformat()}}
        body["end"] = {"date": end.isoformat()}
        self.singles.append(self.control.insert_event(self.gid, body)["id"])

    def insert_series(self) -> None:
        start = self._local(self.rng.randint(1, 10), self.rng.randrange(8 * 60, 17 * 60, 30))
        rule = self.rng.choice(
            ["RRULE:FREQ=DAILY;COUNT=10", "RRULE:FREQ=WEEKLY;COUNT=6", "RRULE:FREQ=DAILY;COUNT=4"]
        )
        end = start + timedelta(minutes=30)
        body = {
            "summary": "series",
            "start": {"dateTime": start.isoformat(), "timeZone": "Europe/Berlin"},
            "end": {"dateTime": end.isoformat(), "timeZone": "Europe/Berlin"},
            "recurrence": [rule],
        }
        self.series.append((self.control.insert_event(self.gid, body)["id"], start))

    def move(self) -> None:
        if self.singles:
            self.control.patch_event(self.gid, self.rng.choice(self.singles), self._span())

    def flip_free(self) -> None:
        if self.singles:
            value = self.rng.choice(["transparent", "opaque"])
            target = self.rng.choice(self.singles)
            self.control.patch_event(self.gid, target, {"transparency": value})

    def delete(self) -> None:
        if self.singles:
            target = self.singles.pop(self.rng.randrange(len(self.singles)))
            self.control.delete_event(self.gid, target)

    def edit_series(self) -> None:
        if not self.series:
            return
        master, start = self.rng.choice(self.series)
        first = f"{master}_{start.astimezone(UTC):%Y%m%dT%H%M%SZ}"
        actions = ["shorten", "delete"]
        if master not in self.first_edited:  # Google refuses edits of a deleted instance
            actions += ["cancel_first", "move_first"]
        action = self.rng.choice(actions)
        if action in ("cancel_first", "move_first"):
            self.first_edited.add(master)
        if action == "cancel_first":
            self.control.delete_event(self.gid, first)
        elif action == "move_first":
            moved = start + timedelta(hours=2)
            self.control.patch_event(
                self.gid,
                first,
                {
                    "start": {"dateTime": moved.isoformat(), "timeZone": "Europe/Berlin"},
                    "end": {
                        "dateTime": (moved + timedelta(minutes=45)).isoformat(),
                        "timeZone": "Europe/Berlin",
                    },
                },
            )
        elif action == "shorten":
            self.control.patch_event(self.gid, master, {"recurrence": ["RRULE:FREQ=DAILY;COUNT=3"]})
        else:
            self.series.remove((master, start))
            self.control.delete_event(self.gid, master)

    def random_edit(self) -> str:
        action = self.rng.choices(
            [
                self.insert,
                self.insert_all_day,
                self.insert_series,
                self.move,
                self.flip_free,
                self.delete,
                self.edit_series,
            ],
            weights=[5, 2, 2, 3, 2, 2, 2],
        )[0]
        action()
        return action.__name__
