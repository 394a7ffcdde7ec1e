"""Deliveries end to end in one process: the API registers an endpoint and changes busy
time, the outbound tasks run as a worker would, and a real HTTP receiver verifies every
request with the standardwebhooks package."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import redis
import time_machine
from sqlalchemy import event, select, update
from standardwebhooks import Webhook

from core.settings import Settings, configure, get_settings
from models import (
    OutboxEvent,
    WebhookDelivery,
    WebhookEndpoint,
    outbound_deliveries,
    outbound_fanout,
)
from models.db import get_engine, session_scope
from models.registry import create_host
from tests.conftest import TEST_ADMIN_TOKEN
from worker import alert_notifier, fan_out_gate, outbound_tasks, sender_slots

from .conftest import Driver, Receiver

ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
DAY = (datetime.now(UTC) + timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)


def z(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def at(hour: float) -> str:
    return z(DAY + timedelta(hours=hour))


def new_host(name: str = "ann") -> tuple[int, dict[str, str]]:
    with session_scope() as session:
        host, token = create_host(session, name)
        return host.id, {"Authorization": f"Bearer {token}"}


def register(client, receiver: Receiver, headers=ADMIN, **fields) -> dict:
    answer = client.post(
        "/v1/webhook-endpoints", json={"url": receiver.url, **fields}, headers=headers
    )
    assert answer.status_code == 201, answer.get_json()
    created = answer.get_json()
    receiver.secrets.append(created["secret"])
    return created


def block(client, host_id: int, start: float, end: float, headers=ADMIN) -> int:
    answer = client.post(
        f"/v1/hosts/{host_id}/blocks", json={"start": at(start), "end": at(end)}, headers=headers
    )
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()["id"]


def test_a_manual_block_reaches_the_receiver_signed(client, receiver, driver: Driver) -> None:
    host_id, _ = new_host()
    endpoint = register(client, receiver, description="booking site")
    assert endpoint["secret"].startswith("whsec_") and endpoint["state"] == "active"
    block_id = block(client, host_id, 10, 11)
    driver.run()
    [event] = receiver.events()
    assert event["type"] == "busy.changed"
    assert (event["hostId"], event["cause"]) == (host_id, "manual_block_added")
    assert event["changed"] == [{"start": at(10), "end": at(11)}]
    assert "calendarId" not in event and event["id"].startswith("evt_")
    assert {"occurredAt", "asOf"} <= set(event)
    assert receiver.received[0].headers["webhook-id"] == event["id"]

    # Inside time already blocked: nothing changes, nothing is sent.
    block(client, host_id, 10.25, 10.75)
    driver.run()
    assert len(receiver.received) == 1

    assert client.delete(f"/v1/hosts/{host_id}/blocks/{block_id}", headers=ADMIN).status_code == 204
    driver.run()
    removed = receiver.events()[-1]
    assert removed["cause"] == "manual_block_removed"
    # The inner block still covers 10:15-10:45.
    assert removed["changed"] == [
        {"start": at(10), "end": at(10.25)},
        {"start": at(10.75), "end": at(11)},
    ]
    listed = client.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=ADMIN)
    deliveries = listed.get_json()["deliveries"]
    assert [(d["status"], d["lastStatusCode"], d["eventType"]) for d in deliveries] == [
        ("delivered", 204, "busy.changed")
    ] * 2
    assert deliveries[0]["lastDurationMs"] is not None and deliveries[0]["lastError"] is None


def test_an_event_is_encoded_once_for_every_endpoint(client, receiver, driver, monkeypatch) -> None:
    encoded = []
    event_body = outbound_deliveries.event_body

    def counted(event):
        encoded.append(event.id)
        return event_body(event)

    monkeypatch.setattr(outbound_deliveries, "event_body", counted)
    monkeypatch.setattr(outbound_deliveries, "_encoded", {})  # this test's events only
    host_id, _ = new_host()
    for n in range(3):
        register(client, receiver, description=f"site {n}")
    block(client, host_id, 10, 11)
    driver.run()
    assert len(receiver.events()) == 3  # each endpoint got it, signed with its own secret
    assert len({r.body for r in receiver.received}) == 1 and len(encoded) == 1
    # An id seen again with another commit time (SQLite may reuse the newest id once it is
    # pruned) is a different event: encoded afresh.
    [row] = outbound_deliveries._encoded
    with session_scope() as session:
        event = session.get(OutboxEvent, row[0])
        assert event is not None
        later = event.committed_at + timedelta(days=9)
        again = SimpleNamespace(
            **{**vars(event), "payload": {"changed": []}, "committed_at": later}
        )
    assert outbound_deliveries.event_json(again) != receiver.received[0].body
    assert b'"changed":[]' in outbound_deliveries.event_json(again)


def test_a_sender_takes_its_events_from_its_process_fan_out(
    client, receiver, driver, monkeypatch
) -> None:
    # The fan-out encodes what it committed; the senders of its process send those bytes
    # without reading the outbox rows back. What it did not encode is read.
    monkeypatch.setattr(outbound_deliveries, "_encoded", {})
    # The senders' read of outbox rows, told apart from the fan-out's (the same statement).
    marked = outbound_deliveries.OUTBOX_ROWS_BY_ID.execution_options(sender_read=True)
    monkeypatch.setattr(outbound_deliveries, "OUTBOX_ROWS_BY_ID", marked)
    outbox_reads = []

    def count(_conn, _cursor, statement, _parameters, context, _many) -> None:
        if context.execution_options.get("sender_read"):
            outbox_reads.append(statement)

    event.listen(get_engine(), "before_cursor_execute", count)
    try:
        host_id, _ = new_host()
        register(client, receiver)
        block(client, host_id, 10, 11)
        driver.run()
        assert len(receiver.events()) == 1 and outbox_reads == []
        register(client, receiver, description="second")  # gets the next event only
        block(client, host_id, 12, 13)
        with monkeypatch.context() as patched:  # a fan-out in another process, say
            patched.setattr(outbound_fanout, "event_json", lambda event: b"")
            driver.run()
        assert len(receiver.events()) == 3  # each one verified against its secret
        assert len(outbox_reads) == 1  # read by the first sender, encoded once for both
    finally:
        event.remove(get_engine(), "before_cursor_execute", count)


def test_failures_are_retried_in_order_and_nothing_is_lost(client, receiver, driver) -> None:
    host_id, _ = new_host()
    other_id, _ = new_host("bob")
    endpoint = register(client, receiver)
    receiver.answers = [500]
    for hour in (1, 3, 5):
        block(client, host_id, hour, hour + 1)
        driver.run()  # each change its own event (a host's pending rows would merge)
    block(client, other_id, 8, 9)
    first = client.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=ADMIN)
    rows = first.get_json()["deliveries"]
    assert [d["status"] for d in rows] == ["pending"] * 3
    assert rows[-1]["lastError"] == "the receiver answered 500"
    assert [d["attempts"] for d in rows] == [0, 0, 1]  # later ones wait for the first
    driver.run()  # another host's lane is not held up by ann's
    assert [e["hostId"] for e in receiver.events()] == [host_id, other_id]
    receiver.answers = ["slow", 503]
    for _ in range(4):
        driver.elapse_backoff()
    ann = [e for e in receiver.events() if e["hostId"] == host_id]
    arrival = [e["changed"][0]["start"] for e in ann]
    # Each retried until accepted, then the next: in order, every one, no gaps.
    assert list(dict.fromkeys(arrival)) == [at(1), at(3), at(5)]
    # The receiver saw 500, a timeout, 503, then accepted; only then the next events.
    assert arrival == [at(1)] * 4 + [at(3), at(5)]
    with session_scope() as session:
        statuses = set(session.scalars(select(WebhookDelivery.status)))
    assert statuses == {"delivered"}


def test_the_first_retry_waits_the_configured_delay(
    client, receiver, driver, outbound_settings: Settings
) -> None:
    def next_try_after_a_500(hour: int) -> float:
        receiver.answers = [500]
        block(client, host_id, hour, hour + 1)
        # The clock stands still: on a slow machine a 2 s retry could otherwise come within
        # the second a sender looks ahead while the driver still runs, and be tried at once.
        with time_machine.travel(datetime.now(UTC), tick=False):
            driver.run()
        with session_scope() as session:
            delivery = session.scalars(
                select(WebhookDelivery).order_by(WebhookDelivery.id.desc())
            ).first()
            assert delivery is not None and delivery.attempts == 1
            assert delivery.next_attempt_at is not None and delivery.last_attempt_at is not None
            wait = (delivery.next_attempt_at - delivery.last_attempt_at).total_seconds()
        driver.elapse_backoff()  # delivered: the next host change starts a fresh lane head
        return wait

    host_id, _ = new_host()
    register(client, receiver)
    assert 4 <= next_try_after_a_500(1) <= 6  # the default: 5 s ±20%
    # CALSYNC_OUTBOUND_FIRST_RETRY_SECONDS (tests shorten it to see retries sooner).
    configure(dataclasses.replace(outbound_settings, outbound_first_retry_seconds=2))
    assert 1.6 <= next_try_after_a_500(3) <= 2.4


def test_changes_within_the_window_go_out_as_one_event(
    client, receiver, driver, outbound_settings: Settings
) -> None:
    configure(dataclasses.replace(outbound_settings, outbound_coalesce_ms=400))
    host_id, _ = new_host()
    register(client, receiver)
    block(client, host_id, 1, 2)
    block(client, host_id, 2, 3)
    block(client, host_id, 6, 7)
    driver.run()  # still within the window: the fan-out asks to come back
    assert receiver.received == []
    time.sleep(0.45)
    driver.run()
    [event] = receiver.events()
    assert event["changed"] == [{"start": at(1), "end": at(3)}, {"start": at(6), "end": at(7)}]
    assert event["cause"] == "manual_block_added" and "causes" not in event  # one cause


def test_one_fan_out_message_waits_at_a_time(
    client, receiver, driver, outbound_settings: Settings
) -> None:
    # Each fan-out takes every ready host and sends the next message itself while a host
    # is inside its window: a second message (or a second chain of them) only queues
    # fan-outs behind each other (worker/fan_out_gate.py).
    configure(dataclasses.replace(outbound_settings, outbound_coalesce_ms=400))
    hosts = [new_host(f"host{n}")[0] for n in range(3)]
    register(client, receiver)
    for n, host_id in enumerate(hosts):
        block(client, host_id, n + 1, n + 2)
    assert [kind for kind, _ in driver.kinds()] == ["fan_out"]  # one for the three changes
    # A fan-out running meanwhile (the sweep, say) finds the hosts inside their window and
    # leaves them to the message that waits: no follow-up of its own.
    outbound_tasks.outbound_fan_out(None)
    assert [kind for kind, _ in driver.kinds()] == ["fan_out"]
    deadline = time.monotonic() + 5
    while len(receiver.events()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
        driver.run()
    assert sorted(event["hostId"] for event in receiver.events()) == sorted(hosts)


def test_a_fan_outs_follow_up_comes_no_sooner_than_fan_out_every(
    client, receiver, driver, outbound_settings: Settings
) -> None:
    # Under a stream of changes each fan-out wakes every endpoint's sender for a batch;
    # follow-ups every few ms cost more than the sending (bench/RESULTS.md §7, session 13).
    configure(dataclasses.replace(outbound_settings, outbound_coalesce_ms=30))
    ready, waiting = new_host("ready")[0], new_host("waiting")[0]
    register(client, receiver)
    block(client, ready, 1, 2)
    time.sleep(0.05)
    block(client, waiting, 1, 2)  # inside its 30 ms window when the fan-out runs
    driver.messages.clear()  # the writers' own messages, lost
    forget_shared_fan_out_gate()
    sent_at = time.monotonic()
    outbound_tasks.outbound_fan_out(None)
    follow_ups = [due for due, kind, _ in driver.messages if kind == "fan_out"]
    assert len(follow_ups) == 1
    assert follow_ups[0] - sent_at >= outbound_tasks.FAN_OUT_EVERY
    time.sleep(outbound_tasks.FAN_OUT_EVERY)
    driver.run()
    assert sorted(event["hostId"] for event in receiver.events()) == sorted([ready, waiting])


def test_fan_outs_of_one_process_run_one_at_a_time(driver, monkeypatch) -> None:
    # Two at once claim the same hosts' rows and the second waits on the first's row
    # locks inside PostgreSQL; here it waits its turn outside any transaction.
    running, most = 0, 0
    lock = threading.Lock()

    def slow_fan_out(now, coalesce):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return outbound_tasks.FanOutResult()

    monkeypatch.setattr(outbound_tasks, "fan_out", slow_fan_out)
    threads = [threading.Thread(target=outbound_tasks.outbound_fan_out, args=(None,))]
    threads += [threading.Thread(target=outbound_tasks.outbound_sweep) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == 1


def test_a_batch_goes_out_parallel_at_a_time_in_order_with_one_hand_over() -> None:
    in_flight, most, threads = 0, 0, set()
    lock = threading.Lock()

    def send(work):
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
            threads.add(threading.get_ident())
        time.sleep(0.02)
        with lock:
            in_flight -= 1
        return work * 10

    submitted = []

    class CountingPool(outbound_tasks.ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):
            submitted.append(fn)
            return super().submit(fn, *args, **kwargs)

    with CountingPool(outbound_tasks.PARALLEL - 1) as pool:
        map_ = outbound_tasks._striped(pool)
        assert map_(send, list(range(7))) == [n * 10 for n in range(7)]
        assert map_(send, [5]) == [50]  # one delivery: no hand-over at all
        assert map_(send, []) == []
    assert most == outbound_tasks.PARALLEL
    assert len(threads) == outbound_tasks.PARALLEL
    assert len(submitted) == outbound_tasks.PARALLEL - 1


def test_new_work_for_a_sender_running_here_only_wakes_it(client, receiver, driver) -> None:
    endpoint = register(client, receiver)["id"]
    arrival = outbound_tasks._arrival(endpoint)
    arrival.clear()
    outbound_tasks._senders_here[endpoint] += 1
    try:
        outbound_tasks.start_senders([endpoint])
    finally:
        outbound_tasks._senders_here[endpoint] -= 1
    assert arrival.is_set()
    assert driver.kinds() == []  # no second sender
    with session_scope() as session:
        assert session.get(WebhookEndpoint, endpoint).sender_until is None  # no transaction
    outbound_tasks.start_senders([endpoint])  # none here: one is started
    assert driver.kinds() == [("deliver", endpoint)]


def forget_shared_fan_out_gate() -> None:
    url = get_settings().broker_url
    if url.startswith("redis"):
        redis.Redis.from_url(url).delete(fan_out_gate.KEY)
    fan_out_gate.reset()


def _sender_with_a_change_meanwhile(client, receiver, driver, endpoint_id, host_id) -> int:
    """Run the endpoint's sender here while another thread, 0.3 s in, adds a busy change
    and fans it out; what the sender sent."""

    def change_meanwhile() -> None:
        time.sleep(0.3)
        block(client, host_id, 3, 4)
        outbound_tasks.outbound_fan_out(None)

    helper = threading.Thread(target=change_meanwhile)
    helper.start()
    try:
        return int(outbound_tasks.outbound_deliver(endpoint_id))
    finally:
        helper.join()


def test_a_sender_whose_lanes_ran_dry_waits_a_moment_for_more(
    client, receiver, driver, monkeypatch
) -> None:
    # Under load a fan-out makes deliveries every coalescing window: a sender that waits a
    # moment sends them, where a fresh sender task each window (its start, release and
    # due-work transactions and its message) cost more CPU than the sending.
    monkeypatch.setattr(sender_slots, "_slots", threading.Semaphore(1))
    host_id, _ = new_host()
    endpoint = register(client, receiver)
    block(client, host_id, 1, 2)
    outbound_tasks.outbound_fan_out(None)  # the sender's message is queued, not run
    sent = _sender_with_a_change_meanwhile(client, receiver, driver, endpoint["id"], host_id)
    assert sent == 2 and len(receiver.events()) == 2
    # The fan-out meanwhile found the sender running: no second sender message.
    assert [k for k in driver.kinds() if k[0] == "deliver"] == [("deliver", endpoint["id"])]


class _Steps:
    """A sender's claims (how many each took) and its waits for new work, in order."""

    def __init__(self, monkeypatch, endpoint_id: str, on_first_wait=lambda: None) -> None:
        self.log: list[str] = []
        steps = self

        class Arrival(threading.Event):
            def wait(self, timeout: float | None = None) -> bool:
                steps.log.append("wait")
                if steps.log.count("wait") == 1:
                    on_first_wait()
                return super().wait(timeout)

        def claim_batch(*args, **kwargs):
            claimed = real_claim(*args, **kwargs)
            steps.log.append(f"claim {len(claimed.work)}")
            return claimed

        real_claim = outbound_tasks.claim_batch
        monkeypatch.setattr(outbound_tasks, "claim_batch", claim_batch)
        monkeypatch.setitem(outbound_tasks._arrivals, endpoint_id, Arrival())
        monkeypatch.setattr(outbound_tasks, "LINGER_SECONDS", 0.0)  # dry: let go at once
        monkeypatch.setattr(sender_slots, "_slots", threading.Semaphore(1))


