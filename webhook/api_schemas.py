"""The /v1 API's bodies and query strings as pydantic models: the one description of the
HTTP contract. Views validate their input with the request models (`webhook.api_input`), and
the OpenAPI document (`webhook.openapi`) is generated from all of them, so the document and
the checks cannot drift apart. Enumerations are calsync's own Python enums.

Field names are snake_case here and camelCase on the wire (aliases). Times are parsed by
`webhook.api_time.parse_rfc3339`, the one place the API reads a time.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    create_model,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from models.outbound import DeliveryStatus, EndpointState
from models.sync_runs import SyncKind, SyncOutcome
from rules.busy_rules import BusyPolicy as BusyPolicyRules
from rules.busy_rules import Reason
from rules.health import CalendarState
from webhook.api_time import bad_parameter, check_window, parse_flag, parse_rfc3339
from webhook.errors import ApiError

# Ids in paths are bounded so an absurd number is a 404 from routing, never a database error.
MAX_ID = 2**31 - 1
MAX_FREEBUSY_ITEMS = 50  # Google's own limit per freeBusy.query
MAX_NOTE_LENGTH = 1000
MIN_BLOCK_LENGTH = timedelta(minutes=1)
MAX_BLOCK_LENGTH = timedelta(days=366)
DEFAULT_MARGIN_MINUTES = 15
MAX_MARGIN_MINUTES = 24 * 60

TIME_SCHEMA = {"type": "string", "format": "date-time"}


def absent() -> Any:
    """The default of a field a client may leave out but not set to null."""
    return Field(default=None)


def parameter_error(exc: ApiError, name: str) -> PydanticCustomError:
    """An `invalid_parameter` ApiError of `webhook.api_time` as a field error, so it is
    reported in field order like every other (see `webhook.api_input`)."""
    message = exc.message.removeprefix(f"{name}: ")
    return PydanticCustomError("invalid_parameter", "{message}", {"message": message})


def _wire_name(info: ValidationInfo) -> str:
    return to_camel(info.field_name or "value")


def _rfc3339(value: object, info: ValidationInfo) -> datetime:
    name = _wire_name(info)
    try:
        return parse_rfc3339(value, name)
    except ApiError as exc:
        raise parameter_error(exc, name) from None


def _query_flag(value: object, info: ValidationInfo) -> bool:
    name = _wire_name(info)
    try:
        return parse_flag(value if isinstance(value, str) else None, name)
    except ApiError as exc:
        raise parameter_error(exc, name) from None


def _margin_minutes(value: object) -> int:
    text = value if isinstance(value, str) else ""
    if not (text.isascii() and text.isdigit() and len(text) <= 5) or int(text) > (
        MAX_MARGIN_MINUTES
    ):
        raise PydanticCustomError(
            "invalid_parameter",
            "{message}",
            {"message": f"must be a whole number from 0 to {MAX_MARGIN_MINUTES}"},
        )
    return int(text)


def parse_id(value: object) -> int | None:
    """A database id from text (query string, path segment): 1 to 10 ASCII digits, 1 to
    MAX_ID; None otherwise. Checked before int(), so no length of digits reaches int() or
    the database (5,000 nines, 20-digit ids)."""
    if not (isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10):
        return None
    number = int(value)
    return number if 1 <= number <= MAX_ID else None


def _query_id(value: object) -> int:
    number = parse_id(value)
    if number is None:
        raise PydanticCustomError(
            "invalid_parameter",
            "{message}",
            {"message": f"must be a whole number from 1 to {MAX_ID}"},
        )
    return number


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _iana_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"{name!r} is not an IANA time zone such as Europe/Berlin") from None
    return name


QueryId = Annotated[
    int,
    PlainValidator(_query_id),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_ID}),
]
Rfc3339Time = Annotated[datetime, PlainValidator(_rfc3339), WithJsonSchema(TIME_SCHEMA)]
QueryFlag = Annotated[bool, PlainValidator(_query_flag), WithJsonSchema({"type": "boolean"})]
MarginMinutes = Annotated[
    int,
    PlainValidator(_margin_minutes),
    WithJsonSchema({"type": "integer", "minimum": 0, "maximum": MAX_MARGIN_MINUTES}),
]
HostName = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_no_nul)]
TimeZoneName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64),
    AfterValidator(_no_nul),
    AfterValidator(_iana_zone),
]
GoogleCalendarId = Annotated[
    str, StringConstraints(min_length=1, max_length=1024), AfterValidator(_no_nul)
]
NoteText = Annotated[str, StringConstraints(max_length=MAX_NOTE_LENGTH), AfterValidator(_no_nul)]


def _max_window_days(info: ValidationInfo) -> int:
    """The longest window a read may ask for (CALSYNC_MAX_WINDOW_DAYS), which the view
    passes in: `parse_query(BusyQuery, max_window_days=...)`."""
    return int((info.context or {})["max_window_days"])


# --- Request bodies ------------------------------------------------------------------------


class RequestBody(BaseModel):
    """A JSON object with known keys only: a typo (`timezone` for `timeZone`) must not
    silently leave a setting unchanged. Strict: `1` is not `true`, `"5"` is not `5`."""

    model_config = ConfigDict(extra="forbid", strict=True, alias_generator=to_camel)


# The keys and defaults are the busy rules' own, so a new policy switch appears here by itself.
BusyPolicy = create_model(  # type: ignore[call-overload]  # fields built from a dict
    "BusyPolicy",
    __base__=RequestBody,
    __doc__="Which kinds of events block time. tentativeBusy also covers unanswered "
    "invitations. Keys left out keep their value (their default on a new host).",
    **{key: (bool, default) for key, default in BusyPolicyRules().to_json().items()},
)


class HostCreate(RequestBody):
    name: HostName
    time_zone: TimeZoneName = Field(
        default="UTC", description="IANA zone for calendars whose zone Google has not reported"
    )
    busy_policy: BusyPolicy = absent()  # type: ignore[valid-type]


class HostPatch(RequestBody):
    """busyPolicy keys given replace the stored ones; the others are kept."""

    name: HostName = absent()
    time_zone: TimeZoneName = absent()
    busy_policy: BusyPolicy = absent()  # type: ignore[valid-type]


MAX_CREDENTIAL_LENGTH = 4096
MAX_EMAIL_LENGTH = 320  # google_accounts.email


class GoogleCredentials(RequestBody):
    """Google authorized-user JSON; other keys are kept as given."""

    model_config = ConfigDict(extra="allow", alias_generator=None)

    client_id: str
    client_secret: str
    refresh_token: str
    credentials_type: str = Field(default=None, alias="type")  # type: ignore[assignment]
    token_uri: str = absent()

    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any) -> Any:
        """Text the database can store: no NUL, valid Unicode, bounded (the email column).
        Reported under the key itself (`client_id: ...`), not under `credentials`."""
        if not isinstance(data, dict):
            return data
        for key, value in data.items():
            if not isinstance(value, str):
                continue
            limit = MAX_EMAIL_LENGTH if key == "account" else MAX_CREDENTIAL_LENGTH
            problem = None
            if len(value) > limit:
                problem = f"must be at most {limit} characters"
            elif "\x00" in value:
                problem = "must not contain NUL characters"
            else:
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    problem = "must be valid Unicode text"
            if problem:
                raise PydanticCustomError(
                    "invalid_field", "{message}", {"message": problem, "field": str(key)}
                )
        return data


class CalendarAttach(RequestBody):
    google_calendar_id: GoogleCalendarId
    credentials: GoogleCredentials


class CalendarItem(RequestBody):
    id: GoogleCalendarId = Field(
        description="a Google calendar id, or calsync's numeric calendar id as a string"
    )


class FreeBusyRequest(RequestBody):
    """Google's freeBusy.query request. items[].id: a Google calendar id or calsync's
    numeric calendar id (as a string), among the caller's calendars."""

    time_min: Rfc3339Time
    time_max: Rfc3339Time
    time_zone: TimeZoneName = absent()
    # Google's expansion limits mean nothing here (no groups); accepted and ignored.
    group_expansion_max: int = absent()
    calendar_expansion_max: int = absent()
    items: list[CalendarItem] = Field(default_factory=list, max_length=MAX_FREEBUSY_ITEMS)

    @model_validator(mode="after")
    def _window(self, info: ValidationInfo) -> FreeBusyRequest:
        check_window(self.time_min, self.time_max, _max_window_days(info))
        return self


