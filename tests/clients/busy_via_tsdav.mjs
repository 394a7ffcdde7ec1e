// What Cal.com's CalDAV app does to learn a host's busy time, with the same library (tsdav)
// and parser (ical.js): discover the account, keep calendars that hold VEVENTs, one
// calendar-query REPORT per calendar with expand and a time range, parse each object.
//
//   node busy_via_tsdav.mjs SERVER_URL USERNAME PASSWORD START END
//
// Prints {"calendars": [{url, displayName}], "busy": [{start, end}]} (UTC ISO strings) as
// JSON on stdout; exits non-zero on any error (Cal.com would drop the calendar's busy time).
import { createAccount, fetchCalendarObjects, fetchCalendars, getBasicAuthHeaders } from "tsdav";

import { caldavObjectBusy } from "./ical_busy.mjs";

const [serverUrl, username, password, start, end] = process.argv.slice(2);
if (!end) {
  console.error("usage: node busy_via_tsdav.mjs SERVER_URL USERNAME PASSWORD START END");
  process.exit(2);
}

const headers = getBasicAuthHeaders({ username, password });
const account = await createAccount({
  account: { serverUrl, accountType: "caldav", credentials: { username, password } },
  headers,
});
const calendars = (await fetchCalendars({ account, headers })).filter((calendar) =>
  calendar.components?.includes("VEVENT"),
);
const windowStart = new Date(start);
const windowEnd = new Date(end);
const busy = [];
for (const calendar of calendars) {
  const objects = await fetchCalendarObjects({
    calendar: { url: calendar.url },
    headers,
    expand: true,
    timeRange: { start: windowStart.toISOString(), end: windowEnd.toISOString() },
  });
  for (const object of objects) {
    if (object.data == null || JSON.stringify(object.data) === "{}") continue;
    busy.push(...caldavObjectBusy(object.data, windowStart, windowEnd));
  }
}
const found = calendars.map((c) => ({ url: c.url, displayName: c.displayName }));
process.stdout.write(JSON.stringify({ calendars: found, busy }) + "\n");
