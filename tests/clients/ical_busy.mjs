// Busy intervals of iCalendar text, read the way Cal.com reads them with ical.js
// (packages/lib/CalendarService.ts and the ICS-feed app): sanitize line endings and folds,
// ICAL.parse -> ICAL.Component, take VEVENTs, expand recurring ones with ical.js's iterator
// (at most 365 occurrences, sub-daily rules ignored), and give [{start, end}] in UTC.
import ICAL from "ical.js";

const MAX_ITERATIONS = 365;
const SUB_DAILY = new Set(["HOURLY", "MINUTELY", "SECONDLY"]);

// As Cal.com's sanitizeCalendarObject: normalise line endings, unfold, CRLF again.
export function sanitize(text) {
  return text
    .replaceAll("\r\n", "\n")
    .replaceAll("\r", "\n")
    .replaceAll("\n ", "")
    .replaceAll("\n\t", "")
    .replaceAll("\n", "\r\n");
}

function span(start, end) {
  return { start: start.toJSDate().toISOString(), end: end.toJSDate().toISOString() };
}

// Busy spans of one VEVENT between windowStart and windowEnd (Date objects).
function eventSpans(vevent, windowStart, windowEnd) {
  const event = new ICAL.Event(vevent);
  if (!event.isRecurring()) {
    return [span(event.startDate, event.endDate)];
  }
  const types = Object.keys(event.getRecurrenceTypes());
  if (types.some((t) => SUB_DAILY.has(t))) return [];
  const out = [];
  const iterator = event.iterator();
  for (let i = 0, next = iterator.next(); next && i < MAX_ITERATIONS; i++, next = iterator.next()) {
    const details = event.getOccurrenceDetails(next);
    if (details.startDate.toJSDate() >= windowEnd) break;
    if (details.endDate.toJSDate() <= windowStart) continue;
    out.push(span(details.startDate, details.endDate));
  }
  return out;
}

// Cal.com's CalDAV app: the first VEVENT of each object, TRANSPARENT ones skipped.
export function caldavObjectBusy(text, windowStart, windowEnd) {
  const vcalendar = new ICAL.Component(ICAL.parse(sanitize(text)));
  const vevent = vcalendar.getFirstSubcomponent("vevent");
  if (!vevent) return [];
  if (vevent.getFirstPropertyValue("transp") === "TRANSPARENT") return [];
  return eventSpans(vevent, windowStart, windowEnd);
}

// Cal.com's ICS-feed app: every VEVENT of the feed blocks, TRANSP is not read.
export function feedBusy(text, windowStart, windowEnd) {
  const vcalendar = new ICAL.Component(ICAL.parse(text));
  return {
    name: vcalendar.getFirstPropertyValue("x-wr-calname"),
    busy: vcalendar
      .getAllSubcomponents("vevent")
      .flatMap((vevent) => eventSpans(vevent, windowStart, windowEnd)),
  };
}