class ManualBlockCreate(RequestBody):
    """At least one minute, at most 366 days."""

    start: Rfc3339Time
    end: Rfc3339Time
    note: NoteText = ""

    @model_validator(mode="after")
    def _length(self) -> ManualBlockCreate:
        if self.end - self.start < MIN_BLOCK_LENGTH:
            raise bad_parameter("end", "a block must be at least one minute long (end after start)")
        if self.end - self.start > MAX_BLOCK_LENGTH:
            raise bad_parameter("end", "a block can be at most 366 days long")
        return self


# --- Query strings -------------------------------------------------------------------------


class QueryString(BaseModel):
    """Query parameters; unknown ones are ignored (cache busters, `token` on pages)."""

    model_config = ConfigDict(extra="ignore", alias_generator=to_camel)


def required_time(description: str) -> Any:
    """A time parameter the query must have. Validated when absent too, so a missing one
    gets `parse_rfc3339`'s own message with an example; the model lists it as required."""
    return Field(default=None, validate_default=True, description=description)


class BusyQuery(QueryString):
    model_config = ConfigDict(json_schema_extra={"required": ["timeMin", "timeMax"]})

    time_min: Rfc3339Time = required_time("window start, RFC 3339 with offset")
    time_max: Rfc3339Time = required_time("window end (exclusive), later than timeMin")
    strict: QueryFlag = Field(default=False, description="503 instead of possibly stale data")

    @model_validator(mode="after")
    def _window(self, info: ValidationInfo) -> BusyQuery:
        check_window(self.time_min, self.time_max, _max_window_days(info))
        return self


