"""Host pages: a host with calendars and blocks (the status page's scene), signed in."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from tests.conftest import TEST_ADMIN_TOKEN
from tests.status_page.conftest import Scene, build_scene

ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def scene(session: Session) -> Scene:
    return build_scene(session, datetime.now(UTC))


def sign_in_link(client: FlaskClient, host_id: int) -> str:
    answer = client.post(f"/v1/hosts/{host_id}/sign-in-link", headers=ADMIN)
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()["url"]


def signed_in(client: FlaskClient, host_id: int) -> str:
    """Sign the client in as `host_id`; returns the session's CSRF token."""
    url = sign_in_link(client, host_id)
    answer = client.get(urlsplit(url).path)
    assert answer.status_code == 303, answer.data
    page = client.get("/me")
    assert page.status_code == 200
    found = CSRF.search(page.get_data(as_text=True))
    assert found
    return found.group(1)
