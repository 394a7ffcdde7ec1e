"""The emulator's WSGI app: Calendar API v3 subset, OAuth endpoints and the control API."""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote_plus, urlencode

from flask import Flask, Response, g, jsonify, redirect, request
from werkzeug.exceptions import HTTPException

from emulator import errors
from emulator.clock import Clock
from emulator.errors import GoogleApiError
from emulator.faults import Faults
from emulator.oauth import AuthRegistry, OAuthError
from emulator.push import Channel, PushDispatcher
from emulator.scenario import load_scenario
from emulator.store import (
    SYNC_FORBIDDEN,
    CalendarState,
    ListQuery,
    Store,
    format_updated,
    format_z,
    parse_api_time,
)

MAX_RESULTS_LIMIT = 2500
DEFAULT_CHANNEL_TTL_SECONDS = 604800


@dataclass
class EmulatorState:
    """Everything the emulator holds; one per server."""

    seed: int = 0
    record_bodies: bool = False
    push_workers: int = 8
    base_url: str | None = None  # set by the server; else taken from each request
    clock: Clock = field(init=False)
    faults: Faults = field(init=False)
    auth: AuthRegistry = field(init=False)
    push: PushDispatcher = field(init=False)
    store: Store = field(init=False)
    requests_log: list[dict[str, Any]] = field(default_factory=list)
    responses: list[tuple[str, int, Any]] = field(default_factory=list)
    log_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.clock = Clock()
        self.faults = Faults(self.seed)
        self.auth = AuthRegistry(self.clock)
        self.push = PushDispatcher(self.clock, self.faults, self.seed, workers=self.push_workers)
        self.store = Store(self.clock, self.faults, self.seed, on_change=self.push.notify)

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.seed = seed
        with self.store.lock:
            self.faults.reset(self.seed)
            self.store.reset(self.seed)
            self.push.reset(self.seed)
            self.auth.reset()
            self.clock.reset()
            with self.log_lock:
                self.requests_log.clear()
                self.responses.clear()

    def log_request(self, entry: dict[str, Any]) -> None:
        with self.log_lock:
            entry["seq"] = len(self.requests_log)
            entry["time"] = format_updated(self.clock.now())
            self.requests_log.append(entry)

    def token_uri(self) -> str:
        return f"{self.root_url()}/token"

    def root_url(self) -> str:
        return self.base_url or request.host_url.rstrip("/")


def create_app(state: EmulatorState) -> Flask:
    app = Flask("emulator")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.config["EMULATOR_STATE"] = state
    _register_api(app, state)
    _register_oauth(app, state)
    _register_control(app, state)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        code = error.code or 500
        reason = {404: "notFound", 405: "httpMethodNotAllowed"}.get(code, "invalid")
        return _json_response(code, GoogleApiError(code, reason, error.name).body())

    @app.errorhandler(Exception)
    def crash(error: Exception) -> Response:
        # An emulator bug: keep the traceback visible, answer in Google's shape.
        app.logger.error("emulator error on %s %s", request.method, request.path, exc_info=error)
        return _json_response(
            500, GoogleApiError(500, "backendError", f"Emulator error: {error!r}").body()
        )

    return app


# ----- helpers ---------------------------------------------------------------------------
def _json_body(required: bool = True) -> Any:
    body = request.get_json(silent=True, force=True) if request.data else None
    if body is None and required:
        raise GoogleApiError(400, "parseError", "Parse Error")
    return body


def _bool_arg(name: str) -> bool:
    value = request.args.get(name)
    if value is None:
        return False
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0", ""):
        return False
    raise errors.invalid(f"Invalid boolean value for {name}", location=name)


def _max_results() -> int:
    value = request.args.get("maxResults")
    if value is None:
        return 250
    try:
        number = int(value)
    except ValueError as exc:
        raise errors.invalid("Invalid value for maxResults", location="maxResults") from exc
    if number < 1:
        raise errors.invalid("Invalid value for maxResults", location="maxResults")
    return min(number, MAX_RESULTS_LIMIT)


def _time_arg(name: str) -> datetime | None:
    value = request.args.get(name)
    return None if value is None else parse_api_time(value, name)


