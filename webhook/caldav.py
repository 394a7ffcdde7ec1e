"""Read-only CalDAV: one calendar per host, `Busy (calsync)`, whose objects are the host's busy
sources (one VEVENT per calendar event block and per manual block, as in the ICS feed).

Built for what booking tools send (tsdav, Cal.com's client; the Python `caldav` library;
Thunderbird): `PROPFIND` of the server URL (current-user-principal), the principal
(calendar-home-set), the home (Depth 1: the calendar's displayname, resourcetype,
supported-calendar-component-set, getctag, sync-token, timezone, description, colour) and the
calendar (Depth 0/1: supported-report-set, members); `REPORT` calendar-query (time-range;
`expand` changes nothing, as no object recurs), calendar-multiget, free-busy-query (one
VFREEBUSY) and sync-collection (RFC 6578); `GET` of an object (or of the calendar: the ICS
feed). Writes answer 403 with a DAV error body.

Auth: HTTP Basic on every request, username = host id, password = the host's feed token;
anything else is 401 with `WWW-Authenticate: Basic realm="calsync"` and no body. Another
host's paths answer 404.

The calendar holds the busy sources overlapping now - 1 day to now + CALSYNC_FEED_DAYS (the
feed window, moving once a minute); a time-range is clipped to it, so no request reads more
than that. `getctag`, `sync-token` and each object's `getetag` are hashes of the busy data
(rules/busy_feed.py): they change exactly when the busy set (or a calendar's freshness)
changes. Sync tokens are not kept: a client presenting anything but the current token is
told (403 `valid-sync-token`) to sync again from scratch, which RFC 6578 allows.

Never a `<response>` with a non-2xx status in a REPORT answer: tsdav fails the whole query
on one, and Cal.com then silently drops the host's busy time. So a multiget href that names
no busy source (it ended meanwhile) is left out rather than answered 404.

Why hand-written rather than a library: Radicale (3.9) is a whole WSGI server with a
process-global configuration; importing its logging module patches methods onto every
`logging.Logger`; its storage plugin gets no request context (it would need its own
database sessions and settings), must hand back every item as a vobject-parsed object, and
its default calendar-query filtering walks the whole collection in Python; its error
answers are its own. xandikos is built around a git-backed store with the same shape of
problem. What a read-only, one-calendar server needs is small: the XML of the few
properties and reports above, written here with `xml.etree`, parsed with `defusedxml` (no DTDs or
entities).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NoReturn
from urllib.parse import quote, unquote, urlsplit
from xml.etree import ElementTree as ET

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as safe_fromstring
from flask import Blueprint, Response, redirect, request
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as WerkzeugResponse

from models.busy_queries import host_sources_named
from models.hosts import Host
from rules.busy_feed import (
    CALENDAR_NAME,
    BusySource,
    body_etag,
    busy_calendar,
    freebusy_calendar,
    parse_resource_name,
    set_tag,
    single_event_calendar,
    stale_description,
)
from webhook.auth import feed_token_host
from webhook.feed_data import FeedWindow, Freshness, feed_window, host_staleness, window_sources
from webhook.ics_feed import ICS_CONTENT_TYPE, feed_now
from webhook.request_scope import app_settings, read_only_session

caldav = Blueprint("caldav", __name__)

DAV = "DAV:"
CAL = "urn:ietf:params:xml:ns:caldav"
CS = "http://calendarserver.org/ns/"
ICAL = "http://apple.com/ns/ical/"
for _prefix, _uri in (("d", DAV), ("c", CAL), ("cs", CS), ("ical", ICAL)):
    ET.register_namespace(_prefix, _uri)

READ_METHODS = ["OPTIONS", "GET", "HEAD", "PROPFIND", "REPORT"]
WRITE_METHODS = ["PUT", "DELETE", "MKCALENDAR", "MKCOL", "PROPPATCH", "MOVE", "COPY"]
WRITE_METHODS += ["POST", "LOCK", "UNLOCK", "ACL", "PATCH"]
# A REPORT or PROPFIND body is a few hundred bytes; a multiget of many hrefs a few KB.
MAX_BODY_BYTES = 64 * 1024
MAX_MULTIGET_HREFS = 1000
CALENDAR_SLUG = "busy"
CALENDAR_COLOR = "#9E9E9EFF"
XML_CONTENT_TYPE = "application/xml; charset=utf-8"
UTC_TIMEZONE = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//calsync//busy time//EN\r\n"
    "BEGIN:VTIMEZONE\r\nTZID:UTC\r\nBEGIN:STANDARD\r\nDTSTART:19700101T000000\r\n"
    "TZOFFSETFROM:+0000\r\nTZOFFSETTO:+0000\r\nTZNAME:UTC\r\nEND:STANDARD\r\n"
    "END:VTIMEZONE\r\nEND:VCALENDAR\r\n"
)


def q(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


class DavError(Exception):
    """An error answered as a DAV `<d:error>` body (RFC 4918 §16) with a precondition."""

    def __init__(self, status: int, condition: str | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.condition = condition  # a qualified element name, e.g. q(DAV, "finite-depth")
        self.message = message


@caldav.errorhandler(DavError)
def dav_error(error: DavError) -> Response:
    root = ET.Element(q(DAV, "error"))
    if error.condition:
        ET.SubElement(root, error.condition)
    ET.SubElement(root, q(DAV, "responsedescription")).text = error.message
    return _xml(root, error.status)


def _xml(root: ET.Element, status: int) -> Response:
    body = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return Response(body, status=status, content_type=XML_CONTENT_TYPE)


def _unauthorized() -> Response:
    return Response(b"", status=401, headers={"WWW-Authenticate": 'Basic realm="calsync"'})


def _basic_host() -> Host | None:
    """The host whose id and feed token the Basic header holds; None otherwise."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic" or len(encoded) > 1024:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    if not sep or not (username.isascii() and username.isdigit() and len(username) <= 10):
        return None
    return feed_token_host(int(username), password)


