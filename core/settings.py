"""Configuration from the environment (`CALSYNC_*`), read once and validated.

Every wrong value fails with a `SettingsError` that names the variable, so a bad deploy
says exactly what to fix instead of failing later inside a task.
"""

from __future__ import annotations

import math
import os
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

GOOGLE_API_ENDPOINT = "https://www.googleapis.com/calendar/v3/"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
GOOGLE_AUTH_URI = "https://accounts.google.com/o/oauth2/auth"


class SettingsError(ValueError):
    """A configuration value is missing or wrong; the message names the variable."""


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number of seconds/days, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be greater than zero, got {value}")
    return value


def _int_in_range(name: str, raw: str, lowest: int, highest: int) -> int:
    value = _positive_int(name, raw)
    if not lowest <= value <= highest:
        raise SettingsError(f"{name} must be between {lowest} and {highest}, got {value}")
    return value


def _non_negative_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must not be negative, got {value}")
    return value


def _url(schemes: tuple[str, ...]) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        scheme = urlsplit(raw).scheme.split("+")[0]
        if scheme not in schemes:
            allowed = ", ".join(schemes)
            raise SettingsError(f"{name} must be a URL with scheme {allowed}; got {raw!r}")
        return raw

    return parse


def _text(name: str, raw: str) -> str:
    if not raw.strip():
        raise SettingsError(f"{name} must not be empty")
    return raw


def _choice(name: str, raw: str, allowed: tuple[str, ...]) -> str:
    if raw not in allowed:
        raise SettingsError(f"{name} must be one of {', '.join(allowed)}; got {raw!r}")
    return raw


def _exact_length(name: str, raw: str, length: int) -> str:
    # The value is a secret: the message names the variable and the length, not the value.
    if len(raw) != length:
        raise SettingsError(f"{name} must be exactly {length} characters, got {len(raw)}")
    return raw


# Keys that encrypt stored credentials (and sign short-lived values) must carry at least 32
# bytes of entropy: what `secrets.token_urlsafe(32)` or `Fernet.generate_key()` give.
MIN_KEY_ENTROPY_BITS = 256
_HEX_DIGITS = frozenset(string.hexdigits)
_BASE64_CHARACTERS = frozenset(string.ascii_letters + string.digits + "+/-_")


def _repeating_unit(text: str) -> int:
    """Length of the shortest unit that `text` repeats at least twice ("abcabca": 3), else
    the whole length (a random key's end may match its start by chance: not a repetition)."""
    prefix = [0] * len(text)  # Knuth-Morris-Pratt: longest proper prefix that is a suffix
    for i in range(1, len(text)):
        k = prefix[i - 1]
        while k and text[i] != text[k]:
            k = prefix[k - 1]
        prefix[i] = k + (text[i] == text[k])
    period = len(text) - prefix[-1]
    return period if 2 * period <= len(text) else len(text)


def key_entropy_bits(key: str) -> float:
    """An upper bound of a key's entropy: the length of its shortest repeating unit times the
    bits per character of the smallest usual alphabet holding all its characters (hex 4,
    base64 6, anything else log2(95), printable ASCII). A random key reaches the bound; an
    empty, short or repetitive key cannot pass it, whatever it looks like."""
    text = key.strip().rstrip("=")  # base64 padding carries nothing
    if not text:
        return 0.0
    characters = set(text)
    if characters <= _HEX_DIGITS:
        bits_per_character = 4.0
    elif characters <= _BASE64_CHARACTERS:
        bits_per_character = 6.0
    else:
        bits_per_character = math.log2(95)
    return _repeating_unit(text) * bits_per_character


