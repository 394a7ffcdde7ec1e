"""The README's ten-line receiver works: it accepts a delivery signed by calsync's sender
and refuses one signed with another secret."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from standardwebhooks.webhooks import WebhookVerificationError

from models.outbound_endpoints import new_secret
from worker.outbound_sender import signature_header

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_receiver_verifies_calsync_signatures() -> None:
    section = README.read_text().split("A receiver in ten lines", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    lines = code.group(1).strip().splitlines()
    assert len([line for line in lines if line.strip()]) <= 10
    secret = new_secret()
    namespace: dict = {"__name__": "__main__"}  # as when run as a script
    exec(code.group(1).replace('"whsec_…"', repr(secret)), namespace)  # noqa: S102
    client = namespace["app"].test_client()
    body = b'{"type":"busy.changed","id":"evt_1","hostId":1,"changed":[]}'
    now = datetime.now(UTC)
    headers = {
        "webhook-id": "evt_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature_header([secret], "evt_1", now, body),
    }
    assert client.post("/calsync", data=body, headers=headers).status_code == 204
    headers["webhook-signature"] = signature_header([new_secret()], "evt_1", now, body)
    namespace["app"].testing = True
    with pytest.raises(WebhookVerificationError):
        client.post("/calsync", data=body, headers=headers)