@caldav.route(
    "/.well-known/caldav",
    methods=READ_METHODS + WRITE_METHODS,
    provide_automatic_options=False,
)
def well_known() -> WerkzeugResponse:
    # 301 keeps the method (PROPFIND) in fetch and requests alike; 302 would become a GET.
    return redirect(request.script_root + "/dav/", code=301)


@dataclass
class Collection:
    """The host's calendar, loaded once per request."""

    host: Host
    session: Session
    now: datetime
    window: FeedWindow
    freshness: Freshness
    _sources: list[BusySource] | None = field(default=None)

    @property
    def sources(self) -> list[BusySource]:
        if self._sources is None:
            self._sources = window_sources(
                self.session, self.host.id, self.window.start, self.window.end, self.freshness
            )
        return self._sources

    @property
    def tag(self) -> str:
        return set_tag(self.sources, self.freshness.stale)

    @property
    def sync_token(self) -> str:
        return f"urn:calsync:sync:{self.tag}"

    def in_range(self, start: datetime | None, end: datetime | None) -> list[BusySource]:
        """The sources overlapping [start, end) clipped to the window. A query asks the
        database for that range only (14 of the window's 91 days, for Cal.com), unless the
        whole window is loaded already."""
        start = max(start or self.window.start, self.window.start)
        end = min(end or self.window.end, self.window.end)
        if self._sources is None:
            return window_sources(self.session, self.host.id, start, end, self.freshness)
        return [s for s in self._sources if s.start < end and s.end > start]


@dataclass(frozen=True)
class Node:
    kind: str  # root, principal, home, calendar, resource
    href: str
    source: BusySource | None = None


class Paths:
    def __init__(self, host_id: int) -> None:
        base = request.script_root + "/dav"
        self.root = base + "/"
        self.principal = f"{base}/principals/{host_id}/"
        self.home = f"{base}/calendars/{host_id}/"
        self.calendar = f"{self.home}{CALENDAR_SLUG}/"

    def resource(self, source: BusySource) -> str:
        return self.calendar + source.resource_name