def _strong_key(name: str, raw: str) -> str:
    # The value is a secret: the message names the variable, never the value.
    if key_entropy_bits(raw) < MIN_KEY_ENTROPY_BITS:
        raise SettingsError(
            f"{name} is too weak: a key needs at least 32 bytes of entropy, e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return raw


def _key_list(name: str, raw: str) -> str:
    keys = [key.strip() for key in raw.split(",")]
    for key in keys:
        _strong_key(name, key)
    return ",".join(keys)


def _normalize_database_url(url: str) -> str:
    # Platforms hand out postgres:// URLs; SQLAlchemy wants an explicit driver (psycopg 3).
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=lambda: Path(".calsync").resolve())
    database_url: str = ""
    broker_url: str = ""
    public_url: str = "http://127.0.0.1:8000"
    google_api_endpoint: str = GOOGLE_API_ENDPOINT
    google_token_uri: str = GOOGLE_TOKEN_URI
    google_auth_uri: str = GOOGLE_AUTH_URI
    google_client_id: str | None = None
    google_client_secret: str | None = None
    secret_key: str | None = None
    # Earlier keys, comma-separated, newest first: still decrypt, never encrypt (rotation).
    secret_key_previous: str | None = None
    admin_token: str | None = None
    # Signs the host pages' session cookie; unset: derived from SECRET_KEY (its own purpose),
    # so rotating either signs everyone out.
    session_secret: str | None = None
    # Sync runs older than this many days are deleted by beat (the host's log shows 7).
    sync_run_retention_days: int = 30
    # When set, GET /metrics needs it as a bearer token (401 otherwise).
    metrics_token: str | None = None
    alert_webhook_url: str | None = None
    # "slack" ({"text": ...}) or "pagerduty" (Events v2); empty: PagerDuty when the URL is
    # PagerDuty's events endpoint, else Slack-compatible.
    alert_format: str = ""
    pagerduty_routing_key: str | None = None
    alert_cap_per_hour: int = 20
    log_format: str = "keyvalue"  # or "json"
    stale_after_seconds: int = 300
    sync_horizon_days: int = 365
    channel_ttl_seconds: int = 7 * 24 * 3600
    renew_before_seconds: int = 24 * 3600
    safety_net_seconds: int = 3600
    sweep_after_seconds: int = 10
    # Every calendar is compared with Google's freeBusy at least this often (±25%), over
    # [now, now + audit_days): Google answers freeBusy for about 90 days at most.
    audit_seconds: int = 86400
    audit_days: int = 14
    # A sync's lease on its calendar, renewed every quarter of it while the sync runs
    # (worker/lease_heartbeat.py): a killed worker's calendar is free again within this long.
    lease_seconds: int = 6
    # A calendar notified again while it syncs is fetched again no sooner than this after
    # the previous fetch began: a burst of notifications costs two fetches, not one each.
    min_sync_interval_ms: int = 1000
    # Before its first fetch, a notified calendar waits until no notification has come for
    # DEBOUNCE_MS (0: fetch at once), but never longer than DEBOUNCE_MAX_MS after the first
    # one: a burst of changes is one fetch, a lone change waits a few milliseconds.
    debounce_ms: int = 50
    debounce_max_ms: int = 300
    full_resync_seconds: int = 7 * 24 * 3600
    # Longest window a busy read may ask for: bounds the work of one API request.
    max_window_days: int = 92
    # How far ahead the ICS feed and CalDAV calendar reach (from now - 1 day): bounds the
    # work of one feed request; booking tools look a few weeks ahead.
    feed_days: int = 90
    # How often a calendar without working push (no channel, expired, refused, silent) is
    # polled instead.
    poll_seconds: int = 300
    # A channel with no notification at all (not even `sync`) for this long counts as silent.
    channel_silent_seconds: int = 24 * 3600
    # Google allows 600 requests/min per user and 10,000/min per project; keep a margin.
    account_rate_per_minute: int = 500
    project_rate_per_minute: int = 9000
    # The "minute" of the two budgets above. Only tests shorten it: a test that must see
    # the limit hold requests back then waits seconds instead of a real minute.
    rate_window_seconds: int = 60
    # Google requests of the whole deployment per day (Google's billed "Scaled" tier counts
    # its free allowance per day); None: no daily budget. The limiter spreads it over the
    # day, and safety-net syncs yield while less than a fifth of it is left.
    project_requests_per_day: int | None = None
    # How the webhook hands a notification on (intake/redis_intake.py): "redis" records it
    # in the broker's Redis and a drainer thread writes batches to the database; "direct"
    # writes the database inside the request; "auto" picks redis for PostgreSQL + Redis.
    push_intake: str = "auto"
    # Where each web process keeps accepted notifications until Redis holds them
    # (intake/spool.py): a directory on the web host's own disk. Default: DATA_DIR/push-spool.
    push_spool_dir: Path | None = None
    # Outbound webhooks: a host's changes within this window go out as one busy.changed
    # event; each delivery attempt waits this long for the receiver's answer.
    outbound_coalesce_ms: int = 200
    outbound_timeout_seconds: int = 10
    # A failed delivery is tried again after this long, doubling up to an hour. Only tests
    # shorten it (to see a retry in a second, not in seconds).
    outbound_first_retry_seconds: int = 5
    # The outbound worker lowers its CPU priority by this much (nice): on a machine it
    # shares with the sync worker, a flood of deliveries never slows syncing.
    outbound_nice: int = 10

    def __post_init__(self) -> None:
        # Embedded defaults: everything in one data directory, no servers needed.
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir / 'calsync.db'}")
        if not self.broker_url:
            object.__setattr__(self, "broker_url", f"sqla+sqlite:///{self.data_dir / 'broker.db'}")
        object.__setattr__(self, "database_url", _normalize_database_url(self.database_url))
        if self.push_spool_dir is None:
            object.__setattr__(self, "push_spool_dir", self.data_dir / "push-spool")
        # Also here, not only in the parsers: settings built in code are held to the same rule.
        if self.secret_key is not None:
            _strong_key("CALSYNC_SECRET_KEY", self.secret_key)
        if self.secret_key_previous is not None:
            _key_list("CALSYNC_SECRET_KEY_PREVIOUS", self.secret_key_previous)
        if self.push_intake == "redis" and not self._intake_capable:
            raise SettingsError(
                "CALSYNC_PUSH_INTAKE=redis needs PostgreSQL (CALSYNC_DATABASE_URL) and a Redis "
                "broker (CALSYNC_BROKER_URL=redis://...)"
            )

    @property
    def previous_secret_keys(self) -> tuple[str, ...]:
        if not self.secret_key_previous:
            return ()
        return tuple(key.strip() for key in self.secret_key_previous.split(","))

    @property
    def _intake_capable(self) -> bool:
        return self.database_url.startswith("postgresql") and self.broker_url.startswith(
            ("redis://", "rediss://")
        )

    @property
    def uses_redis_intake(self) -> bool:
        """Whether push notifications go through the Redis intake (else: direct writes)."""
        return self.push_intake == "redis" or (self.push_intake == "auto" and self._intake_capable)

    @property
    def spool_directory(self) -> Path:
        assert self.push_spool_dir is not None  # set in __post_init__
        return self.push_spool_dir

    @property
    def is_embedded_broker(self) -> bool:
        return self.broker_url.startswith("sqla+")

    @property
    def webhook_address(self) -> str:
        return self.public_url.rstrip("/") + "/webhooks/google"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        # Platform names first, so the project's own names win when both are set.
        if env.get("DATABASE_URL"):
            values["database_url"] = _url(("postgres", "postgresql", "sqlite"))(
                "DATABASE_URL", env["DATABASE_URL"]
            )
        if env.get("REDIS_URL"):
            values["broker_url"] = _url(("redis", "rediss"))("REDIS_URL", env["REDIS_URL"])
        for f in fields(cls):
            name = "CALSYNC_" + f.name.upper()
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            values[f.name] = _PARSERS[f.name](name, raw)
        return cls(**values)  # type: ignore[arg-type]


