"""Google push receiver: `POST /webhooks/google` (DESIGN.md, "The flow", step 1).

On the hot path, so it does the least that is safe: check the headers, authenticate the
channel, and record the notification. With PostgreSQL + Redis that is one Lua script in
Redis (intake/redis_intake.py; beat's drainer marks the calendars dirty in batches and
enqueues the clean→dirty transitions); otherwise the calendar is marked dirty in one
statement here and a sync is enqueued only on the clean→dirty transition, after the commit.
Either way a burst of notifications is one fetch. It never calls Google and never imports
the sync engine; the worker asks Google what changed.

Google retries 500/502/503/504 and counts 2xx as delivered, so every "try again later"
condition (database or broker down) answers 503, and everything Google should not retry
(forged, stale or malformed messages) answers 4xx without touching stored data.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import redis
from flask import Blueprint, Response, request
from sqlalchemy import Connection, Row
from werkzeug.datastructures import Headers
from werkzeug.exceptions import RequestEntityTooLarge

from core import metrics
from intake.channel_cache import LiveChannel
from intake.records import (
    MAX_STORED_MESSAGE_NUMBER,
    ChannelMessage,
    find_live_channel,
    record_change_notification,
    record_sync_message,
    unmark_dirty,
)
from intake.runtime import IntakeRuntime, intake_runtime
from intake.spool import IntakeRecord
from models.base import utcnow
from models.calendars import channel_token_hash
from models.db import DATABASE_UNAVAILABLE_ERRORS
from webhook.errors import error_response
from webhook.request_scope import app_settings, request_connection
from worker import enqueue as task_queue

log = logging.getLogger("calsync.webhook.push")

push_receiver = Blueprint("push_receiver", __name__)

RESOURCE_STATES = frozenset({"sync", "exists", "not_exists"})
# Google's documented limits for a channel's id and token; resource ids fit the column.
MAX_CHANNEL_ID_LENGTH = 64
MAX_TOKEN_LENGTH = 256
MAX_RESOURCE_ID_LENGTH = 256
MAX_MESSAGE_NUMBER_DIGITS = 20


class Outcome(StrEnum):
    """Stable names for what happened to a notification (the metrics label values)."""

    ACCEPTED = "accepted"
    SYNC_ACK = "sync_ack"
    UNKNOWN_CHANNEL = "unknown_channel"
    BAD_TOKEN = "bad_token"
    RESOURCE_MISMATCH = "resource_mismatch"
    MALFORMED = "malformed"
    BODY_NOT_ALLOWED = "body_not_allowed"
    BODY_TOO_LARGE = "body_too_large"
    UNAVAILABLE = "unavailable"


OUTCOMES: tuple[str, ...] = tuple(outcome.value for outcome in Outcome)

metrics.init_webhook_outcomes(OUTCOMES)


def record_outcome(outcome: str) -> None:
    """Called once per request with one of OUTCOMES."""
    metrics.observe_webhook_outcome(outcome)


@dataclass(frozen=True)
class Notification:
    channel_id: str
    token: str | None
    resource_id: str
    resource_state: str
    message_number: int


class Rejection(Exception):
    """A notification refused with a status; `code` defaults to the outcome name."""

    def __init__(self, outcome: Outcome, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.outcome = outcome
        self.status = status
        self.message = message
        self.code = code or outcome.value


def _malformed(message: str) -> Rejection:
    return Rejection(Outcome.MALFORMED, 400, message)


def _header(headers: Headers, name: str, max_length: int) -> str | None:
    value = (headers.get(name) or "").strip()
    if len(value) > max_length:
        raise _malformed(f"{name} is longer than {max_length} characters.")
    return value or None


def _required_header(headers: Headers, name: str, max_length: int) -> str:
    value = _header(headers, name, max_length)
    if value is None:
        raise _malformed(f"{name} header is missing or blank.")
    return value


def parse_notification(headers: Headers) -> Notification:
    """The notification's headers, checked; raises a 400 `Rejection` when malformed."""
    channel_id = _required_header(headers, "X-Goog-Channel-ID", MAX_CHANNEL_ID_LENGTH)
    resource_state = _required_header(headers, "X-Goog-Resource-State", 32)
    if resource_state not in RESOURCE_STATES:
        raise _malformed("X-Goog-Resource-State must be one of sync, exists, not_exists.")
    resource_id = _required_header(headers, "X-Goog-Resource-ID", MAX_RESOURCE_ID_LENGTH)
    number = _required_header(headers, "X-Goog-Message-Number", MAX_MESSAGE_NUMBER_DIGITS)
    # isascii: str.isdigit also accepts digits int() refuses (e.g. superscripts).
    if not (number.isascii() and number.isdigit()):
        raise _malformed("X-Goog-Message-Number must be a whole number.")
    token = _header(headers, "X-Goog-Channel-Token", MAX_TOKEN_LENGTH)
    return Notification(channel_id, token, resource_id, resource_state, int(number))


