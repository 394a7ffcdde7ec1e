"""The web's cache of live channels: hits skip the database, unknown ids never stick."""

from __future__ import annotations

import pytest

from intake.channel_cache import ChannelCache, LiveChannel

CHANNEL = LiveChannel(token_hash="0" * 64, calendar_id=7, resource_id="r-1")


class Loader:
    def __init__(self, answer: LiveChannel | None) -> None:
        self.answer = answer
        self.calls: list[str] = []

    def __call__(self, channel_id: str) -> LiveChannel | None:
        self.calls.append(channel_id)
        return self.answer


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr("intake.channel_cache.time.monotonic", lambda: now[0])
    return now


def test_a_live_channel_is_loaded_once_per_ttl(clock: list[float]) -> None:
    cache, load = ChannelCache(ttl_seconds=10), Loader(CHANNEL)
    assert cache.get("c1", load) == CHANNEL
    clock[0] += 9.9
    assert cache.get("c1", load) == CHANNEL
    assert load.calls == ["c1"]
    clock[0] += 0.2  # expired: asked again, so a stopped channel is refused from then on
    load.answer = None
    assert cache.get("c1", load) is None
    assert load.calls == ["c1", "c1"]


def test_unknown_ids_are_never_cached(clock: list[float]) -> None:
    cache, load = ChannelCache(), Loader(None)
    assert cache.get("forged", load) is None
    assert cache.get("forged", load) is None
    assert load.calls == ["forged", "forged"]


def test_forget_and_the_size_bound(clock: list[float]) -> None:
    cache, load = ChannelCache(max_entries=2), Loader(CHANNEL)
    cache.get("a", load)
    cache.forget("a")
    cache.get("a", load)
    assert load.calls == ["a", "a"]
    cache.get("b", load)
    cache.get("c", load)  # full: starts over rather than growing
    cache.get("a", load)
    assert load.calls == ["a", "a", "b", "c", "a"]