class BlockListQuery(QueryString):
    time_min: Rfc3339Time = Field(  # type: ignore[assignment]  # absent, not null
        default=None, description="with timeMax: only blocks overlapping the window"
    )
    time_max: Rfc3339Time = Field(  # type: ignore[assignment]  # absent, not null
        default=None, description="with timeMin: only blocks overlapping the window"
    )

    @model_validator(mode="after")
    def _window(self, info: ValidationInfo) -> BlockListQuery:
        if self.time_min is None and self.time_max is None:
            return self
        start = parse_rfc3339(None, "timeMin") if self.time_min is None else self.time_min
        end = parse_rfc3339(None, "timeMax") if self.time_max is None else self.time_max
        # Listing is cheap; the window only filters, so allow up to the longest block.
        check_window(start, end, max(_max_window_days(info), MAX_BLOCK_LENGTH.days))
        return self


class ExplainQuery(QueryString):
    model_config = ConfigDict(json_schema_extra={"required": ["at"]})

    at: Rfc3339Time = required_time("the instant asked about, RFC 3339 with offset")
    margin_minutes: MarginMinutes = Field(
        default=DEFAULT_MARGIN_MINUTES,
        description=f"also list items this many minutes around `at` "
        f"(default {DEFAULT_MARGIN_MINUTES})",
    )


class ConnectQuery(QueryString):
    """The connect link a host opens in the browser."""

    model_config = ConfigDict(json_schema_extra={"required": ["host"]})

    host: QueryId = Field(  # validated when absent: required
        default=None, validate_default=True, description="the host to connect"
    )
    account: QueryId = Field(  # type: ignore[assignment]  # absent, not null
        default=None, description="reconnect this existing account of the host"
    )
    calendar: GoogleCalendarId = Field(  # type: ignore[assignment]  # absent, not null
        default=None, description="Google calendar id to attach (default: primary)"
    )
    token: str = Field(  # type: ignore[assignment]  # absent, not null
        default=None,
        description="the host's feed token (never an admin or API token; or send a bearer "
        "header instead)",
    )


class ConnectConfirmForm(BaseModel):
    """The confirmation form of the connect flow (POSTed by the page the callback shows)."""

    csrf: str = Field(description="the form's signed anti-forgery value")


# --- Responses (documented; the views build them as dicts) ---------------------------------


class Answer(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel)


class ErrorDetail(Answer):
    """code: stable machine name; message: what is wrong and what to do."""

    code: str
    message: str


class Error(Answer):
    """Every non-2xx answer; some add top-level keys (parameter, field, ...)."""

    error: ErrorDetail


class Host(Answer):
    id: int
    name: str
    time_zone: str
    busy_policy: BusyPolicy  # type: ignore[valid-type]
    created_at: datetime


class HostCreated(Host):
    api_token: str = Field(description="The host's token; shown only this once.")


class TokenRotated(Answer):
    id: int
    api_token: str = Field(
        description="The host's new API token, shown only this once; the old one no longer works."
    )


class SignInLink(Answer):
    """A one-time sign-in link to the host's own pages: good for 15 minutes, once."""

    id: int
    url: str = Field(description="Open in the host's browser: signs it in for 30 days")
    expires_at: str = Field(description="RFC 3339; the link stops working then, used or not")


