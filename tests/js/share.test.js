// Beacon.connect() in Node against an in-process fake of Beacon's HTTP API: leader election, fan-out, hand-over,
// token refresh, refusals. Web Locks is faked (Node has none); BroadcastChannel, fetch's Response and streams
// are Node's own. The real thing runs in Chromium against a real server in tests/test_beacon_client.py.
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const Beacon = require("../../service/client/beacon.js");

const BASE = "http://beacon.test";
const enc = new TextEncoder();
const jwt = (payload) =>
  "eyJhbGciOiJIUzI1NiJ9." + Buffer.from(JSON.stringify(payload)).toString("base64url") + ".c2ln";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(predicate, what, timeout = 5000) {
  const end = Date.now() + timeout;
  while (!predicate()) {
    if (Date.now() > end) throw new Error("timed out waiting for " + what);
    await sleep(5);
  }
}

/** The Web Locks API's exclusive mode: one holder per name, a FIFO queue, `signal` aborts a waiting request. */
class Locks {
  constructor() {
    this.queues = new Map();
  }
  request(name, options, callback) {
    return new Promise((resolve, reject) => {
      if (!this.queues.has(name)) this.queues.set(name, []);
      const queue = this.queues.get(name);
      const entry = { callback, resolve, reject };
      queue.push(entry);
      options.signal?.addEventListener("abort", () => {
        const i = queue.indexOf(entry);
        if (i > 0) queue.splice(i, 1), reject(new Error("AbortError"));
      });
      if (queue.length === 1) this.grant(name);
    });
  }
  async grant(name) {
    const queue = this.queues.get(name);
    const entry = queue[0];
    if (!entry) return;
    try {
      entry.resolve(await entry.callback({ name }));
    } catch (e) {
      entry.reject(e);
    }
    queue.shift();
    this.grant(name);
  }
}

/** Just enough of Beacon: /v1/stream (replay after last_event_id, then live, beacon.unread after opening,
 *  refusals), /v1/inbox. Records every stream request. */
