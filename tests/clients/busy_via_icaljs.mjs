// What Cal.com's ICS-feed app does: a plain GET of the feed URL (no auth, no cache headers),
// ICAL.parse, every VEVENT blocks (TRANSP is not read), recurring ones expanded by ical.js.
//
//   node busy_via_icaljs.mjs FEED_URL START END
//
// Prints {"name": X-WR-CALNAME, "busy": [{start, end}]} (UTC ISO strings) as JSON on stdout.
import { feedBusy } from "./ical_busy.mjs";

const [feedUrl, start, end] = process.argv.slice(2);
if (!end) {
  console.error("usage: node busy_via_icaljs.mjs FEED_URL START END");
  process.exit(2);
}
const answer = await fetch(feedUrl);
if (!answer.ok) {
  console.error(`GET ${feedUrl}: ${answer.status}`);
  process.exit(1);
}
const result = feedBusy(await answer.text(), new Date(start), new Date(end));
process.stdout.write(JSON.stringify(result) + "\n");
