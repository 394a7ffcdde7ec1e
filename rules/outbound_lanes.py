"""Which of an endpoint's pending deliveries may go out now. Pure: no I/O.

A host's events reach an endpoint in order, so each host is a lane: only its oldest
pending delivery (the lane's head) may be sent, and only once it is due and held by no
other sender. A delivery without a host (a ping) has no lane.

The caller reads the endpoint's pending deliveries oldest event first, a page at a time;
the page shows every earlier delivery of each host in it, so the heads are found in one
pass, with no lookup per row (a per-row lookup is what made a claim's cost grow with the
backlog: bench/RESULTS.md §7, session 13).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Pending:
    """A pending delivery as the claim reads it."""

    id: int
    host_id: int | None
    event_id: int
    next_attempt_at: datetime
    claimed_until: datetime | None
    claimed_by: str | None


@dataclass
class LaneScan:
    """Lane heads found so far across the pages of one endpoint's pending deliveries."""

    due_by: datetime
    now: datetime
    owner: str | None  # a delivery this owner holds counts as free (its message came again)
    limit: int
    ids: list[int] = field(default_factory=list, init=False)
    # A lane whose head was taken has another delivery behind it: sendable once the head
    # is recorded, so its sender claims again at once instead of waiting for new work.
    followed: bool = field(default=False, init=False)
    _seen_hosts: set[int] = field(default_factory=set, init=False)
    _taken_hosts: set[int] = field(default_factory=set, init=False)

    @property
    def full(self) -> bool:
        return len(self.ids) >= self.limit

    def take(self, page: list[Pending]) -> None:
        """Note the sendable lane heads of the next page (oldest event first)."""
        for row in page:
            if self.full:
                return
            if row.host_id is not None:
                if row.host_id in self._seen_hosts:
                    # An earlier delivery of its host is still pending.
                    self.followed = self.followed or row.host_id in self._taken_hosts
                    continue
                self._seen_hosts.add(row.host_id)
            if row.next_attempt_at <= self.due_by and self._free(row):
                self.ids.append(row.id)
                if row.host_id is not None:
                    self._taken_hosts.add(row.host_id)

    def _free(self, row: Pending) -> bool:
        if row.claimed_until is None or row.claimed_until <= self.now:
            return True
        return self.owner is not None and row.claimed_by == self.owner