@caldav.route(
    "/dav/",
    defaults={"subpath": ""},
    methods=READ_METHODS + WRITE_METHODS,
    provide_automatic_options=False,
)
@caldav.route(
    "/dav/<path:subpath>", methods=READ_METHODS + WRITE_METHODS, provide_automatic_options=False
)
def dav(subpath: str) -> Response:
    if request.method == "OPTIONS":
        return _options()
    session = read_only_session()
    host = _basic_host()
    if host is None:
        return _unauthorized()
    if request.method in WRITE_METHODS:
        raise DavError(403, q(DAV, "need-privileges"), "This calendar is read-only.")
    paths = Paths(host.id)
    now = feed_now()
    collection = Collection(
        host,
        session,
        now,
        feed_window(now, app_settings().feed_days),
        host_staleness(session, host.id, now),
    )
    node = _resolve(subpath, host, paths, collection)
    if request.method in ("GET", "HEAD"):
        return _get(node, collection)
    body = _body()
    if request.method == "PROPFIND":
        return _propfind(node, body, paths, collection)
    return _report(node, body, paths, collection)


def _options() -> Response:
    allow = ", ".join(READ_METHODS)
    return Response(
        b"",
        status=200,
        headers={"DAV": "1, 3, calendar-access", "Allow": allow, "Content-Length": "0"},
    )


def _not_found() -> NoReturn:
    raise DavError(404, None, "Nothing here.")


def _resolve(subpath: str, host: Host, paths: Paths, collection: Collection) -> Node:
    parts = [unquote(p) for p in subpath.split("/") if p]
    if not parts:
        return Node("root", paths.root)
    if len(parts) < 2 or parts[1] != str(host.id) or parts[0] not in ("principals", "calendars"):
        _not_found()
    if parts[0] == "principals":
        if len(parts) != 2:
            _not_found()
        return Node("principal", paths.principal)
    if len(parts) == 2:
        return Node("home", paths.home)
    if parts[2] != CALENDAR_SLUG or len(parts) > 4:
        _not_found()
    if len(parts) == 3:
        return Node("calendar", paths.calendar)
    source = _source_named(parts[3], host, collection)
    if source is None:
        _not_found()
    return Node("resource", paths.resource(source), source)


def _source_named(resource: str, host: Host, collection: Collection) -> BusySource | None:
    ref = parse_resource_name(quote(resource, safe=""))
    if ref is None:
        return None
    found = host_sources_named(
        collection.session, host.id, [ref], stale_calendars=collection.freshness.stale_ids
    )
    return found[0] if found else None


def _get(node: Node, collection: Collection) -> Response:
    if node.kind == "resource" and node.source is not None:
        body = single_event_calendar(node.source)
    elif node.kind == "calendar":
        body = busy_calendar(collection.sources, collection.freshness.stale)
    else:
        return Response(b"calsync CalDAV\n", content_type="text/plain; charset=utf-8")
    etag = body_etag(body)
    if request.if_none_match.contains_weak(etag.strip('"')):
        response = Response(status=304)
    else:
        response = Response(body, content_type=ICS_CONTENT_TYPE)
    response.headers["ETag"] = etag
    response.headers["Cache-Control"] = "private, no-cache"
    return response


def _body() -> ET.Element | None:
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise DavError(413, None, f"Request bodies are limited to {MAX_BODY_BYTES} bytes.")
    raw = request.get_data(cache=False)
    if len(raw) > MAX_BODY_BYTES:
        raise DavError(413, None, f"Request bodies are limited to {MAX_BODY_BYTES} bytes.")
    if not raw.strip():
        return None
    # defusedxml refuses DTDs and entities: nothing a CalDAV client sends needs one, and
    # they are how XML bombs and external-entity reads work.
    try:
        return safe_fromstring(raw, forbid_dtd=True)
    except (ET.ParseError, DefusedXmlException):
        raise DavError(
            400, None, "The request body is not well-formed XML without a DTD."
        ) from None


def _depth(default: str = "0") -> str:
    depth = request.headers.get("Depth", default).strip().lower()
    if depth == "infinity":
        raise DavError(403, q(DAV, "propfind-finite-depth"), "Depth: infinity is not allowed.")
    if depth not in ("0", "1"):
        raise DavError(400, None, "Depth must be 0 or 1.")
    return depth


