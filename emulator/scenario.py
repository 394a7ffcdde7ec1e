"""Preload accounts, calendars, events and faults from a JSON scenario.

Format::

    {
      "seed": 7,                                   # optional: reset with this seed first
      "faults": {"latency_ms": 20},                # optional: as PUT /_emulator/faults
      "accounts": ["ann@example.com",              # or {"email": ..., "refresh_token": ...}
                   {"email": "bob@example.com", "refresh_token": "1//fixed-demo-token"}],
      "calendars": [{"id": "ann@example.com", "timeZone": "Europe/Berlin",
                     "owner": "ann@example.com", "summary": "Ann", "watchable": true,
                     "syncToken": true,               # optional: answer its current token
                     "events": [{"summary": "Standup", "start": {...}, "end": {...},
                                 "recurrence": ["RRULE:FREQ=DAILY"]}]}]
    }

The answer maps each account email to its authorized-user credentials, and each calendar
that asked for it to the sync token a full `singleEvents=true` listing would end with now
(a fleet that starts as already synced).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emulator.app import EmulatorState


def read_scenario_file(path: str | Path) -> dict[str, Any]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a scenario is a JSON object")
    return data


def load_scenario(state: EmulatorState, scenario: dict[str, Any], token_uri: str) -> dict[str, Any]:
    """Apply a scenario to a running emulator; returns {"accounts": {email: credentials}}."""
    if "seed" in scenario:
        state.reset(int(scenario["seed"]))
    if scenario.get("faults"):
        state.faults.update(scenario["faults"])
    credentials: dict[str, Any] = {}
    for entry in scenario.get("accounts", []):
        spec = {"email": entry} if isinstance(entry, str) else dict(entry)
        email = spec["email"]
        credentials[email] = state.auth.create_account(
            email, token_uri, refresh_token=spec.get("refresh_token")
        )
    events_created = 0
    sync_tokens: dict[str, str] = {}
    for spec in scenario.get("calendars", []):
        owner = spec.get("owner") or spec["id"]
        state.auth.ensure_account(owner)
        state.store.create_calendar(
            spec["id"],
            spec.get("timeZone", "UTC"),
            owner,
            summary=spec.get("summary"),
            watchable=bool(spec.get("watchable", True)),
        )
        for event in spec.get("events", []):
            state.store.insert_event(spec["id"], event)
            events_created += 1
        if spec.get("syncToken"):
            sync_tokens[spec["id"]] = state.store.current_sync_token(spec["id"])
    answer: dict[str, Any] = {"accounts": credentials, "eventsCreated": events_created}
    if sync_tokens:
        answer["syncTokens"] = sync_tokens
    return answer