def test_a_batch_with_nothing_behind_it_is_recorded_with_the_next_wake_ups_claim(
    client, receiver, driver, monkeypatch
) -> None:
    # Under a stream of changes each fan-out wakes every endpoint's sender for a small
    # batch; a claim right after it would find nothing (one transaction per batch spent
    # for nothing): the answers wait for the claim that the next fan-out's wake-up brings.
    host_id, _ = new_host()
    other_id, _ = new_host("bob")
    endpoint = register(client, receiver)["id"]
    block(client, host_id, 1, 2)
    outbound_tasks.outbound_fan_out(None)

    def a_fan_out_meanwhile() -> None:
        block(client, other_id, 3, 4)
        outbound_tasks.outbound_fan_out(None)  # wakes the sender

    steps = _Steps(monkeypatch, endpoint, on_first_wait=a_fan_out_meanwhile)
    assert outbound_tasks.outbound_deliver(endpoint) == 2
    assert steps.log[:3] == ["claim 1", "wait", "claim 1"]
    assert [e["hostId"] for e in receiver.events()] == [host_id, other_id]
    with session_scope() as session:  # the last batch recorded by the claim that found none
        assert set(session.scalars(select(WebhookDelivery.status))) == {"delivered"}


def test_a_lane_with_more_behind_its_head_is_claimed_again_at_once(
    client, receiver, driver, monkeypatch
) -> None:
    # A host's next event waits only for its last one's record, not for new work.
    host_id, _ = new_host()
    endpoint = register(client, receiver)["id"]
    for hour in (1, 3):
        block(client, host_id, hour, hour + 1)
        outbound_tasks.outbound_fan_out(None)  # each change its own event
    steps = _Steps(monkeypatch, endpoint)
    assert outbound_tasks.outbound_deliver(endpoint) == 2
    assert steps.log[:2] == ["claim 1", "claim 1"]
    assert [e["changed"][0]["start"] for e in receiver.events()] == [at(1), at(3)]