# --- properties ---------------------------------------------------------------------------

PropFill = Callable[[ET.Element], None]


def _href(parent: ET.Element, href: str) -> None:
    ET.SubElement(parent, q(DAV, "href")).text = href


def _text(value: str) -> PropFill:
    def fill(element: ET.Element) -> None:
        element.text = value

    return fill


def _children(*names: str) -> PropFill:
    def fill(element: ET.Element) -> None:
        for name in names:
            ET.SubElement(element, name)

    return fill


def _href_prop(href: str) -> PropFill:
    return lambda element: _href(element, href)


def _component_set(element: ET.Element) -> None:
    ET.SubElement(element, q(CAL, "comp"), {"name": "VEVENT"})


def _calendar_data_type(element: ET.Element) -> None:
    ET.SubElement(
        element, q(CAL, "calendar-data"), {"content-type": "text/calendar", "version": "2.0"}
    )


def _report_set(element: ET.Element) -> None:
    for namespace, name in (
        (CAL, "calendar-query"),
        (CAL, "calendar-multiget"),
        (CAL, "free-busy-query"),
        (DAV, "sync-collection"),
    ):
        supported = ET.SubElement(element, q(DAV, "supported-report"))
        ET.SubElement(ET.SubElement(supported, q(DAV, "report")), q(namespace, name))


def _privileges(element: ET.Element) -> None:
    for name in ((DAV, "read"), (CAL, "read-free-busy")):
        ET.SubElement(ET.SubElement(element, q(DAV, "privilege")), q(*name))


def _properties(node: Node, paths: Paths, collection: Collection) -> dict[str, PropFill]:
    """Every property of `node`, by qualified name (filled only when asked for)."""
    props: dict[str, PropFill] = {
        q(DAV, "current-user-principal"): _href_prop(paths.principal),
        q(DAV, "current-user-privilege-set"): _privileges,
    }
    if node.kind in ("root", "principal", "home"):
        props[q(CAL, "calendar-home-set")] = _href_prop(paths.home)
    if node.kind == "root":
        props[q(DAV, "resourcetype")] = _children(q(DAV, "collection"))
    elif node.kind == "principal":
        props[q(DAV, "resourcetype")] = _children(q(DAV, "collection"), q(DAV, "principal"))
        props[q(DAV, "principal-URL")] = _href_prop(paths.principal)
        props[q(DAV, "displayname")] = _text(collection.host.name)
    elif node.kind == "home":
        props[q(DAV, "resourcetype")] = _children(q(DAV, "collection"))
        props[q(DAV, "displayname")] = _text("calendars")
        props[q(DAV, "owner")] = _href_prop(paths.principal)
    elif node.kind == "calendar":
        props.update(
            {
                q(DAV, "resourcetype"): _children(q(DAV, "collection"), q(CAL, "calendar")),
                q(DAV, "displayname"): _text(CALENDAR_NAME),
                q(DAV, "owner"): _href_prop(paths.principal),
                q(CAL, "supported-calendar-component-set"): _component_set,
                q(DAV, "supported-report-set"): _report_set,
                q(CS, "getctag"): lambda e: _text(collection.tag)(e),
                q(DAV, "sync-token"): lambda e: _text(collection.sync_token)(e),
                q(CAL, "calendar-timezone"): _text(UTC_TIMEZONE),
                q(CAL, "calendar-description"): _text(
                    stale_description(collection.freshness.stale)
                ),
                q(ICAL, "calendar-color"): _text(CALENDAR_COLOR),
                q(CAL, "supported-calendar-data"): _calendar_data_type,
                q(DAV, "getcontenttype"): _text("text/calendar; charset=utf-8"),
            }
        )
    elif node.kind == "resource" and node.source is not None:
        data = single_event_calendar(node.source)
        props.update(
            {
                q(DAV, "resourcetype"): _children(),
                q(DAV, "getetag"): _text(body_etag(data)),
                q(DAV, "getcontenttype"): _text("text/calendar; charset=utf-8; component=VEVENT"),
                q(DAV, "getcontentlength"): _text(str(len(data))),
                q(CAL, "calendar-data"): _text(data.decode()),
            }
        )
    return props


