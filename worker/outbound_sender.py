"""One HTTP attempt of an outbound webhook: the address checked again (a name may resolve
elsewhere since it was registered), the body signed the Standard Webhooks way with every
current secret, POSTed with `requests` (timeout, redirects never followed), the answer
turned into words."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import urllib3
from standardwebhooks import Webhook
from urllib3.exceptions import HTTPError
from urllib3.exceptions import TimeoutError as NoAnswerInTime
from urllib3.util import parse_url

from models.outbound_deliveries import Attempt, DeliveryWork
from models.outbound_endpoints import check_destination
from rules.outbound_address import AddressRefused

USER_AGENT = "calsync-webhooks/1"
# A receiver's answer body is not needed; this much is read so the connection can be kept,
# a longer one is cut off with its connection (nobody makes calsync read gigabytes).
ANSWER_BYTES_READ = 64 * 1024


def signature_header(secrets: list[str], message_id: str, at: datetime, body: bytes) -> str:
    """`webhook-signature`: one `v1,…` per secret, space-separated (during a rotation the
    old and the new secret both sign, and a receiver accepts either)."""
    return " ".join(_signer(secret).sign(message_id, at, body) for secret in secrets)


@functools.lru_cache(maxsize=1024)
def _signer(secret: str) -> Webhook:
    return Webhook(secret)  # decodes the secret once, not once a delivery


def http_session(connections: int) -> urllib3.PoolManager:
    """The connections for one endpoint's deliveries, kept alive between attempts. urllib3
    takes nothing from the environment (no proxy, no .netrc credentials sent to a
    receiver), never retries by itself and, here, follows no redirect."""
    return urllib3.PoolManager(num_pools=4, maxsize=connections, retries=False)


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
    http: urllib3.PoolManager,
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
    # The URL parsed and its connection pool found once a batch too (all of an endpoint).
    pool = http.connection_from_url(batch[0].url)
    target = parse_url(batch[0].url).request_uri
    return list(map_(lambda work: send(work, timeout, pool, target), batch))


def send(
    work: DeliveryWork, timeout: float, pool: urllib3.HTTPConnectionPool, target: str
) -> Attempt:
    """One attempt to a destination already checked (`send_batch`): POST `target` (path
    and query) through `pool`, which keeps connections to the receiver alive."""
    started = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    body = work.body
    now = datetime.now(UTC)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": work.message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature_header(work.secrets, work.message_id, now, body),
    }
    try:
        answer = pool.urlopen(
            "POST",
            target,
            body=body,
            headers=headers,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            preload_content=False,
            redirect=False,
            retries=False,
        )
    except NoAnswerInTime:
        return Attempt(None, f"no answer within {timeout:g} s", took())
    except HTTPError as exc:
        return Attempt(None, f"could not connect: {type(exc).__name__}", took())
    code = answer.status
    _finish(answer)
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


def _finish(answer: urllib3.BaseHTTPResponse) -> None:
    """Read a short answer to its end, so its connection serves the next delivery; close
    the connection of a long or broken one."""
    try:
        if answer.read(ANSWER_BYTES_READ + 1)[ANSWER_BYTES_READ:]:
            answer.close()
    except HTTPError:
        answer.close()
    finally:
        answer.release_conn()