class FakeBeacon {
  constructor() {
    this.rows = [];
    this.streams = new Set();
    this.requests = [];
    this.next = 100;
    this.refuse = null; // (url) => {status, code, headers} to refuse a stream
  }
  publish(text) {
    const n = { id: String(++this.next), event: "demo.message", data: { text }, recipient: "u1", topic: null, created_at: "2026-11-30T00:00:00Z" };
    this.rows.push(n);
    for (const s of this.streams) s.send(frame(n));
    return n;
  }
  control(name, data) {
    for (const s of this.streams) s.send(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
  }
  endAll() {
    for (const s of [...this.streams]) s.end();
  }
  fetch = async (url, init = {}) => {
    const u = new URL(url);
    const token = u.searchParams.get("token") || (init.headers?.Authorization || "").slice(7);
    this.requests.push({ path: u.pathname, token, last: u.searchParams.get("last_event_id") });
    assert.equal(init.credentials, "omit");
    if (u.pathname === "/v1/inbox") {
      const limit = +(u.searchParams.get("limit") || 50);
      return Response.json({ notifications: [...this.rows].reverse().slice(0, limit), next: null });
    }
    assert.equal(u.pathname, "/v1/stream");
    const refusal = this.refuse && this.refuse(u);
    if (refusal) {
      const body = { error: { code: refusal.code, message: refusal.code } };
      return Response.json(body, { status: refusal.status, headers: refusal.headers || {} });
    }
    const last = u.searchParams.get("last_event_id");
    let ctrl;
    const s = {
      send: (text) => ctrl.enqueue(enc.encode(text)),
      end: () => (this.streams.delete(s), ctrl.close()),
    };
    const body = new ReadableStream({ start: (c) => (ctrl = c), cancel: () => this.streams.delete(s) });
    init.signal?.addEventListener("abort", () => {
      this.streams.delete(s);
      try {
        ctrl.error(new Error("AbortError"));
      } catch (e) {}
    });
    s.send("retry: 50\n\n");
    for (const n of this.rows) if (last !== null && BigInt(n.id) > BigInt(last)) s.send(frame(n));
    s.send(`event: beacon.unread\ndata: {"unread": ${this.rows.length}}\n\n`);
    this.streams.add(s);
    return new Response(body, { status: 200, headers: { "content-type": "text/event-stream" } });
  };
}

const frame = (n) => `id: ${n.id}\nevent: ${n.event}\ndata: ${JSON.stringify(n)}\n\n`;

/** A "tab": one Beacon.connect() recording what its callbacks received. */
function tab(server, env, options = {}) {
  const seen = { ids: [], unread: [], resets: [], statuses: [] };
  let calls = 0;
  const client = Beacon.connect(
    {
      url: BASE + "/",
      token: options.token || (async () => jwt({ sub: "u1", tid: "acme", exp: Math.floor(Date.now() / 1000) + 3600, n: ++calls })),
      onNotification: (n) => seen.ids.push(n.id),
      onUnread: (c) => seen.unread.push(c),
      onReset: (r) => seen.resets.push(r),
      onStatus: (s, d) => seen.statuses.push([s, d]),
      share: options.share,
    },
    env
  );
  return { client, seen };
}

function browser(server, withLocks = true) {
  return { fetch: server.fetch, BroadcastChannel, navigator: withLocks ? { locks: new Locks() } : {} };
}

const once = (ids) => new Set(ids).size === ids.length;
const streamsOpened = (server) => server.requests.filter((r) => r.path === "/v1/stream").length;

test("three tabs share one stream; each tab gets every notification once", async () => {
  const server = new FakeBeacon();
  const env = browser(server);
  const tabs = [tab(server, env), tab(server, env), tab(server, env)];
  try {
    await until(() => server.streams.size === 1 && tabs.every((t) => t.client.status === "open"), "open");
    const sent = [];
    for (let i = 0; i < 20; i++) sent.push(server.publish("n" + i).id);
    await until(() => tabs.every((t) => t.seen.ids.length === 20), "delivery");
    for (const t of tabs) assert.deepEqual(t.seen.ids, sent);
    assert.equal(server.streams.size, 1);
    assert.equal(streamsOpened(server), 1);
    await until(() => tabs.every((t) => t.seen.unread.at(-1) === 0), "unread count in every tab");
  } finally {
    tabs.forEach((t) => t.client.close());
  }
});

test("the leader leaves: the next tab resumes from the last id, nothing lost or twice", async () => {
  const server = new FakeBeacon();
  const env = browser(server);
  const tabs = [tab(server, env), tab(server, env), tab(server, env)];
  try {
    await until(() => server.streams.size === 1 && tabs.every((t) => t.client.status === "open"), "open");
    const sent = [server.publish("a").id, server.publish("b").id];
    await until(() => tabs.every((t) => t.seen.ids.length === 2), "first two");
    tabs[0].client.close();
    sent.push(server.publish("while nobody leads").id); // the old stream is gone or going
    await until(() => server.streams.size === 1 && streamsOpened(server) === 2, "a new leader's stream");
    assert.equal(server.requests.filter((r) => r.path === "/v1/stream").at(-1).last, sent[1]);
    sent.push(server.publish("c").id);
    await until(() => tabs.slice(1).every((t) => t.seen.ids.length === 4), "all four");
    for (const t of tabs.slice(1)) assert.deepEqual(t.seen.ids, sent);
    assert.deepEqual(tabs[0].seen.statuses.at(-1), ["closed", undefined]);
    assert.ok(tabs.slice(1).every((t) => t.client.status === "open"));
  } finally {
    tabs.forEach((t) => t.client.close());
  }
});

test("a tab that joins later learns the position and the unread count from the leader", async () => {
  const server = new FakeBeacon();
  const env = browser(server);
  const first = tab(server, env);
  let late;
  try {
    await until(() => first.client.status === "open", "open");
    server.publish("x");
    await until(() => first.seen.ids.length === 1, "x");
    late = tab(server, env);
    await until(() => late.seen.unread.length === 1, "state from the leader");
    assert.equal(late.client.status, "open");
    server.publish("y");
    await until(() => late.seen.ids.length === 1 && first.seen.ids.length === 2, "y");
    first.client.close();
    await until(() => streamsOpened(server) === 2 && server.streams.size === 1, "hand-over");
    server.publish("z");
    await until(() => late.seen.ids.length === 2, "z");
    assert.deepEqual(late.seen.ids, ["102", "103"]);
  } finally {
    first.client.close();
    late?.client.close();
  }
});

// Two tabs in `env` (made for `server`) hold a stream each, and each gets a notification once.
async function eachTabHoldsItsOwnStream(server, env) {
  const tabs = [tab(server, env), tab(server, env)];
  try {
    await until(() => server.streams.size === 2, "two streams");
    server.publish("x");
    await until(() => tabs.every((t) => t.seen.ids.length === 1), "x in both");
  } finally {
    tabs.forEach((t) => t.client.close());
  }
}

test("without Web Locks each tab holds its own stream", async () => {
  const server = new FakeBeacon();
  await eachTabHoldsItsOwnStream(server, browser(server, false));
});

test("share: false connects on its own even where locks exist", async () => {
  const server = new FakeBeacon();
  const env = browser(server);
  const tabs = [tab(server, env, { share: false }), tab(server, env, { share: false })];
  try {
    await until(() => server.streams.size === 2, "two streams");
  } finally {
    tabs.forEach((t) => t.client.close());
  }
});

test("the token is refreshed before exp and the stream resumes from the last id", async () => {
  const server = new FakeBeacon();
  const env = browser(server);
  let minted = 0;
  const t = tab(server, env, {
    token: async () => jwt({ sub: "u1", tid: "acme", exp: Date.now() / 1000 + 1.5, n: ++minted }),
  });
  try {
    await until(() => t.client.status === "open", "open");
    const sent = [];
    const end = Date.now() + 3500;
    while (Date.now() < end) {
      sent.push(server.publish("tick").id);
      await sleep(25);
    }
    await until(() => t.seen.ids.length === sent.length, "every tick");
    assert.deepEqual(t.seen.ids, sent);
    const streams = server.requests.filter((r) => r.path === "/v1/stream");
    assert.ok(streams.length >= 3, `${streams.length} streams`);
    assert.equal(new Set(streams.map((r) => r.token)).size, streams.length); // each with a new token
    assert.ok(streams.slice(1).every((r) => r.last !== null));
    assert.ok(!t.seen.statuses.some(([s]) => s === "reconnecting"), "a refresh is not an outage");
  } finally {
    t.client.close();
  }
});

test("beacon.token-expired: a fresh token at once, resuming from the last id", async () => {
  const server = new FakeBeacon();
  const env = browser(server);
  const t = tab(server, env);
  try {
    await until(() => t.client.status === "open", "open");
    const a = server.publish("a").id;
    await until(() => t.seen.ids.length === 1, "a");
    server.control("beacon.token-expired", { exp: 1 });
    server.endAll();
    await until(() => streamsOpened(server) === 2, "reconnect");
    const second = server.requests.filter((r) => r.path === "/v1/stream")[1];
    assert.equal(second.last, a);
    assert.notEqual(second.token, server.requests.find((r) => r.path === "/v1/stream").token);
  } finally {
    t.client.close();
  }
});

test("a 401 that a fresh token does not fix ends in closed, in every tab, without a loop", async () => {
  const server = new FakeBeacon();
  server.refuse = () => ({ status: 401, code: "invalid_token" });
  const env = browser(server);
  const tabs = [tab(server, env), tab(server, env)];
  try {
    await until(() => tabs.every((t) => t.client.status === "closed"), "closed");
    const [status, error] = tabs[0].seen.statuses.at(-1);
    assert.equal(status, "closed");
    assert.equal(error.name, "BeaconError");
    assert.equal(error.status, 401);
    assert.equal(error.code, "invalid_token");
    assert.equal(tabs[1].seen.statuses.at(-1)[1].code, "invalid_token");
    // Each tab tries its first token and one fresh one at most (the follower may take the lock before the
    // leader's "closed" reaches it), then nothing more.
    const tries = streamsOpened(server);
    assert.ok(tries === 2 || tries === 4, String(tries));
    await sleep(300);
    assert.equal(streamsOpened(server), tries);
  } finally {
    tabs.forEach((t) => t.client.close());
  }
});

test("503 with Retry-After: waits at least that long, then resumes", async () => {
  const server = new FakeBeacon();
  let refusals = 1;
  server.refuse = () => refusals-- > 0 && { status: 503, code: "draining", headers: { "Retry-After": "1" } };
  const env = browser(server);
  const t = tab(server, env);
  try {
    await until(() => t.client.status === "open", "open", 5000);
    const reconnecting = t.seen.statuses.find(([s]) => s === "reconnecting");
    assert.ok(reconnecting[1].delay >= 1000, JSON.stringify(reconnecting));
    assert.equal(reconnecting[1].error.code, "draining");
  } finally {
    t.client.close();
  }
});

test("beacon.reset reaches every tab and moves the position to resume_from", async () => {
  const server = new FakeBeacon();
  const env = browser(server);
  const tabs = [tab(server, env), tab(server, env)];
  try {
    await until(() => tabs.every((t) => t.client.status === "open"), "open");
    server.publish("a");
    await until(() => tabs.every((t) => t.seen.ids.length === 1), "a");
    server.control("beacon.reset", { reason: "unknown_id", resume_from: "5" });
    await until(() => tabs.every((t) => t.seen.resets.length === 1), "reset");
    server.rows = [];
    server.next = 5;
    server.publish("after the reset"); // id 6: below what the tabs saw, new all the same
    await until(() => tabs.every((t) => t.seen.ids.length === 2), "after reset");
    for (const t of tabs) assert.deepEqual(t.seen.ids, ["101", "6"]);
  } finally {
    tabs.forEach((t) => t.client.close());
  }
});

test("inbox calls: Bearer token, no cookies, contract shapes, errors as BeaconError", async () => {
  const server = new FakeBeacon();
  const env = browser(server);
  server.publish("a");
  const t = tab(server, env, { share: false });
  try {
    const page = await t.client.inbox.list({ unread: true, limit: 1, before: undefined });
    assert.equal(page.notifications[0].data.text, "a");
    const req = server.requests.filter((r) => r.path === "/v1/inbox").at(-1);
    assert.ok(req.token.startsWith("eyJ"));
    const realFetch = env.fetch;
    env.fetch = async () => Response.json({ error: { code: "not_found", message: "no such notification" } }, { status: 404 });
    await assert.rejects(t.client.inbox.markRead("9"), (e) => e.name === "BeaconError" && e.status === 404 && e.code === "not_found");
    env.fetch = realFetch;
  } finally {
    t.client.close();
  }
});

test("without BroadcastChannel each tab holds its own stream, even where locks exist", async () => {
  const server = new FakeBeacon();
  await eachTabHoldsItsOwnStream(server, { fetch: server.fetch, navigator: { locks: new Locks() } });
});

test("401 token_expired on a reconnect: one fresh token, resuming from the last id, nothing lost or twice", async () => {
  const server = new FakeBeacon();
  const env = browser(server);
  const t = tab(server, env);
  try {
    await until(() => t.client.status === "open", "open");
    const sent = [server.publish("a").id];
    await until(() => t.seen.ids.length === 1, "a");
    const first = server.requests.find((r) => r.path === "/v1/stream").token;
    server.refuse = (u) => u.searchParams.get("token") === first && { status: 401, code: "token_expired" };
    server.endAll(); // the connection drops; the reconnect with the old token is refused
    sent.push(server.publish("while reconnecting").id);
    await until(() => server.streams.size === 1 && t.client.status === "open", "open again");
    const streams = server.requests.filter((r) => r.path === "/v1/stream");
    assert.equal(streams.at(-2).token, first); // refused
    assert.notEqual(streams.at(-1).token, first); // a fresh token
    assert.equal(streams.at(-1).last, sent[0]);
    sent.push(server.publish("b").id);
    await until(() => t.seen.ids.length === 3, "all three");
    assert.deepEqual(t.seen.ids, sent);
    assert.ok(!t.seen.statuses.some(([s]) => s === "closed"));
  } finally {
    t.client.close();
  }
});

test("inbox calls: a 401 token_expired is retried once with a fresh token; a second 401 is the error", async () => {
  const server = new FakeBeacon();
  const env = browser(server);
  server.publish("a");
  const t = tab(server, env, { share: false });
  try {
    await until(() => t.client.status === "open", "open");
    const stale = server.requests.find((r) => r.path === "/v1/stream").token;
    const realFetch = env.fetch;
    const used = [];
    let refuseAll = false;
    env.fetch = async (url, init) => {
      const token = init.headers.Authorization.slice(7);
      used.push(token);
      if (refuseAll || token === stale)
        return Response.json({ error: { code: "token_expired", message: "expired" } }, { status: 401 });
      return realFetch(url, init);
    };
    const page = await t.client.inbox.list({ limit: 1 });
    assert.equal(page.notifications[0].data.text, "a");
    assert.equal(used.length, 2);
    assert.equal(used[0], stale);
    assert.notEqual(used[1], stale);
    refuseAll = true;
    await assert.rejects(t.client.inbox.list(), (e) => e.name === "BeaconError" && e.status === 401 && e.code === "token_expired");
    assert.equal(used.length, 4); // one retry, not a loop
    env.fetch = realFetch;
  } finally {
    t.client.close();
  }
});

test("a 403 that a fresh token does not fix ends in closed with the error", async () => {
  const server = new FakeBeacon();
  server.refuse = () => ({ status: 403, code: "origin_not_allowed" });
  const env = browser(server);
  const t = tab(server, env, { share: false });
  try {
    await until(() => t.client.status === "closed", "closed");
    const [, error] = t.seen.statuses.at(-1);
    assert.equal(error.status, 403);
    assert.equal(error.code, "origin_not_allowed");
    assert.equal(streamsOpened(server), 2); // the first token and one fresh one
    await sleep(300);
    assert.equal(streamsOpened(server), 2);
  } finally {
    t.client.close();
  }
});