def _response(
    multistatus: ET.Element,
    node: Node,
    props: dict[str, PropFill],
    asked: list[str] | None,
    *,
    report_missing: bool,
) -> None:
    """One `<response>` with the asked properties (all but calendar-data when `asked` is
    None: allprop). Properties it lacks go in a 404 propstat only if `report_missing`."""
    response = ET.SubElement(multistatus, q(DAV, "response"))
    _href(response, node.href)
    names = asked if asked is not None else [n for n in props if n != q(CAL, "calendar-data")]
    found = ET.SubElement(response, q(DAV, "propstat"))
    found_prop = ET.SubElement(found, q(DAV, "prop"))
    missing = []
    for name in names:
        fill = props.get(name)
        if fill is None:
            missing.append(name)
            continue
        fill(ET.SubElement(found_prop, name))
    ET.SubElement(found, q(DAV, "status")).text = "HTTP/1.1 200 OK"
    if missing and report_missing:
        lost = ET.SubElement(response, q(DAV, "propstat"))
        lost_prop = ET.SubElement(lost, q(DAV, "prop"))
        for name in missing:
            ET.SubElement(lost_prop, name)
        ET.SubElement(lost, q(DAV, "status")).text = "HTTP/1.1 404 Not Found"


def _asked(body: ET.Element | None) -> list[str] | None:
    """The property names a PROPFIND or REPORT asks for; None for allprop (or no body)."""
    if body is None:
        return None
    prop = body.find(q(DAV, "prop"))
    if prop is None:
        return None
    return [child.tag for child in prop]


def _members(node: Node, paths: Paths, collection: Collection) -> list[Node]:
    if node.kind == "home":
        return [Node("calendar", paths.calendar)]
    if node.kind == "calendar":
        return [Node("resource", paths.resource(s), s) for s in collection.sources]
    return []


def _propfind(
    node: Node, body: ET.Element | None, paths: Paths, collection: Collection
) -> Response:
    depth = _depth()
    if body is not None and body.tag != q(DAV, "propfind"):
        raise DavError(400, None, "A PROPFIND body is a DAV:propfind element.")
    asked = _asked(body)
    multistatus = ET.Element(q(DAV, "multistatus"))
    nodes = [node] + (_members(node, paths, collection) if depth == "1" else [])
    for each in nodes:
        _response(
            multistatus, each, _properties(each, paths, collection), asked, report_missing=True
        )
    return _xml(multistatus, 207)


# --- reports ------------------------------------------------------------------------------


def _parse_ical_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise DavError(
            400, q(CAL, "valid-filter"), f"Bad time {value[:40]!r}: use UTC, e.g. 20250101T000000Z."
        ) from None


def _time_range(element: ET.Element | None) -> tuple[datetime | None, datetime | None]:
    if element is None:
        return None, None
    start = _parse_ical_time(element.get("start"))
    end = _parse_ical_time(element.get("end"))
    if start is not None and end is not None and end <= start:
        raise DavError(400, q(CAL, "valid-filter"), "The time-range ends before it starts.")
    return start, end


def _query_matches(body: ET.Element, collection: Collection) -> list[BusySource]:
    """The sources a calendar-query filter selects: VEVENTs in its time-range (clipped to
    the calendar's window). A filter on other components selects nothing."""
    top = body.find(q(CAL, "filter"))
    if top is None:
        return list(collection.sources)
    calendar_filter = top.find(q(CAL, "comp-filter"))
    if calendar_filter is None or calendar_filter.get("name", "").upper() != "VCALENDAR":
        return []
    event_filter = None
    for child in calendar_filter.findall(q(CAL, "comp-filter")):
        if child.get("name", "").upper() == "VEVENT":
            event_filter = child
        else:
            return []
    if event_filter is None:
        start, end = _time_range(calendar_filter.find(q(CAL, "time-range")))
    else:
        start, end = _time_range(event_filter.find(q(CAL, "time-range")))
    return collection.in_range(start, end)


