// Unit tests of beacon.js's pure parts: JWT exp parsing, refresh time, backoff, dedupe window, SSE parser,
// token keeper. Run with `node --test tests/js/` (tests/test_beacon_js.py runs them under pytest).
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const { _: B } = require("../../service/client/beacon.js");

const jwt = (payload) =>
  "eyJhbGciOiJIUzI1NiJ9." + Buffer.from(JSON.stringify(payload)).toString("base64url") + ".c2ln";

test("claims: reads a base64url payload, any padding, UTF-8", () => {
  for (const sub of ["u", "us", "use", "user-42", "ü/é?>>~~", "ð\u{1F600}"]) {
    const c = B.claims(jwt({ sub, exp: 1700000000, tid: "acme" }));
    assert.deepEqual(c, { sub, exp: 1700000000, tid: "acme" });
  }
});

test("claims: null for anything that is not a JWT with an object payload", () => {
  const part = (text) => "a." + Buffer.from(text).toString("base64url") + ".c";
  for (const bad of [undefined, null, "", "abc", "a.b.c", "a..c", part("7"), part("null"), part("{"), 42]) {
    assert.equal(B.claims(bad), null, String(bad));
  }
});

test("refreshAt: 80 % of the life left, at least 1 s ahead", () => {
  const now = 1_000_000;
  assert.equal(B.refreshAt(now / 1000 + 100, now), now + 80_000);
  assert.equal(B.refreshAt(now / 1000 + 5, now), now + 4000);
  assert.equal(B.refreshAt(now / 1000 + 1, now), now + 1000); // 800 ms would be too eager
});

test("refreshAt: no timer without exp or for a token that already looks expired", () => {
  assert.equal(B.refreshAt(undefined, 5000), null);
  assert.equal(B.refreshAt("soon", 5000), null);
  assert.equal(B.refreshAt(5, 5000), null);
  assert.equal(B.refreshAt(4, 5000), null);
});

test("backoff: doubles from 1 s, capped at 30 s, jitter adds at most half", () => {
  assert.equal(B.backoff(0, 0, 0, 0), 1000);
  assert.equal(B.backoff(1, 0, 0, 0), 2000);
  assert.equal(B.backoff(3, 0, 0, 0), 8000);
  assert.equal(B.backoff(10, 0, 0, 0), 30000);
  assert.equal(B.backoff(50, 0, 0, 0), 30000);
  assert.equal(B.backoff(0, 0, 0, 1), 1500);
  assert.equal(B.backoff(10, 0, 0, 1), 45000);
  for (let i = 0; i < 200; i++) {
    const d = B.backoff(2, 0, 0);
    assert.ok(d >= 4000 && d <= 6000, String(d));
  }
});

test("backoff: never below the server's retry: or Retry-After", () => {
  assert.equal(B.backoff(0, 3000, 0, 0), 3000);
  assert.equal(B.backoff(0, 3000, 0, 1), 4500);
  assert.equal(B.backoff(0, 0, 7000, 0), 7000);
  assert.equal(B.backoff(1, 1500, 60000, 0), 60000); // Retry-After beats the cap
  assert.equal(B.backoff(5, 2000, 1000, 0), 30000);
});

test("cmp: ids are compared as numbers of any size", () => {
  assert.ok(B.cmp("9", "10") < 0);
  assert.ok(B.cmp("10", "9") > 0);
  assert.equal(B.cmp("123", "123"), 0);
  assert.ok(B.cmp("9223372036854775806", "9223372036854775807") < 0);
  const ids = ["100", "20", "3", "1000", "21"].sort(B.cmp);
  assert.deepEqual(ids, ["3", "20", "21", "100", "1000"]);
});

test("Cursor: every id accepted once, last is the highest", () => {
  const c = new B.Cursor();
  assert.equal(c.last, null);
  assert.equal(c.accept("5"), true);
  assert.equal(c.accept("5"), false);
  assert.equal(c.accept("7"), true);
  assert.equal(c.accept(6), true); // out of order within the window is still new
  assert.equal(c.accept("6"), false);
  assert.equal(c.last, "7");
});

test("Cursor: evicted ids and anything below them count as seen", () => {
  const c = new B.Cursor(3);
  for (const id of ["10", "11", "12", "13"]) assert.equal(c.accept(id), true);
  assert.equal(c.floor, "10");
  assert.equal(c.accept("10"), false);
  assert.equal(c.accept("9"), false);
  assert.equal(c.accept("14"), true);
  assert.equal(c.accept("12"), false);
  assert.equal(c.order.length, 3);
  assert.equal(c.seen.size, 3);
});

