"""Every error leaves the app as `{"error": {"code", "message"}}` JSON with the right status:
werkzeug's HTTP errors, ApiError, database outages (503) and unexpected exceptions (500)."""

from __future__ import annotations

import pytest
from flask import Flask, abort, request
from flask.testing import FlaskClient
from sqlalchemy.exc import OperationalError

from core.settings import Settings
from webhook import create_app
from webhook.errors import ApiError

SECRET_DETAIL = "password=hunter2 in an exception message"


@pytest.fixture
def app(settings: Settings, db: None) -> Flask:
    app = create_app(settings)

    @app.get("/test/abort/<int:status>")
    def aborting(status: int):
        abort(status)

    @app.get("/test/api-error")
    def api_error():
        raise ApiError(409, "calendar_exists", "That calendar is already attached.")

    @app.get("/test/crash")
    def crash():
        raise RuntimeError(SECRET_DETAIL)

    @app.get("/test/database-down")
    def database_down():
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError(SECRET_DETAIL))

    @app.post("/test/json")
    def json_body():
        return {"got": request.get_json()}

    @app.post("/test/form")
    def form_body():
        return {"got": dict(request.form)}

    return app


def assert_json_error(response, status: int, code: str) -> dict:
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "<html" not in response.get_data(as_text=True).lower()
    return body


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "bad_request"),
        (401, "unauthorized"),
        (403, "forbidden"),
        (404, "not_found"),
        (409, "conflict"),
        (413, "payload_too_large"),
        (415, "unsupported_media_type"),
        (429, "too_many_requests"),
        (500, "internal_error"),
        (503, "unavailable"),
    ],
)
def test_http_errors_are_json(client: FlaskClient, status: int, code: str) -> None:
    assert_json_error(client.get(f"/test/abort/{status}"), status, code)


def test_unknown_route_is_404_json(client: FlaskClient) -> None:
    assert_json_error(client.get("/no/such/page"), 404, "not_found")


def test_wrong_method_is_405_json_with_allow(client: FlaskClient) -> None:
    response = client.get("/webhooks/google")
    assert_json_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]
    assert_json_error(client.delete("/healthz"), 405, "method_not_allowed")


def test_api_error_keeps_its_status_and_code(client: FlaskClient) -> None:
    body = assert_json_error(client.get("/test/api-error"), 409, "calendar_exists")
    assert body["error"]["message"] == "That calendar is already attached."


def test_api_error_can_add_fields_and_headers(app: Flask) -> None:
    with app.test_request_context():
        response = ApiError(
            429, "slow_down", "Too many.", extra={"retryAfter": 3}, headers={"Retry-After": "3"}
        ).to_response()
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert response.get_json() == {
        "error": {"code": "slow_down", "message": "Too many."},
        "retryAfter": 3,
    }


def test_unexpected_exception_is_500_json_without_details(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = client.get("/test/crash")
    assert_json_error(response, 500, "internal_error")
    assert SECRET_DETAIL not in response.get_data(as_text=True)
    assert any(r.exc_info for r in caplog.records if r.name == "calsync.webhook.errors")


def test_database_outage_is_503_json(client: FlaskClient) -> None:
    response = client.get("/test/database-down")
    assert_json_error(response, 503, "database_unavailable")
    assert SECRET_DETAIL not in response.get_data(as_text=True)


def test_malformed_json_is_400_not_500(client: FlaskClient) -> None:
    response = client.post("/test/json", data=b"{not json", content_type="application/json")
    assert_json_error(response, 400, "bad_request")


def test_wrong_content_type_is_415(client: FlaskClient) -> None:
    response = client.post("/test/json", data=b"a=b", content_type="text/plain")
    assert_json_error(response, 415, "unsupported_media_type")


def test_oversized_form_is_413_json(client: FlaskClient) -> None:
    response = client.post("/test/form", data={"field": "x" * (128 * 1024)})
    assert_json_error(response, 413, "payload_too_large")
