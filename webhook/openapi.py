"""The OpenAPI 3.1 document of every endpoint, served at `GET /openapi.json`.

Built as a Python dict so it sits next to the code it describes; tests check that every
registered route is in it and (with schemathesis) that every answer matches it.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from webhook.api_schemas import MAX_FREEBUSY_ITEMS, MAX_ID, MAX_MARGIN_MINUTES, MAX_NOTE_LENGTH

openapi = Blueprint("openapi", __name__)

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(properties: dict[str, Schema], required: list[str] | None = None, **extra: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    schema["required"] = list(properties) if required is None else required
    schema.update(extra)
    return schema


def json_body(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error(description: str) -> Schema:
    return {"$ref": "#/components/responses/" + description}


STRING = {"type": "string"}
INTEGER = {"type": "integer"}
BOOLEAN = {"type": "boolean"}
NUMBER = {"type": "number"}
TIME = {"type": "string", "format": "date-time"}
ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
STATE = {
    "type": "string",
    "enum": ["ok", "syncing", "lagging", "failing", "needs_reauth", "not_watched"],
}
REASONS = [
    "busy",
    "free",
    "declined",
    "cancelled",
    "working_location",
    "birthday",
    "tentative",
    "needs_action",
    "out_of_office",
    "focus_time",
    "all_day",
    "zero_length",
    "malformed",
]

SCHEMAS: dict[str, Schema] = {
    "Error": obj(
        {
            "error": obj(
                {"code": STRING, "message": STRING},
                description="code: stable machine name; message: what is wrong and what to do",
            )
        },
        description="Every non-2xx answer; some add top-level keys (parameter, field, ...).",
    ),
    "BusyPolicy": obj(
        {
            "declinedBusy": BOOLEAN,
            "tentativeBusy": BOOLEAN,
            "outOfOfficeBusy": BOOLEAN,
            "focusTimeBusy": BOOLEAN,
            "allDayBusy": BOOLEAN,
        },
        required=[],
        additionalProperties=False,
        description="Which kinds of events block time. tentativeBusy also covers unanswered "
        "invitations. Defaults: declined false, all others true.",
    ),
    "HostCreate": obj(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "timeZone": {"type": "string", "minLength": 1, "maxLength": 64},
            "busyPolicy": ref("BusyPolicy"),
        },
        required=["name"],
        additionalProperties=False,
    ),
    "HostPatch": obj(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "timeZone": {"type": "string", "minLength": 1, "maxLength": 64},
            "busyPolicy": ref("BusyPolicy"),
        },
        required=[],
        additionalProperties=False,
        description="busyPolicy keys given replace the stored ones; the others are kept.",
    ),
    "Host": obj(
        {
            "id": INTEGER,
            "name": STRING,
            "timeZone": STRING,
            "busyPolicy": ref("BusyPolicy"),
            "createdAt": TIME,
        }
    ),
    "HostCreated": {
        "allOf": [
            ref("Host"),
            obj({"apiToken": STRING}, description="The host's token; shown only this once."),
        ]
    },
    "HostPatched": {
        "allOf": [
            ref("Host"),
            obj(
                {
                    "redecided": obj(
                        {"eventsChanged": INTEGER, "blocksAdded": INTEGER, "blocksRemoved": INTEGER}
                    )
                },
                required=[],
            ),
        ]
    },
    "Freshness": obj(
        {
            "id": INTEGER,
            "googleCalendarId": STRING,
            "state": STATE,
            "syncedAt": nullable(TIME),
            "lagSeconds": nullable(NUMBER),
            "stale": BOOLEAN,
        },
        description="How far a calendar's stored busy time can be trusted. stale: not ok, "
        "or a known change waits longer than CALSYNC_STALE_AFTER_SECONDS, or never synced.",
    ),
    "CalendarAttach": obj(
        {
            "googleCalendarId": {"type": "string", "minLength": 1, "maxLength": 1024},
            "credentials": obj(
                {
                    "type": STRING,
                    "client_id": STRING,
                    "client_secret": STRING,
                    "refresh_token": STRING,
                    "token_uri": STRING,
                },
                required=["client_id", "client_secret", "refresh_token"],
                description="Google authorized-user JSON",
            ),
        },
        additionalProperties=False,
    ),
    "Calendar": {
        "allOf": [
            ref("Freshness"),
            obj({"hostId": INTEGER, "timeZone": nullable(STRING), "summary": nullable(STRING)}),
        ]
    },
    "CalendarAttached": {
        "allOf": [
            ref("Calendar"),
            obj(
                {"created": BOOLEAN, "backgroundQueued": BOOLEAN},
                description="backgroundQueued false: the broker was down; the safety-net "
                "sync starts the calendar later.",
            ),
        ]
    },
    "CalendarList": obj({"calendars": {"type": "array", "items": ref("Calendar")}}),
    "SyncRun": obj(
        {
            "kind": STRING,
            "trigger": nullable(STRING),
            "outcome": STRING,
            "startedAt": nullable(TIME),
            "durationMs": nullable(INTEGER),
            "pages": nullable(INTEGER),
            "eventsSeen": nullable(INTEGER),
            "blocksUpserted": nullable(INTEGER),
            "blocksDeleted": nullable(INTEGER),
            "notificationLagMs": nullable(INTEGER),
            "error": nullable(STRING),
        }
    ),
    "SyncStatus": obj(
        {
            "calendarId": INTEGER,
            "hostId": INTEGER,
            "googleCalendarId": STRING,
            "timeZone": nullable(STRING),
            "state": STATE,
            "stale": BOOLEAN,
            "lagSeconds": nullable(NUMBER),
            "dirtySince": nullable(TIME),
            "lastNotificationAt": nullable(TIME),
            "lastSuccessAt": nullable(TIME),
            "lastAttemptAt": nullable(TIME),
            "fullSyncAt": nullable(TIME),
            "channelExpiresAt": nullable(TIME),
            "watchProblem": nullable(STRING),
            "consecutiveFailures": INTEGER,
            "lastError": nullable(
                obj(
                    {"code": STRING, "message": STRING, "detail": nullable(STRING)},
                    description="message: in plain words, with what to do",
                )
            ),
            "recentRuns": {"type": "array", "items": ref("SyncRun")},
        }
    ),
    "Source": {
        "oneOf": [
            obj(
                {"type": {"const": "event"}, "calendarId": INTEGER, "eventId": STRING},
                additionalProperties=False,
            ),
            obj({"type": {"const": "manual"}, "blockId": INTEGER}, additionalProperties=False),
        ]
    },
    "BusyInterval": obj(
        {"start": TIME, "end": TIME, "sources": {"type": "array", "items": ref("Source")}}
    ),
    "Busy": obj(
        {
            "timeMin": TIME,
            "timeMax": TIME,
            "busy": {"type": "array", "items": ref("BusyInterval")},
            "calendars": {"type": "array", "items": ref("Freshness")},
            "stale": BOOLEAN,
        }
    ),
    "StaleError": {
        "allOf": [
            ref("Error"),
            obj({"staleCalendars": {"type": "array", "items": ref("Freshness")}}),
        ]
    },
    "FreeBusyRequest": obj(
        {
            "timeMin": TIME,
            "timeMax": TIME,
            "timeZone": {"type": "string", "minLength": 1, "maxLength": 64},
            "groupExpansionMax": INTEGER,
            "calendarExpansionMax": INTEGER,
            "items": {
                "type": "array",
                "maxItems": MAX_FREEBUSY_ITEMS,
                "items": obj(
                    {"id": {"type": "string", "minLength": 1, "maxLength": 1024}},
                    additionalProperties=False,
                ),
            },
        },
        required=["timeMin", "timeMax"],
        additionalProperties=False,
        description="Google's freeBusy.query request. items[].id: a Google calendar id or "
        "calsync's numeric calendar id (as a string), among the caller's calendars.",
    ),
    "FreeBusyError": obj(
        {"domain": STRING, "reason": STRING},
        description="global/notFound: unknown id; global/ambiguous: the Google id names "
        "several calendars (use the numeric id); calsync/notSyncedYet, calsync/failing, "
        "calsync/needs_reauth: the busy time given is not to be trusted.",
    ),
    "FreeBusyCalendar": obj(
        {
            "busy": {"type": "array", "items": obj({"start": TIME, "end": TIME})},
            "errors": {"type": "array", "items": ref("FreeBusyError")},
            "calendarId": INTEGER,
            "state": STATE,
            "syncedAt": nullable(TIME),
            "lagSeconds": nullable(NUMBER),
            "stale": BOOLEAN,
        },
        required=["busy"],
    ),
    "FreeBusyResponse": obj(
        {
            "kind": {"const": "calendar#freeBusy"},
            "timeMin": TIME,
            "timeMax": TIME,
            "calendars": {"type": "object", "additionalProperties": ref("FreeBusyCalendar")},
            "stale": BOOLEAN,
        }
    ),
    "ManualBlockCreate": obj(
        {
            "start": TIME,
            "end": TIME,
            "note": {"type": "string", "maxLength": MAX_NOTE_LENGTH},
        },
        required=["start", "end"],
        additionalProperties=False,
        description="At least one minute, at most 366 days.",
    ),
    "ManualBlock": obj(
        {
            "id": INTEGER,
            "hostId": INTEGER,
            "start": TIME,
            "end": TIME,
            "note": STRING,
            "createdAt": TIME,
        }
    ),
    "ManualBlockList": obj({"blocks": {"type": "array", "items": ref("ManualBlock")}}),
    "ExplainItem": obj(
        {
            "type": {"enum": ["event", "manual"]},
            "calendarId": INTEGER,
            "eventId": STRING,
            "blockId": INTEGER,
            "summary": nullable(STRING),
            "start": TIME,
            "end": TIME,
            "allDay": BOOLEAN,
            "busy": BOOLEAN,
            "coversAt": BOOLEAN,
            "reason": {"type": "string", "enum": REASONS},
            "explanation": STRING,
        },
        required=[
            "type",
            "summary",
            "start",
            "end",
            "allDay",
            "busy",
            "coversAt",
            "reason",
            "explanation",
        ],
    ),
    "ExplainCalendar": {
        "allOf": [
            ref("Freshness"),
            obj(
                {
                    "coverage": {"enum": ["synced", "not_synced_yet", "outside_horizon"]},
                    "explanation": STRING,
                }
            ),
        ]
    },
    "Explain": obj(
        {
            "at": TIME,
            "marginMinutes": INTEGER,
            "busy": BOOLEAN,
            "summary": STRING,
            "items": {"type": "array", "items": ref("ExplainItem")},
            "calendars": {"type": "array", "items": ref("ExplainCalendar")},
        }
    ),
    "Health": obj({"status": {"const": "ok"}}),
    "Ready": obj({"status": {"const": "ok"}, "checks": {"type": "object"}}),
}

RESPONSES: dict[str, Schema] = {
    "BadRequest": json_body(ref("Error"), "Invalid input; the message names the parameter."),
    "Unauthorized": json_body(ref("Error"), "No bearer token, or not a valid one."),
    "Forbidden": json_body(ref("Error"), "The token may not do this (admin only)."),
    "NotFound": json_body(ref("Error"), "No such resource, or another host's."),
    "Unavailable": json_body(ref("Error"), "Database or broker unavailable; retry later."),
    "Error": json_body(ref("Error"), "Any other error."),
}


def path_id(name: str, description: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": ID,
        "description": description,
    }


def query(name: str, schema: Schema, description: str, required: bool = False) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema,
        "description": description,
    }


HOST = path_id("host", "host id")
CAL = path_id("cal", "calsync calendar id")
BLOCK = path_id("id", "manual block id")
WINDOW = [
    query("timeMin", TIME, "window start, RFC 3339 with offset", required=True),
    query("timeMax", TIME, "window end (exclusive), later than timeMin", required=True),
]

_COMMON = {
    "400": error("BadRequest"),
    "401": error("Unauthorized"),
    "404": error("NotFound"),
    "503": error("Unavailable"),
    "default": error("Error"),
}


def operation(
    summary: str,
    responses: dict[str, Schema],
    *,
    tags: list[str],
    parameters: list[Schema] | None = None,
    body: Schema | None = None,
    secured: bool = True,
) -> Schema:
    op: Schema = {"summary": summary, "tags": tags, "responses": {**_COMMON, **responses}}
    if not secured:
        op["security"] = []
        for status in ("401", "404"):
            op["responses"].pop(status, None)
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def ok(name: str, description: str = "OK") -> Schema:
    return json_body(ref(name), description)


NO_CONTENT = {"description": "Done; no body."}

PATHS: dict[str, Schema] = {
    "/v1/hosts": {
        "post": operation(
            "Create a host (admin only); the answer holds its API token, shown once",
            {"201": ok("HostCreated", "Created"), "403": error("Forbidden")},
            tags=["hosts"],
            body=ref("HostCreate"),
        )
    },
    "/v1/hosts/{host}": {
        "get": operation("A host", {"200": ok("Host")}, tags=["hosts"], parameters=[HOST]),
        "patch": operation(
            "Change name, time zone or busy policy; a policy change re-decides stored events "
            "and rewrites busy blocks at once, without calling Google",
            {"200": ok("HostPatched")},
            tags=["hosts"],
            parameters=[HOST],
            body=ref("HostPatch"),
        ),
    },
    "/v1/hosts/{host}/calendars": {
        "get": operation(
            "The host's calendars with freshness",
            {"200": ok("CalendarList")},
            tags=["calendars"],
            parameters=[HOST],
        ),
        "post": operation(
            "Attach a Google calendar; a full sync and a watch start in the background",
            {"201": ok("CalendarAttached", "Attached (or re-attached with new credentials)")},
            tags=["calendars"],
            parameters=[HOST],
            body=ref("CalendarAttach"),
        ),
    },
    "/v1/hosts/{host}/calendars/{cal}": {
        "delete": operation(
            "Detach a calendar: drop its events and blocks, stop its channels",
            {"204": NO_CONTENT},
            tags=["calendars"],
            parameters=[HOST, CAL],
        )
    },
    "/v1/calendars/{cal}/sync-status": {
        "get": operation(
            "Sync state, lag, channel expiry, last error with the fix, recent sync runs",
            {"200": ok("SyncStatus")},
            tags=["calendars"],
            parameters=[CAL],
        )
    },
    "/v1/hosts/{host}/busy": {
        "get": operation(
            "Merged busy intervals of all the host's calendars and manual blocks, with sources "
            "and per-calendar freshness",
            {
                "200": ok("Busy"),
                "503": json_body(
                    ref("StaleError"),
                    "strict=true and a calendar is stale (or the database is unavailable)",
                ),
            },
            tags=["busy"],
            parameters=[
                HOST,
                *WINDOW,
                query("strict", {"type": "boolean"}, "503 instead of possibly stale data"),
            ],
        )
    },
    "/v1/freeBusy": {
        "post": operation(
            "Google freeBusy.query request and response shapes, for calsync's calendars",
            {"200": ok("FreeBusyResponse")},
            tags=["busy"],
            body=ref("FreeBusyRequest"),
        )
    },
    "/v1/hosts/{host}/blocks": {
        "get": operation(
            "The host's manual blocks (optionally only those overlapping a window)",
            {"200": ok("ManualBlockList")},
            tags=["blocks"],
            parameters=[
                HOST,
                query("timeMin", TIME, "with timeMax: only blocks overlapping the window"),
                query("timeMax", TIME, "with timeMin: only blocks overlapping the window"),
            ],
        ),
        "post": operation(
            "Block time by hand; it counts in busy reads at once",
            {"201": ok("ManualBlock", "Created")},
            tags=["blocks"],
            parameters=[HOST],
            body=ref("ManualBlockCreate"),
        ),
    },
    "/v1/hosts/{host}/blocks/{id}": {
        "get": operation(
            "A manual block", {"200": ok("ManualBlock")}, tags=["blocks"], parameters=[HOST, BLOCK]
        ),
        "delete": operation(
            "Remove a manual block", {"204": NO_CONTENT}, tags=["blocks"], parameters=[HOST, BLOCK]
        ),
    },
    "/v1/hosts/{host}/explain": {
        "get": operation(
            "Every stored event and manual block around an instant, with why it does or does "
            "not block, and whether each calendar can be trusted there",
            {"200": ok("Explain")},
            tags=["busy"],
            parameters=[
                HOST,
                query("at", TIME, "the instant asked about, RFC 3339 with offset", required=True),
                query(
                    "marginMinutes",
                    {"type": "integer", "minimum": 0, "maximum": MAX_MARGIN_MINUTES},
                    "also list items this many minutes around `at` (default 15)",
                ),
            ],
        )
    },
    "/status/{host}": {
        "get": {
            "summary": "The host's sync status as a page (auto-refreshing, no JavaScript); "
            "open with ?token=",
            "tags": ["pages"],
            "parameters": [
                {"name": "host", "in": "path", "required": True, "schema": STRING},
                query("token", STRING, "host or admin token (or an Authorization header)"),
            ],
            "responses": {
                status: {"description": words, "content": {"text/html": {"schema": STRING}}}
                for status, words in (
                    ("200", "The page"),
                    ("401", "No or wrong token (a page saying so)"),
                    ("404", "No such host for this token (a page saying so)"),
                )
            },
        }
    },
    "/connect/google": {
        "get": {
            "summary": "Start connecting a Google account in the browser: redirects to "
            "Google's consent page (open with ?token=)",
            "tags": ["pages"],
            "parameters": [
                query("host", ID, "the host to connect", required=True),
                query("token", STRING, "host or admin token (or an Authorization header)"),
                query("account", ID, "reconnect this existing account"),
                query("calendar", STRING, "Google calendar id to attach (default: primary)"),
            ],
            "responses": {
                "302": {"description": "Redirect to Google's consent page"},
                "400": error("BadRequest"),
                "401": error("Unauthorized"),
                "404": error("NotFound"),
                "default": error("Error"),
            },
        }
    },
    "/connect/google/callback": {
        "get": {
            "summary": "Where Google sends the browser back: stores the grant, starts sync "
            "and watch, shows a page",
            "tags": ["pages"],
            "security": [],
            "parameters": [
                query("code", STRING, "authorization code from Google"),
                query("state", STRING, "signed state from /connect/google"),
                query("error", STRING, "set by Google when consent was refused"),
            ],
            "responses": {
                "200": {
                    "description": "Connected (a page saying so)",
                    "content": {"text/html": {"schema": STRING}},
                },
                "400": error("BadRequest"),
                "502": json_body(ref("Error"), "Google refused the code or sent no token"),
                "default": error("Error"),
            },
        }
    },
    "/webhooks/google": {
        "post": {
            "summary": "Google push notification receiver (authenticated by the channel "
            "token header, not a bearer token)",
            "tags": ["google"],
            "security": [],
            "parameters": [
                {"name": name, "in": "header", "required": required, "schema": STRING}
                for name, required in (
                    ("X-Goog-Channel-ID", True),
                    ("X-Goog-Channel-Token", False),
                    ("X-Goog-Resource-ID", True),
                    ("X-Goog-Resource-State", True),
                    ("X-Goog-Message-Number", False),
                    ("X-Goog-Resource-URI", False),
                    ("X-Goog-Channel-Expiration", False),
                )
            ],
            "responses": {
                "204": {"description": "Recorded (or acknowledged); no body"},
                "400": error("BadRequest"),
                "403": error("Forbidden"),
                "404": error("NotFound"),
                "503": error("Unavailable"),
                "default": error("Error"),
            },
        }
    },
    "/healthz": {
        "get": {
            "summary": "Liveness: the process answers",
            "tags": ["operations"],
            "security": [],
            "responses": {"200": ok("Health")},
        }
    },
    "/readyz": {
        "get": {
            "summary": "Readiness: database and broker answer",
            "tags": ["operations"],
            "security": [],
            "responses": {
                "200": ok("Ready"),
                "503": json_body(ref("Error"), "Not ready; checks says which dependency"),
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus exposition",
            "tags": ["operations"],
            "security": [],
            "responses": {
                "200": {
                    "description": "Prometheus text format",
                    "content": {"text/plain": {"schema": STRING}},
                }
            },
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "tags": ["operations"],
            "security": [],
            "responses": {
                "200": {
                    "description": "OpenAPI 3.1",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    },
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "calsync",
            "version": "1",
            "description": "Busy time of Google calendars, kept in step by push "
            'notifications. Errors are {"error": {"code", "message"}}. A host token '
            "reaches only its own host; another host's resources answer 404.",
        },
        "security": [{"bearerAuth": []}],
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "responses": RESPONSES,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "CALSYNC_ADMIN_TOKEN, or a host's apiToken",
                }
            },
        },
    }


@openapi.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(document())