class FeedToken(Answer):
    """A new feed token (the old one stops working), with what a booking tool needs to read
    the host's busy time: the CalDAV account and the ICS feed URL. Shown only this once."""

    id: int
    feed_token: str = Field(
        description="Read-only token of this host's busy time for links; shown only this once."
    )
    status_page_url: str = Field(description="The host's status page, opened with the token")
    caldav_url: str = Field(description="CalDAV server URL (discovery finds the calendar)")
    username: str = Field(description="CalDAV username: the host id")
    password: str = Field(description="CalDAV password: the feed token")
    ics_url: str = Field(description="The ICS feed of the host's busy time")


class Redecided(Answer):
    events_changed: int
    blocks_added: int
    blocks_removed: int


class HostPatched(Host):
    redecided: Redecided = Field(  # type: ignore[assignment]  # absent, not null
        default=None, description="present when the busy policy changed"
    )


class Freshness(Answer):
    """How far a calendar's stored busy time can be trusted. stale: not ok, or a known
    change waits longer than CALSYNC_STALE_AFTER_SECONDS, or never synced."""

    id: int
    google_calendar_id: str
    state: CalendarState
    synced_at: datetime | None
    lag_seconds: float | None
    stale: bool


class Calendar(Freshness):
    host_id: int
    time_zone: str | None
    summary: str | None


class CalendarAttached(Calendar):
    """backgroundQueued false: the broker was down; the safety-net sync starts the calendar
    later."""

    created: bool
    background_queued: bool


class CalendarList(Answer):
    calendars: list[Calendar]


class SyncRun(Answer):
    kind: SyncKind
    trigger: str | None
    outcome: SyncOutcome
    started_at: datetime | None
    duration_ms: int | None
    pages: int | None
    events_seen: int | None
    blocks_upserted: int | None
    blocks_deleted: int | None
    notification_lag_ms: int | None
    error: str | None


class LastError(Answer):
    code: str
    message: str = Field(description="in plain words, with what to do")
    detail: str | None


class AuditRange(Answer):
    start: str
    end: str


class LastAudit(Answer):
    at: datetime
    matched: bool
    outcome: Literal["matched", "mismatch", "persistent"]
    window_start: datetime
    window_end: datetime
    differences: list[AuditRange] = Field(description="UTC ranges busy on one side only")
    differing_seconds: float
    policy_touched_events: int = Field(
        description="events the host's busy policy decides otherwise than Google's semantics; "
        "compared by their stored facts under the default policy"
    )


class AuditQueued(Answer):
    calendar_id: int
    queued: bool
    sync_status_url: str


class SyncStatus(Answer):
    calendar_id: int
    host_id: int
    google_calendar_id: str
    time_zone: str | None
    state: CalendarState
    stale: bool
    lag_seconds: float | None
    dirty_since: datetime | None
    last_notification_at: datetime | None
    last_success_at: datetime | None
    last_attempt_at: datetime | None
    full_sync_at: datetime | None
    channel_expires_at: datetime | None
    watch_problem: str | None
    polling: str | None = Field(description="why the calendar is polled instead of pushed")
    watch_retry_at: datetime | None = Field(
        default=None, description="when a watch Google refused is tried again"
    )
    reconnect_url: str | None = Field(description="where to grant access again")
    consecutive_failures: int
    last_error: LastError | None
    differs_from_google: bool = Field(
        description="the last audit still differed from Google's freeBusy after a full resync"
    )
    last_audit: LastAudit | None
    recent_runs: list[SyncRun]


class EventSource(Answer):
    model_config = ConfigDict(extra="forbid")

    type: Literal["event"]
    calendar_id: int
    event_id: str


class ManualSource(Answer):
    model_config = ConfigDict(extra="forbid")

    type: Literal["manual"]
    block_id: int


class BusyInterval(Answer):
    start: datetime
    end: datetime
    sources: list[Annotated[EventSource | ManualSource, Field(discriminator="type")]]


class Busy(Answer):
    time_min: datetime
    time_max: datetime
    busy: list[BusyInterval]
    calendars: list[Freshness]
    stale: bool


class StaleError(Error):
    stale_calendars: list[Freshness]


class FreeBusyError(Answer):
    """global/notFound: unknown id; global/ambiguous: the Google id names several calendars
    (use the numeric id); calsync/notSyncedYet, calsync/failing, calsync/needs_reauth: the
    busy time given is not to be trusted."""

    domain: str
    reason: str


