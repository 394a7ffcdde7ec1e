"""The outbound worker's capacity, alone on the machine: CPU per delivery and deliveries per
second while it drains a backlog (a diagnostic beside benchmark 7, whose on phase needs
that capacity while the syncs run).

    python -m bench.outbound_drain [--deliveries 20000] [--endpoints 10] [--hosts 1000]

What runs: a private Redis, a fresh PostgreSQL database, the Procfile's `outbound` worker
and benchmark 7's receivers (bench/webhook_receiver.py, 204 after 5 ms). The backlog is
written straight into the tables (fanned-out `busy.changed` events, one pending delivery
per endpoint), then a sender is started for each endpoint, as the sweep would. Measured:
the outbound process's CPU seconds (user + system, from /proc) and the wall time until no
delivery is pending; every delivery must have reached its receiver.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.fleet_scale import tree_cpu_seconds
from bench.harness import Report, bench_stack, parser
from bench.outbound_delivery import RECEIVER_DELAY_SECONDS, outbox_drained
from bench.webhook_receiver import Receivers


def write_backlog(base: str, deliveries: int, endpoints: int, hosts: int) -> list[str]:
    """Endpoints (admin, every host) and `deliveries` pending deliveries spread over them:
    deliveries / endpoints events, host after host."""
    from models import OutboxEvent, WebhookDelivery
    from models.db import session_scope
    from models.outbound_endpoints import create_endpoint

    now = datetime.now(UTC)
    with session_scope() as session:
        ids = [
            create_endpoint(
                session,
                url=f"{base}/r/{n}",
                host_ids=None,
                description=f"drain receiver {n}",
                created_by_host=None,
            )[0].id
            for n in range(endpoints)
        ]
    events = deliveries // endpoints
    with session_scope() as session:
        _insert(
            session,
            OutboxEvent.__table__,
            [
                {
                    "id": n + 1,
                    "type": "busy.changed",
                    "host_id": n % hosts + 1,
                    "calendar_id": n % hosts + 1,
                    "cause": "sync",
                    "payload": {
                        "changed": [
                            {"start": "2026-12-07T10:00:00Z", "end": "2026-12-07T11:00:00Z"}
                        ]
                    },
                    "committed_at": now,
                    "fanned_out_at": now,
                }
                for n in range(events)
            ],
        )
        _insert(
            session,
            WebhookDelivery.__table__,
            [
                {
                    "endpoint_id": endpoint,
                    "event_id": n + 1,
                    "host_id": n % hosts + 1,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now - timedelta(seconds=1),
                    "created_at": now,
                }
                for endpoint in ids
                for n in range(events)
            ],
        )
    return ids


def _insert(session: Any, table: Any, rows: list[dict[str, Any]]) -> None:
    from sqlalchemy import insert

    for start in range(0, len(rows), 5000):
        session.execute(insert(table), rows[start : start + 5000])


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--deliveries", type=int, default=20_000)
    p.add_argument("--endpoints", type=int, default=10)
    p.add_argument("--hosts", type=int, default=1000)
    p.add_argument("--outbound-concurrency", type=int, default=16)
    args = p.parse_args(argv)
    deliveries = 300 if args.smoke else args.deliveries
    report = Report("outbound_drain", smoke=args.smoke)
    report.header()
    receivers = Receivers(RECEIVER_DELAY_SECONDS)
    with bench_stack("drain", args.keep_logs) as stack, receivers:
        from worker.outbound_tasks import start_senders

        outbound = stack.start_outbound(args.outbound_concurrency)
        stack.wait_ready()
        ids = write_backlog(receivers.base, deliveries, args.endpoints, args.hosts)
        total = deliveries // args.endpoints * args.endpoints
        cpu_before = tree_cpu_seconds(outbound.pid or 0)
        started = time.monotonic()
        start_senders(ids)
        deadline = started + 600
        while not outbox_drained() and time.monotonic() < deadline:
            time.sleep(0.2)
        wall = time.monotonic() - started
        cpu = tree_cpu_seconds(outbound.pid or 0) - cpu_before
        received = len(receivers.records())
    report.value("deliveries", total)
    report.value("received", received)
    report.value("wall_seconds", wall, "s")
    report.value("deliveries_per_second", total / wall, "/s")
    report.value("outbound_cpu_seconds", cpu, "s")
    report.value("outbound_cpu_ms_per_delivery", cpu * 1000 / max(1, total), "ms")
    report.bar("deliveries not received", total - received, 0, at_least=False)
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
