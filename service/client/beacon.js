/*! Beacon browser client, served at GET /v1/beacon.js; no dependencies, no build step. Usage: docs/embed.md.
 * Reads the stream with fetch (EventSource cannot take any event name nor read a refusal); the tabs of one
 * origin share one stream: a Web Locks leader fans events out over a BroadcastChannel. Why: docs/decisions.md.
 */
(function (root, make) {
  const api = make();
  if (typeof module === "object" && module.exports) module.exports = api;
  if (root) root.Beacon = api;
})(typeof window === "object" ? window : null, function () {
  "use strict";

  /** Compare two ids, decimal strings of a bigint (contract): by length, then by text. */
  const cmp = (a, b) => a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);

  /** The JSON claims of a JWT (RFC 7519; base64url payload), or null when `jwt` is not one. */
  function claims(jwt) {
    try {
      const p = String(jwt).split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const bin = atob(p + "==".slice(0, (4 - (p.length % 4)) % 4));
      const c = JSON.parse(new TextDecoder().decode(Uint8Array.from(bin, (ch) => ch.charCodeAt(0))));
      return c && typeof c === "object" ? c : null;
    } catch (e) {
      return null;
    }
  }

  /** When (ms) to fetch the next token: at 80 % of the life left at `now`, at least 1 s ahead; null without
   *  `exp` or when it looks expired already (clock skew): then only a refusal refreshes it. */
  function refreshAt(exp, now) {
    const life = typeof exp === "number" ? exp * 1000 - now : 0;
    return life > 0 ? now + Math.max(1000, life * 0.8) : null;
  }

  /** Delay (ms) before reconnect attempt `n`: 1 s doubling to 30 s, at least `retry:` and `Retry-After`
   *  (ms), plus up to 50 % jitter. */
  function backoff(n, retry, after, rnd) {
    const d = Math.max(retry || 0, after || 0, Math.min(30000, 1000 * 2 ** n));
    return Math.round(d * (1 + 0.5 * (rnd === undefined ? Math.random() : rnd)));
  }

  /** Dedupe window of the last `size` ids; ids at or below `floor` (evicted, learnt, reset) count as seen.
   *  `last` is the resume position. */
  class Cursor {
    constructor(size) {
      this.size = size || 500;
      this.reset(null);
    }
    reset(id) {
      this.seen = new Set();
      this.order = [];
      this.floor = this.last = id == null ? null : String(id);
    }
    /** Move the position forward to `id` (never back): everything up to it counts as seen. */
    advance(id) {
      if (id == null) return;
      id = String(id);
      if (this.floor == null || cmp(id, this.floor) > 0) this.floor = id;
      if (this.last == null || cmp(id, this.last) > 0) this.last = id;
    }
    /** true the first time a notification id is offered, false for a duplicate. */
    accept(id) {
      id = String(id);
      if (this.seen.has(id) || (this.floor != null && cmp(id, this.floor) <= 0)) return false;
      this.seen.add(id);
      this.order.push(id);
      if (this.last == null || cmp(id, this.last) > 0) this.last = id;
      if (this.order.length > this.size) {
        this.order.sort(cmp);
        const old = this.order.shift();
        this.seen.delete(old);
        if (this.floor == null || cmp(old, this.floor) > 0) this.floor = old;
      }
      return true;
    }
  }

  /** SSE parser (WHATWG HTML): feed() text chunks; onEvent({id, event, data}) per event (id null without an
   *  `id:` line, as control events), onRetry(ms) per `retry:`. */
  class Parser {
    constructor(onEvent, onRetry) {
      this.buf = "";
      this.onEvent = onEvent;
      this.onRetry = onRetry;
      this.clear();
    }
    clear() {
      this.data = [];
      this.event = "";
      this.id = null;
    }
    feed(text) {
      let buf = this.buf + text;
      let start = 0;
      for (let i = 0; i < buf.length; i++) {
        const c = buf[i];
        if (c !== "\n" && c !== "\r") continue;
        if (c === "\r" && i + 1 === buf.length) break; // a CR LF may be split across chunks
        this.line(buf.slice(start, i));
        if (c === "\r" && buf[i + 1] === "\n") i++;
        start = i + 1;
      }
      this.buf = buf.slice(start);
    }
    line(l) {
      if (l === "") {
        if (this.data.length) this.onEvent({ id: this.id, event: this.event || "message", data: this.data.join("\n") });
        return this.clear();
      }
      if (l[0] === ":") return; // a comment: the heartbeat
      const k = l.indexOf(":");
      const field = k < 0 ? l : l.slice(0, k);
      const value = k < 0 ? "" : l.slice(l[k + 1] === " " ? k + 2 : k + 1);
      if (field === "data") this.data.push(value);
      else if (field === "event") this.event = value;
      else if (field === "id" && value.indexOf("\0") < 0) this.id = value;
      else if (field === "retry" && /^\d+$/.test(value)) this.onRetry(+value);
    }
  }

  /** Caches the page's token() and refreshes it at refreshAt(); concurrent callers share one call. */
  class Keeper {
    constructor(fetchToken, now) {
      this.fetchToken = fetchToken;
      this.now = now || Date.now;
      this.cur = this.wait = null;
    }
    /** Resolves to {jwt, claims, due}; `fresh` forces a new token (after a refusal). */
    get(fresh) {
      const cur = this.cur;
      if (!fresh && cur && (cur.due == null || this.now() < cur.due)) return Promise.resolve(cur);
      return (this.wait ||= Promise.resolve()
        .then(this.fetchToken)
        .then((jwt) => {
          const c = claims(jwt) || {};
          return (this.cur = { jwt: String(jwt), claims: c, due: refreshAt(c.exp, this.now()) });
        })
        .finally(() => (this.wait = null)));
    }
  }

  class BeaconError extends Error {
    constructor(status, body, message) {
      const e = (body && body.error) || {};
      super(e.message || message || "HTTP " + status);
      this.name = "BeaconError";
      this.status = status;
      this.code = e.code || (status ? "http_" + status : "network");
    }
  }
  const plain = (e) => e && { status: e.status, code: e.code, message: e.message };
  const revive = (e) => e && new BeaconError(e.status, { error: e });

  const noop = () => {};

  /** Beacon.connect(options) → {inbox, close, status}; options as in docs/embed.md. `env` (fetch, navigator,
   *  BroadcastChannel) defaults to the page's globals; the Node tests pass fakes. */
  function connect(o, env) {
    env = env || globalThis;
    const base = String(o.url || "").replace(/\/+$/, "");
    const keeper = new Keeper(o.token);
    const cursor = new Cursor();
    const idle = o.idleTimeout || 45000; // ms without a byte (heartbeats included): the link is dead
    const nav = env.navigator;
    const share = o.share !== false && !!(nav && nav.locks) && typeof env.BroadcastChannel === "function";
    let stopped = false;
    let leading = false;
    let status = null;
    let unread = null;
    let chan = null;
    let release = noop; // gives the leader lock back
    let waitLock = null; // aborts a queued lock request
    let ctl = null; // aborts the stream's fetch
    let wake = noop; // ends a backoff sleep early
    let refresh = 0; // the token refresh timer

    // A page callback that throws must not break the client: rethrown apart, it reaches the console.
    const emit = (name, ...args) => {
      try {
        if (o[name]) o[name](...args);
      } catch (e) {
        setTimeout(() => {
          throw e;
        });
      }
    };
    const post = (t, v) => leading && chan && chan.postMessage({ t, v });
    const setStatus = (s, detail) => {
      if (s === status && s !== "reconnecting") return;
      status = s;
      emit("onStatus", s, detail);
      post("s", [s, s === "closed" ? plain(detail) : detail]);
    };
    /** One event for this tab; the leader also fans it out to the others. */
    const take = (t, v) => {
      if (t === "n") {
        if (!v || v.id == null || !cursor.accept(v.id)) return;
        emit("onNotification", v);
      } else if (t === "u") {
        unread = v;
        emit("onUnread", v);
      } else if (t === "r") {
        cursor.reset(v.resume_from);
        emit("onReset", v);
      }
      post(t, v);
    };
    const sleep = (ms) =>
      new Promise((res) => {
        const id = setTimeout(res, ms);
        wake = () => (clearTimeout(id), res());
      });

    async function call(method, path, again) {
      const rec = await keeper.get(again);
      const res = await env.fetch(base + path, {
        method,
        headers: { Authorization: "Bearer " + rec.jwt },
        credentials: "omit",
        cache: "no-store",
      });
      if (res.status === 401 && !again) return call(method, path, true); // expired: one fresh token
      const body = await res.json().catch(() => null);
      if (!res.ok) throw new BeaconError(res.status, body);
      return body;
    }

    /** One stream: resolves {status: 200} when an open stream ends, or the refusal {status, error, after}. */
    async function stream(rec, flags) {
      ctl = new AbortController();
      let q = "?token=" + encodeURIComponent(rec.jwt);
      if (cursor.last != null) q += "&last_event_id=" + cursor.last;
      const res = await env.fetch(base + "/v1/stream" + q, {
        headers: { Accept: "text/event-stream" },
        credentials: "omit",
        cache: "no-store",
        signal: ctl.signal,
      });
      if (res.status !== 200) {
        const body = await res.json().catch(() => null);
        return { status: res.status, error: new BeaconError(res.status, body), after: +res.headers.get("Retry-After") * 1000 || 0 };
      }
      const mine = ctl;
      let dog;
      const watch = () => (clearTimeout(dog), (dog = setTimeout(() => mine.abort(), idle)));
      watch();
      setStatus("open");
      if (rec.due != null) {
        // Refresh before expiry: new token first, then switch streams; the new one resumes from the last id.
        refresh = setTimeout(async () => {
          try {
            const cur = keeper.cur;
            const next = cur && cur.jwt !== rec.jwt ? cur : await keeper.get(true);
            if (next.jwt !== rec.jwt && ctl === mine) (flags.now = true), mine.abort();
          } catch (e) {
            // token() failed: keep this stream; beacon.token-expired will bring us back with a retry.
          }
        }, rec.due - Date.now());
      }
      const parser = new Parser(
        (ev) => {
          let d;
          try {
            d = JSON.parse(ev.data);
          } catch (e) {
            return;
          }
          if (ev.event === "beacon.unread") take("u", d.unread);
          else if (ev.event === "beacon.reset") take("r", d);
          else if (ev.event === "beacon.token-expired") flags.now = flags.fresh = true;
          else if (!ev.event.startsWith("beacon.")) take("n", d);
        },
        (ms) => (flags.retry = ms)
      );
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          watch();
          parser.feed(value);
        }
      } catch (e) {
        // aborted (refresh, close, idle) or the connection dropped: both end this stream
      }
      clearTimeout(dog);
      clearTimeout(refresh);
      return { status: 200 };
    }

    /** The leader's loop: connect, read, reconnect. A refusal that a fresh token does not fix ends it. */
    async function lead() {
      leading = true;
      let attempt = 0;
      const flags = { fresh: false, now: false, retry: 0 };
      while (!stopped) {
        let error = null;
        let after = 0;
        try {
          if (cursor.last == null) {
            // No position yet: start after the newest notification the inbox holds ("0" when empty), so a
            // tab that takes over later resumes from a known id even if nothing arrived meanwhile.
            try {
              const page = await call("GET", "/v1/inbox?limit=1");
              cursor.advance(page.notifications.length ? page.notifications[0].id : "0");
            } catch (e) {
              // a token refused even fresh ends here; other failures (network, CORS): connect from "now"
              if (e.status === 401 || e.status === 403) return fail(e);
            }
          }
          const rec = await keeper.get(flags.fresh);
          if (stopped) break;
          const wasFresh = flags.fresh;
          flags.fresh = flags.now = false;
          const r = await stream(rec, flags);
          if (r.status === 200) {
            attempt = 0;
            if (flags.now) continue;
          } else if (r.status === 401 || r.status === 403) {
            if (wasFresh) return fail(r.error);
            flags.fresh = true;
            continue;
          } else if (r.status === 400 && r.error.code === "invalid_last_event_id") {
            cursor.reset(null);
          } else if (r.status !== 429 && r.status < 500) {
            return fail(r.error);
          } else {
            error = r.error;
            after = r.after;
          }
        } catch (e) {
          error = e instanceof BeaconError ? e : new BeaconError(0, null, String((e && e.message) || e));
          // A refusal without CORS headers reads as a network error: refresh a token that looks expired.
          const exp = keeper.cur && keeper.cur.claims.exp;
          if (exp && exp * 1000 <= Date.now()) flags.fresh = true;
        }
        if (stopped) break;
        const delay = backoff(attempt++, flags.retry, after);
        setStatus("reconnecting", { attempt, delay, error: plain(error) });
        await sleep(delay);
      }
    }

    function fail(error) {
      post("x", plain(error));
      close(error);
    }

    function close(error) {
      if (stopped) return;
      leading = false; // a leader that leaves tells no one "closed": the next tab takes over
      setStatus("closed", error);
      stopped = true;
      wake();
      clearTimeout(refresh);
      if (ctl) ctl.abort();
      release();
      if (waitLock) waitLock.abort();
      if (chan) chan.close();
    }

    function onChannel(e) {
      const m = e.data || {};
      if (leading) {
        if (m.t === "hello") post("state", { last: cursor.last, unread, status });
        return; // the leader trusts its own stream only
      }
      if (m.t === "state") {
        cursor.advance(m.v.last);
        if (m.v.unread != null && m.v.unread !== unread) take("u", m.v.unread);
        if (m.v.status) setStatus(m.v.status);
      } else if (m.t === "s") setStatus(m.v[0], m.v[0] === "closed" ? revive(m.v[1]) : m.v[1]);
      else if (m.t === "x") close(revive(m.v));
      else if (m.t !== "hello") take(m.t, m.v);
    }

    (async function start() {
      setStatus("connecting", { attempt: 0 });
      let rec;
      for (let n = 0; !rec; n++) {
        try {
          rec = await keeper.get();
        } catch (e) {
          if (stopped) return;
          const delay = backoff(n);
          setStatus("reconnecting", { attempt: n + 1, delay, error: plain(new BeaconError(0, null, String(e))) });
          await sleep(delay);
        }
        if (stopped) return;
      }
      if (!share) return lead();
      // One leader per Beacon, tenant and recipient: two users in two tabs never share a stream.
      const key = ["beacon", base, rec.claims.tid, rec.claims.sub].join("|");
      chan = new env.BroadcastChannel(key);
      chan.onmessage = onChannel;
      chan.postMessage({ t: "hello" });
      waitLock = new AbortController();
      nav.locks
        .request(key, { signal: waitLock.signal }, () => {
          waitLock = null;
          if (stopped) return;
          return new Promise((res) => {
            release = res;
            lead();
          });
        })
        .catch(noop);
    })();

    return {
      inbox: {
        /** GET /v1/inbox → {notifications: [...], next} (newest first; `next` is the `before` of the next page). */
        list(p) {
          const q = new URLSearchParams();
          for (const [k, v] of Object.entries(p || {})) if (v != null) q.set(k, String(v));
          const s = q.toString();
          return call("GET", "/v1/inbox" + (s ? "?" + s : ""));
        },
        /** GET /v1/inbox/unread-count → {unread: N}. */
        unreadCount: () => call("GET", "/v1/inbox/unread-count"),
        /** POST /v1/inbox/{id}/read → the notification, `read_at` set. */
        markRead: (id) => call("POST", "/v1/inbox/" + encodeURIComponent(id) + "/read"),
        /** POST /v1/inbox/read-all → {updated, unread: 0}. */
        markAllRead: () => call("POST", "/v1/inbox/read-all"),
      },
      /** Stop streaming in this tab; another tab, if any, takes the stream over. */
      close: () => close(),
      get status() {
        return status;
      },
    };
  }

  return { connect, BeaconError, version: "1", _: { cmp, claims, refreshAt, backoff, Cursor, Parser, Keeper } };
});