class TimeRange(Answer):
    start: datetime
    end: datetime


class FreeBusyCalendar(Answer):
    busy: list[TimeRange]
    errors: list[FreeBusyError] = absent()
    calendar_id: int = absent()
    state: CalendarState = absent()
    synced_at: datetime | None = absent()
    lag_seconds: float | None = absent()
    stale: bool = absent()


class FreeBusyResponse(Answer):
    kind: Literal["calendar#freeBusy"]
    time_min: datetime
    time_max: datetime
    calendars: dict[str, FreeBusyCalendar]
    stale: bool


class ManualBlock(Answer):
    id: int
    host_id: int
    start: datetime
    end: datetime
    note: str
    created_at: datetime


class ManualBlockList(Answer):
    blocks: list[ManualBlock]


class Coverage(StrEnum):
    """Whether calsync can know a calendar's events at an instant."""

    SYNCED = "synced"
    NOT_SYNCED_YET = "not_synced_yet"
    OUTSIDE_HORIZON = "outside_horizon"


class ExplainItem(Answer):
    type: Literal["event", "manual"]
    calendar_id: int = absent()
    event_id: str = absent()
    block_id: int = absent()
    summary: str | None
    start: datetime
    end: datetime
    all_day: bool
    busy: bool
    covers_at: bool
    reason: Reason
    explanation: str


class ExplainCalendar(Freshness):
    coverage: Coverage
    explanation: str


class Explain(Answer):
    at: datetime
    margin_minutes: int
    busy: bool
    summary: str
    items: list[ExplainItem]
    calendars: list[ExplainCalendar]


class Health(Answer):
    status: Literal["ok"]


class Ready(Answer):
    status: Literal["ok"]
    checks: dict[str, Any]


# --- Outbound webhooks ------------------------------------------------------------------


MAX_DESCRIPTION_LENGTH = 500
MAX_ENDPOINT_HOSTS = 1000
EndpointUrl = Annotated[
    str, StringConstraints(min_length=1, max_length=2048), AfterValidator(_no_nul)
]
DescriptionText = Annotated[
    str, StringConstraints(max_length=MAX_DESCRIPTION_LENGTH), AfterValidator(_no_nul)
]
HostIdList = Annotated[
    list[Annotated[int, Field(ge=1, le=MAX_ID)]],
    Field(min_length=1, max_length=MAX_ENDPOINT_HOSTS),
]


class WebhookEndpointCreate(RequestBody):
    """url: https:// (plain http:// only to loopback), no user name or password, at most
    2,048 characters, not resolving to link-local or metadata addresses. hostIds: whose
    events it receives; left out, every host (admin) or the calling host (host token)."""

    url: EndpointUrl
    host_ids: HostIdList = absent()
    description: DescriptionText = ""


class WebhookEndpointPatch(RequestBody):
    """Keys left out keep their value. enabled: true turns a failing or disabled endpoint
    back on (retrying what waits), false disables it."""

    url: EndpointUrl = absent()
    host_ids: HostIdList = absent()
    description: DescriptionText = absent()
    enabled: bool = absent()


class ReplayRequest(RequestBody):
    since: Rfc3339Time = Field(description="re-send every event delivered since this time")


class WebhookEndpoint(Answer):
    id: str
    url: str
    host_ids: list[int] | None = Field(description="null: every host")
    description: str
    state: EndpointState
    state_reason: str | None = Field(description="why it is failing or disabled, in words")
    failing_since: datetime | None
    previous_secret_expires_at: datetime | None = Field(
        description="until then the previous secret signs beside the current one"
    )
    created_at: datetime


class WebhookEndpointCreated(WebhookEndpoint):
    secret: str = Field(description="Standard Webhooks secret (whsec_...); shown only once")


class WebhookEndpointList(Answer):
    endpoints: list[WebhookEndpoint]


class WebhookSecretRotated(Answer):
    id: str
    secret: str = Field(description="the new secret, shown only once")
    previous_secret_expires_at: datetime


class WebhookDelivery(Answer):
    id: int
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_duration_ms: int | None
    last_error: str | None = Field(description="what went wrong, in words")
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime


class WebhookDeliveryList(Answer):
    deliveries: list[WebhookDelivery]


class WebhookPingQueued(Answer):
    delivery_id: int
    event_id: str


class WebhookReplayQueued(Answer):
    requeued: int = Field(description="deliveries queued to be sent again")