test("Cursor: advance only moves forward and marks everything up to it seen", () => {
  const c = new B.Cursor();
  c.advance("40");
  assert.equal(c.last, "40");
  assert.equal(c.accept("40"), false);
  assert.equal(c.accept("39"), false);
  c.advance("12");
  assert.equal(c.last, "40");
  c.advance(null);
  assert.equal(c.last, "40");
  assert.equal(c.accept("41"), true);
});

test("Cursor: a reset forgets everything and resumes from resume_from", () => {
  const c = new B.Cursor();
  c.accept("900");
  c.reset("50"); // beacon.reset unknown_id: the server's newest is below what we saw
  assert.equal(c.last, "50");
  assert.equal(c.accept("50"), false);
  assert.equal(c.accept("51"), true);
  c.reset(null);
  assert.equal(c.last, null);
  assert.equal(c.accept("1"), true);
});

function parse(chunks) {
  const events = [];
  const retries = [];
  const p = new B.Parser((e) => events.push(e), (ms) => retries.push(ms));
  for (const chunk of chunks) p.feed(chunk);
  return { events, retries };
}

const STREAM =
  "retry: 2500\n\n: ping\n\nid: 41\nevent: invoice.paid\ndata: {\"id\":\"41\"}\n\n" +
  "data: line one\ndata:line two\n\nevent: beacon.unread\ndata: {\"unread\":3}\n\n" +
  "id: 42\r\ndata: {\"id\":\"42\"}\r\n\r\nid: 43\rdata: x\r\rdata: incomplete";

const EXPECTED = [
  { id: "41", event: "invoice.paid", data: '{"id":"41"}' },
  { id: null, event: "message", data: "line one\nline two" },
  { id: null, event: "beacon.unread", data: '{"unread":3}' },
  { id: "42", event: "message", data: '{"id":"42"}' },
  { id: "43", event: "message", data: "x" },
];

test("Parser: events, names, ids, multi-line data, comments, retry, all three line endings", () => {
  const { events, retries } = parse([STREAM]);
  assert.deepEqual(events, EXPECTED);
  assert.deepEqual(retries, [2500]);
});

test("Parser: the same events however the bytes are split into chunks", () => {
  for (let size = 1; size <= 7; size++) {
    const chunks = [];
    for (let i = 0; i < STREAM.length; i += size) chunks.push(STREAM.slice(i, i + size));
    assert.deepEqual(parse(chunks).events, EXPECTED, `chunks of ${size}`);
  }
  for (let cut = 0; cut <= STREAM.length; cut++) {
    assert.deepEqual(parse([STREAM.slice(0, cut), STREAM.slice(cut)]).events, EXPECTED, `cut at ${cut}`);
  }
});

test("Parser: ignores unknown fields, bad retry values and ids with NUL", () => {
  const { events, retries } = parse(["foo: bar\nretry: soon\nid: a\0b\ndata\n\nretry: 10\n\n"]);
  assert.deepEqual(events, [{ id: null, event: "message", data: "" }]);
  assert.deepEqual(retries, [10]);
});

test("Keeper: caches the token until 80 % of its life, then asks again", async () => {
  let now = 1_000_000;
  let calls = 0;
  const k = new B.Keeper(async () => jwt({ sub: "u", exp: now / 1000 + 10, n: ++calls }), () => now);
  const a = await k.get();
  assert.equal(a.claims.n, 1);
  assert.equal(a.due, now + 8000);
  now += 7999;
  assert.equal((await k.get()).claims.n, 1);
  now += 1;
  assert.equal((await k.get()).claims.n, 2);
  assert.equal((await k.get(true)).claims.n, 3); // a refusal forces a new one
});

test("Keeper: concurrent callers share one token() call; a failure is not cached", async () => {
  let calls = 0;
  let fail = true;
  const k = new B.Keeper(async () => {
    calls++;
    await new Promise((r) => setTimeout(r, 5));
    if (fail) throw new Error("backend down");
    return jwt({ sub: "u" });
  });
  const results = await Promise.allSettled([k.get(), k.get(), k.get(true)]);
  assert.equal(calls, 1);
  assert.ok(results.every((r) => r.status === "rejected"));
  fail = false;
  const [x, y] = await Promise.all([k.get(), k.get()]);
  assert.equal(calls, 2);
  assert.equal(x, y);
  assert.equal(x.due, null); // no exp: no timer, only a refusal refreshes
});