def test_a_sender_without_a_waiting_slot_lets_go_at_once(client, receiver, driver) -> None:
    # None of this process's slots free (here: none set up, as outside the outbound worker):
    # the sender ends when its lanes run dry and lets the endpoint go for the next one.
    host_id, _ = new_host()
    endpoint = register(client, receiver)
    block(client, host_id, 1, 2)
    outbound_tasks.outbound_fan_out(None)
    assert outbound_tasks.outbound_deliver(endpoint["id"]) == 1
    with session_scope() as session:
        assert session.get(WebhookEndpoint, endpoint["id"]).sender_until is None


def test_rotation_signs_with_both_secrets_for_a_day(client, receiver, driver) -> None:
    endpoint = register(client, receiver)
    old = endpoint["secret"]
    rotated = client.post(f"/v1/webhook-endpoints/{endpoint['id']}/secret", headers=ADMIN)
    assert rotated.status_code == 200
    new = rotated.get_json()["secret"]
    assert new != old and rotated.get_json()["previousSecretExpiresAt"]
    ping = client.post(f"/v1/webhook-endpoints/{endpoint['id']}/test", headers=ADMIN)
    assert ping.status_code == 202
    driver.run()
    [request] = receiver.received
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):  # a receiver holding either one accepts it
        assert Webhook(secret).verify(request.body, request.headers)["type"] == "ping"
    with time_machine.travel(datetime.now(UTC) + timedelta(hours=25), tick=False):
        client.post(f"/v1/webhook-endpoints/{endpoint['id']}/test", headers=ADMIN)
        driver.run()
    assert len(receiver.received[1].headers["webhook-signature"].split(" ")) == 1
    assert "webhook-signature" in receiver.received[1].headers
    assert (
        Webhook(new).sign(
            receiver.received[1].headers["webhook-id"],
            datetime.fromtimestamp(int(receiver.received[1].headers["webhook-timestamp"]), UTC),
            receiver.received[1].body,
        )
        == receiver.received[1].headers["webhook-signature"]
    )


