"""The moments stored for the periodic reads (rules.sync_schedule.next_due_at,
rules.audit.next_audit_at) are exactly where the rules turn to "due": not a microsecond
before, and due from then on while the inputs hold (pure rules, any inputs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import example, given
from hypothesis import strategies as st

from core.settings import Settings
from rules.audit import audit_due, next_audit_at
from rules.sync_schedule import CalendarTiming, due, next_due_at

T0 = datetime(2030, 1, 1, tzinfo=UTC)
MICRO = timedelta(microseconds=1)

offsets = st.integers(min_value=-3 * 86400 * 10**6, max_value=0).map(
    lambda us: T0 + timedelta(microseconds=us)
)
future = st.integers(min_value=1, max_value=8 * 86400 * 10**6).map(
    lambda us: T0 + timedelta(microseconds=us)
)
settings_ = st.builds(
    Settings,
    safety_net_seconds=st.integers(min_value=60, max_value=86400),
    poll_seconds=st.integers(min_value=30, max_value=7200),
    full_resync_seconds=st.integers(min_value=3600, max_value=14 * 86400),
    channel_silent_seconds=st.integers(min_value=600, max_value=3 * 86400),
)
timings = st.builds(
    CalendarTiming,
    calendar_id=st.integers(min_value=1, max_value=10**7),
    last_success_at=offsets,
    full_sync_at=offsets,
    channel_expiration=st.none() | offsets | future,
    channel_last_heard=st.none() | offsets,
    watch_refused=st.booleans(),
)


@given(timing=timings, settings=settings_, later=future)
def test_next_due_at_is_where_due_turns(
    timing: CalendarTiming, settings: Settings, later: datetime
) -> None:
    moment = next_due_at(timing, settings)
    assert moment is not None  # synced and fully synced: a moment to come or come
    assert due(timing, moment, settings) is not None
    if moment - MICRO >= T0:  # the inputs are from before T0: the rule holds from T0 on
        assert due(timing, moment - MICRO, settings) is None
    # Once due, due at any later instant too (what a stored moment relies on).
    assert due(timing, max(moment, later), settings) is not None


@given(
    account=st.integers(min_value=1, max_value=10**7),
    last=st.none() | offsets,
    period=st.integers(min_value=600, max_value=14 * 86400),
    after=offsets,
)
# Found in CI: the last audit is older than its interval, so the rule's own moment lies
# before `after`; the stored moment is `after`.
@example(
    account=1,
    last=datetime(2029, 12, 31, 23, 50, 27, 50981, tzinfo=UTC),
    period=600,
    after=datetime(2030, 1, 1, tzinfo=UTC),
)
def test_next_audit_at_is_the_first_due_moment(
    account: int, last: datetime | None, period: int, after: datetime
) -> None:
    if last is not None and after < last:
        after = last
    moment = next_audit_at(account, last, after, period)
    assert moment >= after
    assert audit_due(account, last, moment, period)
    if moment > after:
        assert not audit_due(account, last, moment - MICRO, period)
