"""Fault configuration and the seeded randomness that drives every injected fault.

One seed drives everything: the fault decisions use ``Random(seed)``; ids and push
decisions use streams derived from the same seed, so a failing run replays.
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from emulator.errors import INJECTABLE_STATUSES


@dataclass
class FaultConfig:
    seed: int = 0
    error_rates: dict[str, float] = field(default_factory=dict)
    error_methods: list[str] | None = None
    latency_ms: float = 0.0
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    delay_ms: float = 0.0
    reorder: bool = False
    sync_token_410_rate: float = 0.0
    sync_token_max_age_seconds: float | None = None
    access_token_ttl_seconds: float = 3600.0
    push_retry_base_seconds: float = 1.0
    push_max_attempts: int = 6
    max_channel_ttl_seconds: float = 604800.0
    single_events_horizon_days: float = 730.0


_RATE_KEYS = ("drop_rate", "duplicate_rate", "sync_token_410_rate")


def _validated(key: str, value: Any) -> Any:
    if key == "error_rates":
        if not isinstance(value, dict):
            raise ValueError("error_rates must be an object {status: probability}")
        rates: dict[str, float] = {}
        for status, rate in value.items():
            if int(status) not in INJECTABLE_STATUSES:
                raise ValueError(
                    f"error_rates: status {status} not injectable (use {INJECTABLE_STATUSES})"
                )
            rates[str(int(status))] = _probability(f"error_rates.{status}", rate)
        if sum(rates.values()) > 1.0:
            raise ValueError("error_rates must sum to at most 1")
        return rates
    if key == "error_methods":
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
            raise ValueError("error_methods must be a list of method ids")
        return list(value)
    if key in _RATE_KEYS:
        return _probability(key, value)
    if key == "reorder":
        return bool(value)
    if key == "seed":
        return int(value)
    if key == "push_max_attempts":
        if int(value) < 1:
            raise ValueError("push_max_attempts must be >= 1")
        return int(value)
    if key == "sync_token_max_age_seconds" and value is None:
        return None
    number = float(value)
    if number < 0:
        raise ValueError(f"{key} must be >= 0")
    return number


def _probability(key: str, value: Any) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{key} must be within [0, 1]")
    return number


class Faults:
    """Thread-safe holder of the current FaultConfig plus the seeded fault RNG."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self.config = FaultConfig(seed=seed)
        self._rng = random.Random(seed)

    def reset(self, seed: int) -> None:
        with self._lock:
            self.config = FaultConfig(seed=seed)
            self._rng = random.Random(seed)

    def update(self, changes: dict[str, Any]) -> FaultConfig:
        """Apply a partial update; unknown keys or bad values raise ValueError, changing nothing."""
        known = {f.name for f in fields(FaultConfig)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown fault keys: {sorted(unknown)}")
        validated = {key: _validated(key, value) for key, value in changes.items()}
        with self._lock:
            current = asdict(self.config)
            current.update(validated)
            self.config = FaultConfig(**current)
            if "seed" in validated:
                self._rng = random.Random(validated["seed"])
            return self.config

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return asdict(self.config)

    def random(self) -> float:
        with self._lock:
            return self._rng.random()

    def injected_status(self, method_id: str) -> int | None:
        """The error status to answer this API call with, or None to serve it normally."""
        with self._lock:
            config = self.config
            if not config.error_rates:
                return None
            if config.error_methods is not None and method_id not in config.error_methods:
                return None
            draw = self._rng.random()
            threshold = 0.0
            for status in sorted(config.error_rates):
                threshold += config.error_rates[status]
                if draw < threshold:
                    return int(status)
            return None
