"""One HTTP attempt of an outbound webhook: the address checked again (a name may resolve
elsewhere since it was registered), the body signed the Standard Webhooks way with every
current secret, POSTed with `requests` (timeout, redirects never followed), the answer
turned into words."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import requests
from standardwebhooks import Webhook

from models.outbound_deliveries import Attempt, DeliveryWork
from models.outbound_endpoints import check_destination
from rules.outbound_address import AddressRefused

USER_AGENT = "calsync-webhooks/1"


def signature_header(secrets: list[str], message_id: str, at: datetime, body: bytes) -> str:
    """`webhook-signature`: one `v1,…` per secret, space-separated (during a rotation the
    old and the new secret both sign, and a receiver accepts either)."""
    return " ".join(Webhook(secret).sign(message_id, at, body) for secret in secrets)


def http_session() -> requests.Session:
    """A session for one endpoint's deliveries: connections kept alive, and nothing taken
    from the environment (no proxy, no .netrc credentials sent to a receiver; it also
    spares a .netrc lookup per request)."""
    http = requests.Session()
    http.trust_env = False
    return http


def outcome_of(attempt: Attempt) -> str:
    if attempt.ok:
        return "delivered"
    if attempt.status_code is not None:
        return "http_error"
    error = attempt.error or ""
    if error.startswith("refused"):
        return "refused"
    if error.startswith("no answer"):
        return "timeout"
    return "network_error"


def send_batch(
    batch: list[DeliveryWork],
    timeout: float,
    http: requests.Session,
    map_: Callable[[Callable[[DeliveryWork], Attempt], list[DeliveryWork]], Iterable[Attempt]],
) -> list[Attempt]:
    """One attempt for each delivery of an endpoint's batch (`map_`: how they run side by
    side). The destination is checked once a batch, its name resolved again (it may point
    elsewhere since it was registered), not once a request."""
    started = time.monotonic()
    try:
        check_destination(batch[0].url)
    except AddressRefused as exc:
        took = int((time.monotonic() - started) * 1000)
        return [Attempt(None, f"refused: {exc}", took) for _ in batch]
    return list(map_(lambda work: send(work, timeout, http), batch))


def send(work: DeliveryWork, timeout: float, http: requests.Session) -> Attempt:
    """One attempt to a destination already checked (`send_batch`); `http` keeps
    connections to the receiver alive between attempts."""
    started = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    body = json.dumps(work.body, separators=(",", ":")).encode()
    now = datetime.now(UTC)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": work.message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature_header(work.secrets, work.message_id, now, body),
    }
    try:
        answer = http.post(
            work.url, data=body, headers=headers, timeout=timeout, allow_redirects=False
        )
    except requests.Timeout:
        return Attempt(None, f"no answer within {timeout:g} s", took())
    except requests.RequestException as exc:
        return Attempt(None, f"could not connect: {type(exc).__name__}", took())
    answer.close()
    code = answer.status_code
    if 200 <= code < 300:
        return Attempt(code, None, took())
    if 300 <= code < 400:
        return Attempt(
            code,
            f"the receiver answered {code} (a redirect); redirects are never followed, "
            "register the final URL",
            took(),
        )
    return Attempt(code, f"the receiver answered {code}", took())
