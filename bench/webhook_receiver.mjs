// Benchmark 7's webhook receivers (bench/webhook_receiver.py starts this): every endpoint is
// a path on one HTTP/1.1 server that keeps connections alive, answers 204 after a fixed
// delay and records each delivery with the moment its answer was sent.
//
// It stands in for the customers' servers, which run on other machines. In Node, not
// Python: a receiver's CPU on this machine is the benchmark's, not calsync's, and Node's
// HTTP server costs a fraction of Python's per request (bench/RESULTS.md §7, session 10).
//
//   node bench/webhook_receiver.mjs DELAY_SECONDS   # prints its port, serves until killed
//
// GET /records answers every delivery so far: [[path, event id, answered, occurredAt], ...]
// (answered: Unix time in seconds).
import http from "node:http";

const delayMs = Number(process.argv[2]) * 1000;
const records = [];
// The wall clock, as calsync stamps occurredAt with: a clock stepped under a running
// benchmark (a virtual machine resumed elsewhere) moves both alike.
const now = () => Date.now() / 1000;

const server = http.createServer((request, response) => {
  if (request.method === "GET") {
    const body = JSON.stringify(records);
    response.writeHead(200, {
      "Content-Type": "application/json",
      "Content-Length": Buffer.byteLength(body),
    });
    response.end(body);
    return;
  }
  const chunks = [];
  request.on("data", (chunk) => chunks.push(chunk));
  request.on("end", () => {
    const event = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    setTimeout(() => {
      response.writeHead(204, { "Content-Length": "0" });
      response.end();
      records.push([request.url, event.id, now(), event.occurredAt]);
    }, delayMs);
  });
});
// A sender's pooled connection stays open however long it idles (as the Python server
// did): a receiver closing it would turn the next request into a failed attempt.
server.keepAliveTimeout = 0;
server.requestTimeout = 0;
server.headersTimeout = 0;
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`${server.address().port}\n`);
});