def _refuse_body() -> None:
    """Google sends no body; refuse one without ever reading more than MAX_CONTENT_LENGTH."""
    limit = request.max_content_length
    length = request.content_length
    if length is not None:
        if limit is not None and length > limit:
            raise Rejection(Outcome.BODY_TOO_LARGE, 413, "Request body too large.")
        if length > 0:
            raise Rejection(Outcome.BODY_NOT_ALLOWED, 400, "Push notifications have no body.")
        return
    # A streamed (chunked) body: the WSGI server ends it and werkzeug caps it at the limit,
    # raising RequestEntityTooLarge past it; read it out to tell "some" from "too much".
    seen = 0
    try:
        while chunk := request.stream.read(16 * 1024):
            seen += len(chunk)
    except RequestEntityTooLarge:
        raise Rejection(Outcome.BODY_TOO_LARGE, 413, "Request body too large.") from None
    if seen:
        raise Rejection(Outcome.BODY_NOT_ALLOWED, 400, "Push notifications have no body.")


def _authenticate(
    channel: Row | LiveChannel | None, notification: Notification
) -> Row | LiveChannel:
    if channel is None:
        raise Rejection(Outcome.UNKNOWN_CHANNEL, 404, "Unknown or stopped channel.")
    # The stored hash against the hash of what was sent (once per request), in constant time.
    given = channel_token_hash(notification.token or "")
    if not hmac.compare_digest(channel.token_hash.encode(), given.encode()):
        raise Rejection(Outcome.BAD_TOKEN, 403, "Channel token does not match.")
    if channel.resource_id is not None and channel.resource_id != notification.resource_id:
        raise Rejection(Outcome.RESOURCE_MISMATCH, 403, "Resource id does not match the channel.")
    return channel


def _unavailable(what: str) -> Rejection:
    return Rejection(
        Outcome.UNAVAILABLE, 503, f"The {what} is unavailable; retry later.", f"{what}_unavailable"
    )


def _enqueue_or_undo(connection: Connection, calendar_id: int, received_at: datetime) -> None:
    # Sent directly, not through worker.enqueue.after_commit: this path has no Session
    # transaction to hook. The connection is in autocommit mode, so the dirty mark is
    # committed when its statement returns, and this is already "after the commit"; and a
    # failed send must undo the mark and answer 503, which a commit hook could not do.
    try:
        task_queue.enqueue_sync(calendar_id, reason="push")
    except Exception as exc:
        if not isinstance(exc, task_queue.EnqueueError):
            log.exception("enqueue_failed calendar_id=%s", calendar_id)
        # Undo the clean→dirty transition so Google's retry (we answer 503) enqueues again.
        try:
            unmark_dirty(connection, calendar_id, received_at)
        except DATABASE_UNAVAILABLE_ERRORS as undo_exc:
            # The mark stays; the sweeper re-enqueues the calendar once the broker is back.
            log.warning(
                "unmark_dirty_failed calendar_id=%s error=%s",
                calendar_id,
                type(undo_exc).__name__,
            )
        raise _unavailable("broker") from exc


def _load_live_channel(channel_id: str) -> LiveChannel | None:
    row = find_live_channel(request_connection(), channel_id)
    return None if row is None else LiveChannel(row.token_hash, row.calendar_id, row.resource_id)