def test_redirects_are_not_followed_and_refused_addresses_not_called(
    client, receiver, driver
) -> None:
    host_id, _ = new_host()
    endpoint = register(client, receiver)
    receiver.answers = [("redirect", "http://169.254.169.254/latest/meta-data/")]
    block(client, host_id, 1, 2)
    driver.run()
    [delivery] = client.get(
        f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=ADMIN
    ).get_json()["deliveries"]
    assert delivery["status"] == "pending" and delivery["lastStatusCode"] == 302
    assert "redirects are never followed" in delivery["lastError"]
    assert len(receiver.received) == 1
    # The name now points at the metadata address: refused before any request.
    with session_scope() as session:
        session.execute(update(WebhookEndpoint).values(url="http://169.254.169.254/hooks"))
    driver.elapse_backoff()
    [delivery] = client.get(
        f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=ADMIN
    ).get_json()["deliveries"]
    assert delivery["lastError"].startswith("refused: ") and "link-local" in delivery["lastError"]
    assert delivery["lastStatusCode"] is None and len(receiver.received) == 1


def test_a_day_of_failures_marks_failing_alerts_then_disables(
    client, receiver, driver, outbound_settings: Settings
) -> None:
    host_id, _ = new_host()
    endpoint = register(client, receiver)
    receiver.answers = [500, 500]
    block(client, host_id, 1, 2)
    block(client, host_id, 3, 4)
    driver.run()
    start = datetime.now(UTC)
    with time_machine.travel(start + timedelta(hours=24, minutes=1), tick=False):
        driver.elapse_backoff()
        shown = client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=ADMIN).get_json()
        assert shown["state"] == "failing" and shown["failingSince"]
        assert "given up" in shown["stateReason"] and "500" in shown["stateReason"]
        sent: list[dict] = []
        configure(
            dataclasses.replace(outbound_settings, alert_webhook_url="http://alerts.invalid/")
        )
        report = alert_notifier.run_cycle(sender=lambda _url, payload: sent.append(payload))
        assert f"calsync/webhook-endpoint-failing/{endpoint['id']}" in report.firing
        assert any(endpoint["id"] in str(payload) for payload in sent)
        configure(outbound_settings)
    with time_machine.travel(start + timedelta(days=7), tick=False):
        driver.sweep()
        shown = client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=ADMIN).get_json()
        assert shown["state"] == "disabled" and "5 days" in shown["stateReason"]
        count = len(receiver.received)
        block(client, host_id, 6, 7)
        driver.run()
        driver.elapse_backoff()
        assert len(receiver.received) == count  # a disabled endpoint receives nothing
        enabled = client.patch(
            f"/v1/webhook-endpoints/{endpoint['id']}", json={"enabled": True}, headers=ADMIN
        )
        assert enabled.get_json()["state"] == "active"
        # What happened while it was off is sent on request: a replay since then.
        since = z(start + timedelta(days=7) - timedelta(minutes=1))
        replayed = client.post(
            f"/v1/webhook-endpoints/{endpoint['id']}/replay", json={"since": since}, headers=ADMIN
        )
        assert replayed.get_json() == {"requeued": 1}
        driver.run()
    assert receiver.events()[-1]["changed"] == [{"start": at(6), "end": at(7)}]