def _list_query(with_sync: bool) -> ListQuery:
    sync_token = request.args.get("syncToken") if with_sync else None
    if sync_token is not None:
        for name in SYNC_FORBIDDEN:
            if request.args.get(name):
                raise errors.invalid(
                    f"The parameter {name} is not allowed with syncToken.", location=name
                )
    time_min, time_max = _time_arg("timeMin"), _time_arg("timeMax")
    if time_min is not None and time_max is not None and time_max <= time_min:
        raise errors.time_range_empty(location="timeMax")
    order_by = request.args.get("orderBy")
    if order_by not in (None, "startTime", "updated"):
        raise errors.invalid("Invalid value for orderBy", location="orderBy")
    return ListQuery(
        sync_token=sync_token,
        page_token=request.args.get("pageToken"),
        max_results=_max_results(),
        single_events=_bool_arg("singleEvents"),
        show_deleted=_bool_arg("showDeleted"),
        time_min=time_min,
        time_max=time_max,
        order_by=order_by,
        q=request.args.get("q"),
        ical_uid=request.args.get("iCalUID"),
        updated_min=_time_arg("updatedMin"),
        event_types=tuple(request.args.getlist("eventTypes")),
        private_properties=_property_constraints("privateExtendedProperty"),
        shared_properties=_property_constraints("sharedExtendedProperty"),
    )


def _property_constraints(name: str) -> tuple[tuple[str, str], ...]:
    """Repeatable `propertyName=value` parameters, as sorted (name, value) pairs."""
    constraints = set()
    for text in request.args.getlist(name):
        prop, sep, value = text.partition("=")
        if not sep or not prop:
            raise errors.invalid(f"Invalid value for {name}", location=name)
        constraints.add((prop, value))
    return tuple(sorted(constraints))


def _json_response(status: int, body: Any) -> Response:
    if body is None:
        return Response(status=status)
    response = jsonify(body)
    response.status_code = status
    return response