def _hand_to_intake(
    notification: Notification, received_at: datetime, runtime: IntakeRuntime
) -> Outcome:
    """The Redis intake path (intake/redis_intake.py): authenticate against the channel
    cache and append the notification to this process's spool; its forwarder sends it to
    Redis within milliseconds and the drainer writes the database."""
    try:
        channel = runtime.channels.get(notification.channel_id, _load_live_channel)
    except DATABASE_UNAVAILABLE_ERRORS as exc:
        log.warning("database_unavailable error=%s", type(exc).__name__)
        raise _unavailable("database") from exc
    calendar_id = _authenticate(channel, notification).calendar_id
    forwarder = runtime.forwarder
    try:
        forwarder.ensure_started()
    except redis.RedisError as exc:
        log.warning("broker_unavailable error=%s", type(exc).__name__)
        raise _unavailable("broker") from exc
    if forwarder.broker_down:
        raise _unavailable("broker")
    if forwarder.database_down:
        raise _unavailable("database")
    number = notification.message_number
    record = IntakeRecord(
        calendar_id=calendar_id,
        channel_id=notification.channel_id,
        received_at=received_at,
        message_number=number if number <= MAX_STORED_MESSAGE_NUMBER else None,
    )
    try:
        forwarder.spool.append(record)
    except OSError as exc:
        log.error("push_spool_write_failed error=%s", exc)
        raise _unavailable("spool") from exc
    forwarder.wake()
    return Outcome.ACCEPTED


def handle_notification(notification: Notification, received_at: datetime) -> Outcome:
    """Authenticate and apply one checked notification; raises `Rejection`.

    Change notifications go through the Redis intake when the settings choose it; `sync`
    messages (one per new channel) and every other setup take the direct path below.

    Every statement commits on its own (autocommit; no BEGIN/COMMIT round trips): the
    lookup only reads, the channel bookkeeping is idempotent, and the dirty mark is one
    atomic statement that says whether it made the clean→dirty transition, so the task is
    sent only after the mark is committed."""
    settings = app_settings()
    if settings.uses_redis_intake and notification.resource_state != "sync":
        try:
            runtime = intake_runtime(settings)
        except OSError as exc:  # the spool directory cannot be created or locked
            log.error("push_spool_unavailable error=%s", exc)
            raise _unavailable("spool") from exc
        return _hand_to_intake(notification, received_at, runtime)
    try:
        connection = request_connection()
        found = find_live_channel(connection, notification.channel_id)
        calendar_id = _authenticate(found, notification).calendar_id
        message = ChannelMessage(
            notification.channel_id, notification.resource_id, notification.message_number
        )
        if notification.resource_state == "sync":
            record_sync_message(connection, message, received_at)
            return Outcome.SYNC_ACK
        became_dirty = record_change_notification(connection, calendar_id, received_at, message)
    except DATABASE_UNAVAILABLE_ERRORS as exc:
        log.warning("database_unavailable error=%s", type(exc).__name__)
        raise _unavailable("database") from exc
    if became_dirty:
        _enqueue_or_undo(connection, calendar_id, received_at)
    return Outcome.ACCEPTED


def _log_rejection(rejection: Rejection) -> None:
    # Never the token. Header values are client-controlled: cut to the channel-id limit.
    def shown(name: str) -> str:
        return repr(request.headers.get(name, "")[:MAX_CHANNEL_ID_LENGTH])

    log.log(
        logging.WARNING if rejection.status >= 500 else logging.INFO,
        "push_rejected outcome=%s status=%s code=%s channel_id=%s resource_state=%s "
        "message_number=%s remote_addr=%s",
        rejection.outcome.value,
        rejection.status,
        rejection.code,
        shown("X-Goog-Channel-ID"),
        shown("X-Goog-Resource-State"),
        shown("X-Goog-Message-Number"),
        request.remote_addr,
    )


@push_receiver.post("/webhooks/google")
def receive_google_push() -> Response:
    received_at = utcnow()
    try:
        _refuse_body()
        notification = parse_notification(request.headers)
        outcome = handle_notification(notification, received_at)
    except Rejection as rejection:
        _log_rejection(rejection)
        record_outcome(rejection.outcome.value)
        return error_response(rejection.status, rejection.code, rejection.message)
    record_outcome(outcome.value)
    return Response(status=204)