def test_a_2xx_ends_a_failing_spell(client, receiver, driver) -> None:
    host_id, _ = new_host()
    endpoint = register(client, receiver)["id"]
    with session_scope() as session:
        failing = session.get(WebhookEndpoint, endpoint)
        failing.state, failing.failing_since = "failing", datetime.now(UTC)
        failing.state_reason = "Given up on a delivery"
    block(client, host_id, 1, 2)
    driver.run()
    assert len(receiver.events()) == 1
    shown = client.get(f"/v1/webhook-endpoints/{endpoint}", headers=ADMIN).get_json()
    assert shown["state"] == "active" and shown["failingSince"] is None


def test_replay_sends_again_in_order(client, receiver, driver) -> None:
    host_id, _ = new_host()
    endpoint = register(client, receiver)
    since = datetime.now(UTC) - timedelta(seconds=1)
    for hour in (1, 3):
        block(client, host_id, hour, hour + 1)
        driver.run()
    assert len(receiver.events()) == 2
    answer = client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/replay", json={"since": z(since)}, headers=ADMIN
    )
    assert answer.status_code == 202 and answer.get_json() == {"requeued": 2}
    driver.run()
    ids = [e["id"] for e in receiver.events()]
    assert ids[2:] == ids[:2]  # the same events (same ids), in the same order
    with session_scope() as session:
        assert session.scalar(select(OutboxEvent.id).limit(1)) is not None
