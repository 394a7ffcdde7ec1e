"""GET /openapi.json: an OpenAPI 3.1 document of every route, and (with schemathesis) every
answer of the API matches it and none is a server error."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta

import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from models.sync_runs import SyncKind, SyncOutcome
from rules.busy_rules import BusyPolicy, Reason
from rules.health import CalendarState
from webhook import create_app
from webhook.api_schemas import Coverage

from .conftest import ADMIN, TwoHosts, seeded_hour, z


def _documented_path(rule: str) -> str:
    # /v1/hosts/<int(max=...):host_id> -> /v1/hosts/{host}: the document names ids briefly.
    names = {"host_id": "host", "calendar_id": "cal", "block_id": "id", "host_ref": "host"}
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: "{" + names.get(m[1], m[1]) + "}", rule)


def test_document_is_openapi_31_with_bearer_auth(client) -> None:
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    document = answer.get_json()
    assert document["openapi"] == "3.1.0"
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert document["security"] == [{"bearerAuth": []}]
    schemas = document["components"]["schemas"]
    detail = schemas["Error"]["properties"]["error"]["$ref"].rsplit("/", 1)[-1]
    assert schemas[detail]["required"] == ["code", "message"]


def test_enums_are_the_python_enums(client) -> None:
    """The document's enumerations come from the code: a new state, reason or policy switch
    appears in it by itself."""
    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    for enum in (CalendarState, Reason, SyncKind, SyncOutcome, Coverage):
        assert schemas[enum.__name__]["enum"] == [member.value for member in enum]
    assert set(schemas["BusyPolicy"]["properties"]) == set(BusyPolicy().to_json())
    ref = "#/components/schemas/"
    assert schemas["Freshness"]["properties"]["state"] == {"$ref": ref + "CalendarState"}
    assert schemas["ExplainItem"]["properties"]["reason"] == {"$ref": ref + "Reason"}
    run = schemas["SyncRun"]["properties"]
    assert (run["kind"], run["outcome"]) == (
        {"$ref": ref + "SyncKind"},
        {"$ref": ref + "SyncOutcome"},
    )


def test_every_route_is_documented(app, client) -> None:
    paths = client.get("/openapi.json").get_json()["paths"]
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = _documented_path(rule.rule)
        # WebDAV's own methods (PROPFIND, REPORT, MKCALENDAR ...) have no place in OpenAPI.
        for method in rule.methods & {"GET", "PUT", "POST", "DELETE", "PATCH"}:
            if method.lower() not in paths.get(path, {}):
                missing.append(f"{method} {path}")
    assert missing == []
    for path in (
        "/webhooks/google",
        "/healthz",
        "/readyz",
        "/status/{host}",
        "/metrics",
        "/feeds/{host}/{feed_file}",
    ):
        assert path in paths
    page = paths["/status/{host}"]["get"]["responses"]["200"]["content"]
    assert "text/html" in page
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]


def test_every_operation_documents_its_errors(client) -> None:
    paths = client.get("/openapi.json").get_json()["paths"]
    for path, operations in paths.items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            responses = operation["responses"]
            assert {"400", "401", "404", "default"} <= set(responses), (method, path)
            # POSTs without a body are actions on their path (issue a new token or sign-in
            # link, audit, rotate a webhook secret, send a test ping).
            bodyless = method in ("get", "delete") or path.endswith(
                ("token", "/audit", "/sign-in-link", "/secret", "/test")
            )
            assert "requestBody" in operation or bodyless, (method, path)


# Operations schemathesis drives: the /v1 API, the plain JSON endpoints, and the pages a
# browser opens with a token in the URL (status page, connect flow with its callback). The
# Google push receiver and /metrics have their own tests (headers, exposition format). The
# host pages are fuzzed without a session (a bearer header does not open them).
FUZZED_PATHS = r"^/(v1/|openapi\.json$|healthz$|status/|connect/|feeds/|me\b|sign-)"


def _steer(case, hosts: TwoHosts, pick: int) -> None:
    """Put known ids and a sensible window into a generated case: random ids and windows
    alone almost always answer 404/400, which would leave the 2xx bodies unchecked."""
    start = seeded_hour() - timedelta(hours=1)
    good: dict[str, object] = {
        "host": [hosts.a.id, hosts.b.id][pick % 2],
        "cal": [hosts.a.calendar_id, hosts.b.calendar_id][pick % 2],
        "id": [hosts.a.block_id, hosts.b.block_id][pick % 2],
        "timeMin": z(start),
        "timeMax": z(start + timedelta(hours=5)),
        "at": z(start + timedelta(minutes=90)),
        "start": z(start + timedelta(days=pick % 7)),
        "end": z(start + timedelta(days=pick % 7, hours=1)),
    }
    for container in (case.path_parameters, case.query, case.body):
        if isinstance(container, dict):
            for name in container.keys() & good.keys():
                container[name] = good[name]
    if isinstance(case.body, dict) and isinstance(case.body.get("items"), list):
        case.body["items"] = [{"id": "alice@example.com"}, {"id": str(hosts.a.calendar_id)}]


def test_api_matches_its_document(settings, db, hosts, tasks) -> None:
    """Every fuzzed answer is no 5xx and matches the document (status, content type, body).

    The database holds two hosts with calendars 1-2 and blocks 1-2, so small generated ids
    reach real rows as well as 404s. An OAuth client is configured, so the connect flow runs
    up to its redirect (it calls nothing before the callback's code exchange)."""
    app = create_app(
        dataclasses.replace(settings, google_client_id="client", google_client_secret="secret")
    )
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app).include(path_regex=FUZZED_PATHS)
    operations = [result.ok() for result in schema.get_all_operations()]
    # Deleting a seeded host last, so the other operations keep reaching real rows.
    operations.sort(key=lambda op: (op.method.upper(), op.path) == ("DELETE", "/v1/hosts/{host}"))
    assert len(operations) >= 20
    assert {"/status/{host}", "/connect/google", "/connect/google/callback", "/me/log.csv"} <= {
        operation.path for operation in operations
    }

    for operation in operations:

        @given(case=operation.as_strategy(), steer=st.integers(min_value=0, max_value=3))
        @hypothesis_settings(
            max_examples=20,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def conforms(case, steer: int) -> None:
            if steer:  # a quarter of the cases stay as generated
                _steer(case, hosts, steer)
            case.call_and_validate(
                headers=ADMIN, checks=[not_a_server_error, response_schema_conformance]
            )

        conforms()
