"""Alert messages as Slack-compatible or PagerDuty Events v2 JSON, and their delivery.

What is sent: the summary, ids and machine codes of `worker.alert_rules`, and the host name
of PUBLIC_URL. Never a token, a credential, or a URL (the webhook URL itself is a secret:
logs name only its host).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from core.settings import Settings

log = logging.getLogger("calsync.alerts")

PAGERDUTY_HOST_SUFFIX = "pagerduty.com"
PAGERDUTY_PATH = "/v2/enqueue"
SUMMARY_LIMIT = 1024  # PagerDuty's payload.summary limit
DEDUP_KEY_LIMIT = 255
DELIVERY_TIMEOUT_SECONDS = 5
DELIVERY_ATTEMPTS = 4


@dataclass(frozen=True)
class AlertMessage:
    key: str
    action: str  # trigger | resolve
    rule: str
    severity: str
    summary: str
    at: datetime
    details: dict[str, Any] = field(default_factory=dict)


class DeliveryError(RuntimeError):
    """The receiver did not accept the message after retries."""


def uses_pagerduty(settings: Settings) -> bool:
    if settings.alert_format:
        return settings.alert_format == "pagerduty"
    parts = urlsplit(settings.alert_webhook_url or "")
    host = (parts.hostname or "").lower()
    return host.endswith(PAGERDUTY_HOST_SUFFIX) and parts.path.startswith(PAGERDUTY_PATH)


def source_name(settings: Settings) -> str:
    # Host name only: PUBLIC_URL could carry credentials in its user part.
    return f"calsync@{urlsplit(settings.public_url).hostname or 'localhost'}"


def slack_payload(message: AlertMessage) -> dict[str, Any]:
    if message.action == "resolve":
        return {"text": f":white_check_mark: RESOLVED: {message.summary}"}
    return {"text": f":rotating_light: {message.severity.upper()}: {message.summary}"}


def pagerduty_payload(message: AlertMessage, routing_key: str, source: str) -> dict[str, Any]:
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": message.action,
        "dedup_key": message.key[:DEDUP_KEY_LIMIT],
    }
    if message.action == "trigger":
        event["payload"] = {
            "summary": message.summary[:SUMMARY_LIMIT],
            "source": source,
            "severity": message.severity,
            "timestamp": message.at.isoformat(),
            "component": "calsync",
            "group": "calendar-sync",
            "class": message.rule,
            "custom_details": message.details,
        }
    return event


def payload_for(message: AlertMessage, settings: Settings) -> dict[str, Any]:
    if uses_pagerduty(settings):
        return pagerduty_payload(
            message, settings.pagerduty_routing_key or "", source_name(settings)
        )
    return slack_payload(message)


class _Retryable(Exception):
    pass


def post_alert(url: str, payload: dict[str, Any]) -> None:
    """POST the JSON; connection errors, 429 and 5xx are retried with jittered backoff."""

    def attempt() -> None:
        try:
            response = requests.post(url, json=payload, timeout=DELIVERY_TIMEOUT_SECONDS)
        except requests.RequestException as exc:
            raise _Retryable(type(exc).__name__) from None
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retryable(f"HTTP {response.status_code}")
        if response.status_code >= 400:
            raise DeliveryError(f"HTTP {response.status_code}")

    retrying = Retrying(
        retry=retry_if_exception_type(_Retryable),
        wait=wait_random_exponential(multiplier=0.2, max=3),
        stop=stop_after_attempt(DELIVERY_ATTEMPTS),
        reraise=True,
    )
    host = urlsplit(url).hostname
    try:
        retrying(attempt)
    except (_Retryable, DeliveryError) as exc:
        log.warning("alert_delivery_failed receiver_host=%s error=%s", host, exc)
        raise DeliveryError(str(exc)) from None