# ----- Calendar API ----------------------------------------------------------------------
def _register_api(app: Flask, state: EmulatorState) -> None:
    store = state.store
    prefix = "/calendar/v3"

    def api(method_id: str, rule: str, methods: list[str]) -> Callable[[Callable[..., Any]], Any]:
        def decorator(handler: Callable[..., Any]) -> Any:
            @functools.wraps(handler)
            def view(**kwargs: Any) -> Response:
                return _serve_api(method_id, handler, kwargs)

            app.add_url_rule(prefix + rule, endpoint=method_id, view_func=view, methods=methods)
            return view

        return decorator

    def _serve_api(method_id: str, handler: Callable[..., Any], kwargs: dict[str, Any]) -> Response:
        g.calendar_id = kwargs.get("calendar_id")
        account = None
        try:
            latency = state.faults.config.latency_ms
            if latency:
                time.sleep(latency / 1000.0)
            account = state.auth.account_for(request.headers.get("Authorization"))
            if account is None:
                raise errors.auth_error()
            injected = state.faults.injected_status(method_id)
            if injected is not None:
                raise errors.injected(injected)
            result = handler(account, **kwargs)
            status, body = result if isinstance(result, tuple) else (200, result)
        except GoogleApiError as error:
            status, body = error.code, error.body()
        state.log_request(
            {
                "methodId": method_id,
                "calendarId": g.calendar_id,
                "account": account,
                "status": status,
                "syncToken": "syncToken" in request.args,
                "pageToken": "pageToken" in request.args,
            }
        )
        if state.record_bodies:
            with state.log_lock:
                state.responses.append((method_id, status, body))
        return _json_response(status, body)

    def calendar_for(account: str, calendar_id: str) -> CalendarState:
        if calendar_id == "primary":
            calendar_id = account
        with store.lock:
            calendar = store.calendars.get(calendar_id)
            if calendar is None or calendar.owner != account:
                raise errors.not_found()
        g.calendar_id = calendar.id
        return calendar

    @api("calendar.calendars.get", "/calendars/<calendar_id>", ["GET"])
    def calendars_get(account: str, calendar_id: str) -> dict[str, Any]:
        calendar = calendar_for(account, calendar_id)
        return {
            "kind": "calendar#calendar",
            "etag": f'"c{calendar.generation}"',
            "id": calendar.id,
            "summary": calendar.summary,
            "timeZone": calendar.time_zone,
            "conferenceProperties": {"allowedConferenceSolutionTypes": ["hangoutsMeet"]},
        }

    def list_entry(calendar: CalendarState, account: str) -> dict[str, Any]:
        entry = {
            "kind": "calendar#calendarListEntry",
            "etag": f'"l{calendar.generation}"',
            "id": calendar.id,
            "summary": calendar.summary,
            "timeZone": calendar.time_zone,
            "accessRole": "owner",
            "defaultReminders": [],
            "selected": True,
        }
        if calendar.id == account:
            entry["primary"] = True
        return entry

    @api("calendar.calendarList.list", "/users/me/calendarList", ["GET"])
    def calendar_list(account: str) -> dict[str, Any]:
        items = [list_entry(c, account) for c in store.calendars_of(account)]
        return {"kind": "calendar#calendarList", "etag": f'"{len(items)}"', "items": items}

    @api("calendar.calendarList.get", "/users/me/calendarList/<calendar_id>", ["GET"])
    def calendar_list_get(account: str, calendar_id: str) -> dict[str, Any]:
        return list_entry(calendar_for(account, calendar_id), account)

    @api("calendar.events.list", "/calendars/<calendar_id>/events", ["GET"])
    def events_list(account: str, calendar_id: str) -> dict[str, Any]:
        calendar = calendar_for(account, calendar_id)
        return store.list_events(calendar.id, _list_query(with_sync=True))

    @api("calendar.events.insert", "/calendars/<calendar_id>/events", ["POST"])
    def events_insert(account: str, calendar_id: str) -> dict[str, Any]:
        calendar = calendar_for(account, calendar_id)
        return store.insert_event(calendar.id, _json_body())

    @api("calendar.events.get", "/calendars/<calendar_id>/events/<event_id>", ["GET"])
    def events_get(account: str, calendar_id: str, event_id: str) -> dict[str, Any]:
        calendar = calendar_for(account, calendar_id)
        return store.get_event(calendar.id, event_id)

    @api("calendar.events.patch", "/calendars/<calendar_id>/events/<event_id>", ["PATCH"])
    def events_patch(account: str, calendar_id: str, event_id: str) -> dict[str, Any]:
        calendar = calendar_for(account, calendar_id)
        return store.modify_event(calendar.id, event_id, _json_body(), replace=False)

    @api("calendar.events.update", "/calendars/<calendar_id>/events/<event_id>", ["PUT"])
    def events_update(account: str, calendar_id: str, event_id: str) -> dict[str, Any]:
        calendar = calendar_for(account, calendar_id)
        return store.modify_event(calendar.id, event_id, _json_body(), replace=True)

    @api("calendar.events.delete", "/calendars/<calendar_id>/events/<event_id>", ["DELETE"])
    def events_delete(account: str, calendar_id: str, event_id: str) -> tuple[int, None]:
        calendar = calendar_for(account, calendar_id)
        store.delete_event(calendar.id, event_id)
        return 204, None

    @api(
        "calendar.events.instances", "/calendars/<calendar_id>/events/<event_id>/instances", ["GET"]
    )
    def events_instances(account: str, calendar_id: str, event_id: str) -> dict[str, Any]:
        calendar = calendar_for(account, calendar_id)
        return store.instances(calendar.id, event_id, _list_query(with_sync=False))

    @api("calendar.events.watch", "/calendars/<calendar_id>/events/watch", ["POST"])
    def events_watch(account: str, calendar_id: str) -> dict[str, Any]:
        calendar = calendar_for(account, calendar_id)
        body = _json_body()
        if not isinstance(body, dict):
            raise GoogleApiError(400, "parseError", "Parse Error")
        if not calendar.watchable:
            raise GoogleApiError(
                400,
                "pushNotSupportedForRequestedResource",
                "Push notifications are not supported by this resource.",
            )
        channel = _channel_from(body, calendar, account)
        if body.get("type") not in ("web_hook", "webhook"):
            raise errors.invalid("Invalid channel type; use web_hook.", location="type")
        try:
            state.push.register(channel)
        except KeyError as exc:
            raise GoogleApiError(
                400, "channelIdNotUnique", f"Channel id {channel.id} not unique"
            ) from exc
        response = {
            "kind": "api#channel",
            "id": channel.id,
            "resourceId": channel.resource_id,
            "resourceUri": channel.resource_uri,
            "expiration": channel.expiration_ms(),
        }
        if channel.token:
            response["token"] = channel.token
        return response

    def _channel_from(body: dict[str, Any], calendar: CalendarState, account: str) -> Channel:
        channel_id = body.get("id")
        if not isinstance(channel_id, str) or not channel_id:
            raise errors.required("id")
        if len(channel_id) > 64:
            raise errors.invalid("Channel id must be at most 64 characters.", location="id")
        token = body.get("token")
        if token is not None and (not isinstance(token, str) or len(token) > 256):
            raise errors.invalid("Channel token must be at most 256 characters.", location="token")
        address = body.get("address")
        if not isinstance(address, str) or not address.startswith(("https://", "http://")):
            raise GoogleApiError(
                400,
                "push.webhookUrlNotHttps",
                "WebHook callback must be HTTPS: " + str(address),
                domain="push",
            )
        params = body.get("params") or {}
        ttl: float = DEFAULT_CHANNEL_TTL_SECONDS
        if "ttl" in params:
            try:
                ttl = float(params["ttl"])
            except (TypeError, ValueError) as exc:
                raise errors.invalid("Invalid ttl.", location="params.ttl") from exc
            if ttl <= 0:
                raise errors.invalid("Invalid ttl.", location="params.ttl")
        ttl = min(ttl, state.faults.config.max_channel_ttl_seconds)
        expiration = state.clock.now() + timedelta(seconds=ttl)
        expiration = expiration.replace(microsecond=expiration.microsecond // 1000 * 1000)
        resource_uri = (
            f"{state.root_url()}/calendar/v3/calendars/"
            f"{quote(calendar.id, safe='@')}/events?alt=json"
        )
        return Channel(
            id=channel_id,
            token=token,
            address=sys.intern(address),  # one deployment's address, held by 100,000s
            calendar_id=calendar.id,
            resource_id=calendar.resource_id,
            resource_uri=resource_uri,
            expiration=expiration,
            account=account,
        )

    @api("calendar.channels.stop", "/channels/stop", ["POST"])
    def channels_stop(account: str) -> tuple[int, None]:
        body = _json_body()
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            raise errors.required("id")
        if not state.push.stop(body["id"], body.get("resourceId"), account):
            raise errors.not_found(f"Channel '{body['id']}' not found for project")
        return 204, None

    @api("calendar.freebusy.query", "/freeBusy", ["POST"])
    def freebusy_query(account: str) -> dict[str, Any]:
        body = _json_body()
        if not isinstance(body, dict):
            raise GoogleApiError(400, "parseError", "Parse Error")
        for name in ("timeMin", "timeMax"):
            if not body.get(name):
                raise errors.required(name)
        time_min = parse_api_time(str(body["timeMin"]), "timeMin")
        time_max = parse_api_time(str(body["timeMax"]), "timeMax")
        if time_max <= time_min:
            raise errors.time_range_empty(location="timeMax")
        calendars: dict[str, Any] = {}
        for item in body.get("items") or []:
            requested = item.get("id") if isinstance(item, dict) else None
            if not isinstance(requested, str):
                raise errors.required("items.id")
            try:
                calendar = calendar_for(account, requested)
            except GoogleApiError:
                calendars[requested] = {
                    "errors": [{"domain": "global", "reason": "notFound"}],
                    "busy": [],
                }
                continue
            busy = store.busy(calendar.id, time_min, time_max)
            calendars[requested] = {
                "busy": [{"start": format_z(start), "end": format_z(end)} for start, end in busy]
            }
        g.calendar_id = None
        return {
            "kind": "calendar#freeBusy",
            "timeMin": format_z(time_min),
            "timeMax": format_z(time_max),
            "calendars": calendars,
        }

    @app.route(prefix + "/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def api_not_found(rest: str) -> Response:
        return _json_response(404, errors.not_found().body())


# ----- OAuth -----------------------------------------------------------------------------
def _with_basic_client_auth(form: dict[str, str]) -> dict[str, str]:
    """Take client credentials from HTTP Basic auth (client_secret_basic, RFC 6749 §2.3.1).

    requests-oauthlib (google-auth-oauthlib's Flow) sends them only there by default. The RFC
    form-urlencodes id and secret before base64; clients that skip that step send the same
    text for our client, so decoding is harmless.
    """
    if "client_id" in form and "client_secret" in form:
        return form
    auth = request.authorization
    if auth is None or auth.type != "basic" or auth.username is None:
        return form
    merged = dict(form)
    merged.setdefault("client_id", unquote_plus(auth.username))
    merged.setdefault("client_secret", unquote_plus(auth.password or ""))
    return merged


def _register_oauth(app: Flask, state: EmulatorState) -> None:
    @app.post("/token")
    def token() -> Response:
        form = _with_basic_client_auth(request.form.to_dict())
        try:
            body = state.auth.token_grant(form, state.faults.config.access_token_ttl_seconds)
            status = 200
        except OAuthError as error:
            status, body = error.status, error.body
        state.log_request(
            {
                "methodId": "oauth2.token",
                "calendarId": None,
                "account": None,
                "status": status,
                "syncToken": False,
                "pageToken": False,
            }
        )
        response = _json_response(status, body)
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/o/oauth2/auth")
    def consent() -> Response:
        redirect_uri = request.args.get("redirect_uri")
        if not redirect_uri:
            return _json_response(
                400, {"error": "invalid_request", "error_description": "Missing redirect_uri"}
            )
        email = request.args.get("login_hint") or next(iter(state.auth.accounts), None)
        if email is None:
            return _json_response(
                400,
                {
                    "error": "invalid_request",
                    "error_description": "No account to consent for; create one or pass login_hint",
                },
            )
        params = {"code": state.auth.issue_code(email), "scope": request.args.get("scope", "")}
        if "state" in request.args:
            params["state"] = request.args["state"]
        separator = "&" if "?" in redirect_uri else "?"
        return redirect(redirect_uri + separator + urlencode(params), code=302)


# ----- control API -----------------------------------------------------------------------
def _register_control(app: Flask, state: EmulatorState) -> None:
    store = state.store
    base = "/_emulator"

    def control(rule: str, methods: list[str]) -> Callable[[Callable[..., Any]], Any]:
        def decorator(handler: Callable[..., Any]) -> Any:
            @functools.wraps(handler)
            def view(**kwargs: Any) -> Response:
                try:
                    result = handler(**kwargs)
                except GoogleApiError as error:
                    return _json_response(error.code, error.body())
                except KeyError as error:
                    return _json_response(404, {"error": f"not found: {error.args[0]}"})
                except (ValueError, TypeError) as error:
                    return _json_response(400, {"error": str(error)})
                status, body = result if isinstance(result, tuple) else (200, result)
                return _json_response(status, body)

            app.add_url_rule(
                base + rule, endpoint="control:" + handler.__name__, view_func=view, methods=methods
            )
            return view

        return decorator

    def body() -> dict[str, Any]:
        data = request.get_json(silent=True, force=True) if request.data else {}
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        return data

    @control("/reset", ["POST"])
    def reset() -> dict[str, Any]:
        seed = body().get("seed")
        state.reset(None if seed is None else int(seed))
        return {"seed": state.seed}

    @control("/accounts", ["POST"])
    def create_account() -> dict[str, Any]:
        data = body()
        return state.auth.create_account(
            str(data.get("email", "")), state.token_uri(), refresh_token=data.get("refresh_token")
        )

    @control("/accounts/<email>/revoke", ["POST"])
    def revoke_account(email: str) -> tuple[int, None]:
        state.auth.revoke_account(email)
        return 204, None

    @control("/calendars", ["POST"])
    def create_calendar() -> tuple[int, dict[str, Any]]:
        data = body()
        owner = data.get("owner")
        if not owner:
            raise ValueError("owner is required")
        state.auth.ensure_account(owner)
        calendar = store.create_calendar(
            str(data.get("id", "")),
            data.get("timeZone", "UTC"),
            owner,
            summary=data.get("summary"),
            watchable=bool(data.get("watchable", True)),
        )
        return 201, {
            "id": calendar.id,
            "timeZone": calendar.time_zone,
            "owner": owner,
            "summary": calendar.summary,
            "watchable": calendar.watchable,
            "resourceId": calendar.resource_id,
        }

    @control("/calendars/<calendar_id>", ["DELETE"])
    def delete_calendar(calendar_id: str) -> tuple[int, None]:
        store.delete_calendar(calendar_id)
        state.push.stop_calendar(calendar_id)
        return 204, None

    def change_scope() -> contextlib.AbstractContextManager[None]:
        # ?silent=true: the silent-divergence fault (stored, but no change-sequence position
        # and no push), so the product's incremental view drifts from freeBusy.
        silent = request.args.get("silent", "").lower() in ("1", "true")
        return store.silently() if silent else contextlib.nullcontext()

    @control("/calendars/<calendar_id>/events", ["POST"])
    def insert_event(calendar_id: str) -> tuple[int, dict[str, Any]]:
        with change_scope():
            return 200, store.insert_event(calendar_id, body())

    @control("/calendars/<calendar_id>/events/<event_id>", ["GET"])
    def get_event(calendar_id: str, event_id: str) -> dict[str, Any]:
        return store.get_event(calendar_id, event_id)

    @control("/calendars/<calendar_id>/events/<event_id>", ["PATCH"])
    def patch_event(calendar_id: str, event_id: str) -> dict[str, Any]:
        with change_scope():
            return store.modify_event(calendar_id, event_id, body(), replace=False)

    @control("/calendars/<calendar_id>/events/<event_id>", ["PUT"])
    def update_event(calendar_id: str, event_id: str) -> dict[str, Any]:
        with change_scope():
            return store.modify_event(calendar_id, event_id, body(), replace=True)

    @control("/calendars/<calendar_id>/events/<event_id>", ["DELETE"])
    def delete_event(calendar_id: str, event_id: str) -> tuple[int, None]:
        with change_scope():
            store.delete_event(calendar_id, event_id)
        return 204, None

    @control("/calendars/<calendar_id>/invalidate-sync-tokens", ["POST"])
    def invalidate_sync_tokens(calendar_id: str) -> tuple[int, None]:
        store.invalidate_sync_tokens(calendar_id)
        return 204, None

    @control("/calendars/<calendar_id>/busy", ["GET"])
    def reference_busy(calendar_id: str) -> dict[str, Any]:
        time_min = _time_arg("timeMin")
        time_max = _time_arg("timeMax")
        if time_min is None or time_max is None:
            raise ValueError("timeMin and timeMax are required")
        busy = store.busy(calendar_id, time_min, time_max)
        return {"busy": [{"start": format_z(s), "end": format_z(e)} for s, e in busy]}

    @control("/faults", ["GET"])
    def get_faults() -> dict[str, Any]:
        return state.faults.as_dict()

    @control("/faults", ["PUT", "POST"])
    def set_faults() -> dict[str, Any]:
        state.faults.update(body())
        return state.faults.as_dict()

    @control("/requests", ["GET"])
    def requests_log() -> list[dict[str, Any]]:
        since = int(request.args.get("since", 0))
        with state.log_lock:
            return [dict(entry) for entry in state.requests_log[since:]]

    @control("/channels", ["GET"])
    def channels() -> list[dict[str, Any]]:
        return state.push.describe()

    @control("/deliveries", ["GET"])
    def deliveries() -> list[dict[str, Any]]:
        return state.push.deliveries_since(int(request.args.get("since", 0)))

    @control("/push-idle", ["GET"])
    def push_idle() -> dict[str, Any]:
        return {"idle": state.push.idle()}

    def clock_state() -> dict[str, Any]:
        return {
            "now": format_updated(state.clock.now()),
            "offsetSeconds": state.clock.offset_seconds,
        }

    @control("/clock", ["GET"])
    def get_clock() -> dict[str, Any]:
        return clock_state()

    @control("/clock", ["POST"])
    def advance_clock() -> dict[str, Any]:
        state.clock.advance(float(body().get("advance_seconds", 0)))
        return clock_state()

    @control("/scenario", ["POST"])
    def scenario() -> dict[str, Any]:
        return load_scenario(state, body(), state.token_uri())