_PARSERS: dict[str, Callable[[str, str], object]] = {
    "data_dir": lambda _name, raw: Path(raw).resolve(),
    "database_url": _url(("postgres", "postgresql", "sqlite")),
    "broker_url": _url(("redis", "rediss", "sqla", "memory", "amqp")),
    "public_url": _url(("http", "https")),
    "google_api_endpoint": _url(("http", "https")),
    "google_token_uri": _url(("http", "https")),
    "google_auth_uri": _url(("http", "https")),
    "google_client_id": _text,
    "google_client_secret": _text,
    "secret_key": _strong_key,
    "secret_key_previous": _key_list,
    "admin_token": _text,
    "session_secret": _strong_key,
    "sync_run_retention_days": lambda name, raw: _int_in_range(name, raw, 7, 3650),
    "metrics_token": _text,
    "alert_webhook_url": _url(("http", "https")),
    "alert_format": lambda name, raw: _choice(name, raw, ("slack", "pagerduty")),
    "pagerduty_routing_key": lambda name, raw: _exact_length(name, raw, 32),
    "alert_cap_per_hour": _positive_int,
    "log_format": lambda name, raw: _choice(name, raw, ("keyvalue", "json")),
    "stale_after_seconds": _positive_int,
    "sync_horizon_days": _positive_int,
    "channel_ttl_seconds": _positive_int,
    "renew_before_seconds": _positive_int,
    "safety_net_seconds": _positive_int,
    "sweep_after_seconds": _positive_int,
    "audit_seconds": _positive_int,
    "audit_days": lambda name, raw: _int_in_range(name, raw, 1, 90),
    "lease_seconds": _positive_int,
    "min_sync_interval_ms": _positive_int,
    "debounce_ms": _non_negative_int,
    "debounce_max_ms": _non_negative_int,
    "full_resync_seconds": _positive_int,
    "max_window_days": _positive_int,
    "feed_days": lambda name, raw: _int_in_range(name, raw, 1, 366),
    "poll_seconds": _positive_int,
    "channel_silent_seconds": _positive_int,
    "account_rate_per_minute": _positive_int,
    "project_rate_per_minute": _positive_int,
    "rate_window_seconds": _positive_int,
    "project_requests_per_day": _positive_int,
    "push_intake": lambda name, raw: _choice(name, raw, ("auto", "direct", "redis")),
    "push_spool_dir": lambda _name, raw: Path(raw).resolve(),
    "outbound_coalesce_ms": _non_negative_int,
    "outbound_timeout_seconds": lambda name, raw: _int_in_range(name, raw, 1, 60),
    # At least 2: a sender also takes work due within the next second (claim_batch).
    "outbound_first_retry_seconds": lambda name, raw: _int_in_range(name, raw, 2, 3600),
    "outbound_nice": lambda name, raw: _int_in_range(name, raw, 0, 19),
}

_current: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    global _current
    if _current is None:
        _current = Settings.from_env()
    return _current


def configure(settings: Settings | None) -> None:
    """Replace the process-wide settings (tests, CLI options)."""
    global _current
    _current = settings