def _report_props(body: ET.Element) -> list[str]:
    asked = _asked(body)
    return asked if asked is not None else [q(DAV, "getetag")]


def _resources_answer(
    sources: Iterable[BusySource], asked: list[str], paths: Paths, collection: Collection
) -> ET.Element:
    multistatus = ET.Element(q(DAV, "multistatus"))
    for source in sorted(sources, key=lambda s: (s.start, s.name)):
        node = Node("resource", paths.resource(source), source)
        _response(
            multistatus, node, _properties(node, paths, collection), asked, report_missing=False
        )
    return multistatus


def _report(node: Node, body: ET.Element | None, paths: Paths, collection: Collection) -> Response:
    if body is None:
        raise DavError(400, None, "A REPORT needs a body.")
    if node.kind != "calendar":
        raise DavError(403, q(DAV, "supported-report"), "Reports run on the calendar only.")
    if body.tag == q(CAL, "calendar-query"):
        sources = _query_matches(body, collection)
        return _xml(_resources_answer(sources, _report_props(body), paths, collection), 207)
    if body.tag == q(CAL, "calendar-multiget"):
        return _multiget(body, paths, collection)
    if body.tag == q(CAL, "free-busy-query"):
        return _free_busy(body, collection)
    if body.tag == q(DAV, "sync-collection"):
        return _sync_collection(body, paths, collection)
    raise DavError(403, q(DAV, "supported-report"), "This report is not supported.")


def _multiget(body: ET.Element, paths: Paths, collection: Collection) -> Response:
    hrefs = [h.text or "" for h in body.findall(q(DAV, "href"))]
    if len(hrefs) > MAX_MULTIGET_HREFS:
        raise DavError(403, None, f"At most {MAX_MULTIGET_HREFS} hrefs per multiget.")
    refs = []
    for href in hrefs:
        path = urlsplit(href.strip()).path
        if not path.startswith(paths.calendar):
            continue
        ref = parse_resource_name(path[len(paths.calendar) :])
        if ref is not None:
            refs.append(ref)
    sources = (
        host_sources_named(
            collection.session,
            collection.host.id,
            refs,
            stale_calendars=collection.freshness.stale_ids,
        )
        if refs
        else []
    )
    # Hrefs naming nothing (a block that ended meanwhile) are left out: see the docstring.
    return _xml(_resources_answer(sources, _report_props(body), paths, collection), 207)


def _free_busy(body: ET.Element, collection: Collection) -> Response:
    start, end = _time_range(body.find(q(CAL, "time-range")))
    if start is None:
        raise DavError(400, q(CAL, "valid-filter"), "free-busy-query needs a time-range start.")
    start = max(start, collection.window.start)
    end = min(end or collection.window.end, collection.window.end)
    if end <= start:
        start = end = collection.window.start
    data = freebusy_calendar(
        collection.in_range(start, end),
        start,
        end,
        stamp=collection.now,
        uid=f"freebusy-{collection.host.id}@calsync",
        with_feed_properties=False,
    )
    return Response(data, content_type=ICS_CONTENT_TYPE)


def _sync_collection(body: ET.Element, paths: Paths, collection: Collection) -> Response:
    level = (body.findtext(q(DAV, "sync-level")) or "1").strip()
    if level != "1":
        raise DavError(403, q(DAV, "supported-report"), "Only sync-level 1 is supported.")
    token = (body.findtext(q(DAV, "sync-token")) or "").strip()
    asked = _report_props(body)
    if not token:
        multistatus = _resources_answer(collection.sources, asked, paths, collection)
    elif token == collection.sync_token:
        multistatus = ET.Element(q(DAV, "multistatus"))
    else:
        raise DavError(
            403, q(DAV, "valid-sync-token"), "The busy time changed: sync again from scratch."
        )
    ET.SubElement(multistatus, q(DAV, "sync-token")).text = collection.sync_token
    return _xml(multistatus, 207)
