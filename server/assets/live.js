// duplex's classroom page: follows one room over the transport the student picks and shows, per
// transport, every request/event/frame, its size and timing, and the delay of each message.
//
// Everything from the network or the user is rendered with textContent, never innerHTML: a body
// like <img src=x onerror=alert(1)> must show up as those characters. The wire API is the one in
// the design ("The wire API"); this file only reads it. The page also talks to three helper
// endpoints of the live module: /live/clock (to align clocks), /live/presence (so the dashboard
// can count clients per transport) and /live/flash/report (flash delays). Those are not counted
// as transport traffic.
'use strict';

const TRANSPORTS = ['short_poll', 'long_poll', 'sse', 'websocket'];
const LABEL = { short_poll: 'short poll', long_poll: 'long poll', sse: 'SSE', websocket: 'WebSocket' };
const HELD = new Set(['long_poll', 'sse']); // transports that keep an HTTP/1.1 connection busy
const MAX_HELD = 4; // of the browser's six per host: leaves two for sends and page loads
const FALLBACK_INTERVAL_MS = 2000;
const LONG_POLL_TIMEOUT_MS = 25000;
// The three broadcast modes the seeds teach (io.emit, socket.broadcast.emit, io.to(id).emit):
// the wire API's default, `"echo":false` and `"to":"<client>"`. A delivered message does not
// say how it was addressed, so the mode also travels as the event name and every page shows it.
const MODES = {
  chat: { label: 'to everyone', wire: () => ({}) },
  others: { label: 'to everyone but the sender', wire: () => ({ echo: false }) },
  direct: { label: 'to one student', wire: (to) => ({ to }) },
};
const SSE_EVENTS = ['chat', 'others', 'direct', 'flash', 'message', 'gap', 'reset'];
const MAX_LOG_ROWS = 300;
const MAX_MESSAGES = 200;
const MAX_DELAYS = 500;

const $ = (id) => document.getElementById(id);
const utf8 = (s) => new TextEncoder().encode(s).length;
const localNowMs = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- state -------------------------------------------------------------------------------

const tab = { id: Math.random().toString(36).slice(2, 10), born: Date.now() + Math.random() };
const clock = { offsetMs: 0, rttMs: null }; // server time = local time + offsetMs
const serverNowUs = () => (localNowMs() + clock.offsetMs) * 1000;

const stats = Object.fromEntries(TRANSPORTS.map((t) => [t, {
  requests: 0, empty: 0, received: 0, sent: 0, down: 0, up: 0, delays: [], lastDelay: null,
  missed: 0, duplicates: 0,
}]));

let session = null; // { name, room, transport, interval } once joined
const feed = { room: null, lastSeq: 0, epoch: null, joinedUs: 0 }; // position in the room's log
// The cursor sent back: `<epoch>-<seq>` once the server said which epoch (a restarted server then
// answers a reset instead of resuming at a seq that now means another message).
const cursor = () => (feed.epoch ? `${feed.epoch}-${feed.lastSeq}` : `${feed.lastSeq}`);
let mode = null; // { key, transport, fallback, paused } actually running
let receiver = null; // { stop(), send?(body) } of the running mode
const flashesSeen = new Set();

// ---- rendering ---------------------------------------------------------------------------

function timeOfDay() {
  const d = new Date();
  return d.toTimeString().slice(0, 8) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}

function formatBytes(n) {
  if (n < 10000) return `${n} B`;
  if (n < 10_000_000) return `${(n / 1000).toFixed(1)} kB`;
  return `${(n / 1e6).toFixed(1)} MB`;
}

function formatMs(ms) {
  if (ms == null) return '–';
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

/** One row of the traffic log: what happened, on which transport, its size and how long it took. */
function log(transport, what, { down = 0, up = 0, tookMs = null, note = '', kind = '' } = {}) {
  const tr = document.createElement('tr');
  tr.className = kind;
  const bytes = [down ? `↓${down}` : '', up ? `↑${up}` : ''].filter(Boolean).join(' ');
  tr.append(cell(timeOfDay()), cell(LABEL[transport] || transport), cell(what), cell(bytes, 'num'),
    cell(tookMs == null ? '' : formatMs(tookMs), 'num'), cell(note));
  const body = $('log').tBodies[0];
  body.prepend(tr);
  while (body.rows.length > MAX_LOG_ROWS) body.deleteRow(-1);
}

function count(transport, field, n = 1) {
  stats[transport][field] += n;
  scheduleCounters();
}

let countersPending = false;
function scheduleCounters() {
  if (countersPending) return;
  countersPending = true;
  requestAnimationFrame(() => { countersPending = false; renderCounters(); });
}

function median(xs) {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
}

function renderCounters() {
  const body = $('counters').tBodies[0];
  body.replaceChildren();
  for (const t of TRANSPORTS) {
    const s = stats[t];
    const tr = document.createElement('tr');
    tr.dataset.transport = t;
    if (mode && mode.transport === t && !mode.paused) tr.className = 'current';
    let received = String(s.received);
    if (s.missed) received += ` (${s.missed} lost)`;
    if (s.duplicates) received += ` (+${s.duplicates} dup)`;
    tr.append(cell(LABEL[t]), cell(String(s.requests), 'num requests'), cell(String(s.empty), 'num empty'),
      cell(received, 'num received'), cell(String(s.sent), 'num sent'), cell(formatBytes(s.down), 'num'),
      cell(formatBytes(s.up), 'num'), cell(formatMs(median(s.delays)), 'num'), cell(formatMs(s.lastDelay), 'num'));
    body.append(tr);
  }
}

function setStatus(state, text) {
  const out = $('status');
  out.dataset.state = state;
  out.textContent = text;
}

function renderMessage(msg, via, delayMs) {
  const li = document.createElement('li');
  li.dataset.seq = String(msg.seq);
  li.className = msg.event === 'flash' ? 'flash-msg' : '';
  const from = document.createElement('span');
  from.className = 'from';
  from.textContent = msg.from;
  const body = document.createElement('span');
  body.className = 'body';
  body.textContent = msg.event === 'flash' ? flashText(msg) : msg.body;
  const meta = document.createElement('small');
  meta.className = 'meta';
  const how = MODES[msg.event] ? ` · ${MODES[msg.event].label}` : '';
  meta.textContent = `#${msg.seq} · ${LABEL[via]}${how} · ` + (delayMs == null ? 'earlier' : `+${formatMs(delayMs)}`);
  li.append(from, body, meta);
  const list = $('messages');
  list.append(li);
  while (list.children.length > MAX_MESSAGES) list.firstElementChild.remove();
  li.scrollIntoView({ block: 'nearest' });
}

// ---- delivery (shared by all transports) -------------------------------------------------

/** A message arrived over `via`; `atMs` is the local time its bytes arrived. */
function accept(msg, via) {
  const s = stats[via];
  if (msg.seq <= feed.lastSeq) {
    // EventSource reconnects and transport switches can replay; the seq makes that visible.
    s.duplicates++;
    log(via, `duplicate #${msg.seq} dropped`, { kind: 'warn' });
    scheduleCounters();
    return;
  }
  feed.lastSeq = msg.seq;
  s.received++;
  // Messages from before this page joined the room are history, not a delivery we can time.
  let delayMs = null;
  if (msg.ts_us >= feed.joinedUs) {
    delayMs = Math.max(0, (serverNowUs() - msg.ts_us) / 1000);
    s.lastDelay = delayMs;
    s.delays.push(delayMs);
    if (s.delays.length > MAX_DELAYS) s.delays.shift();
  }
  scheduleCounters();
  renderMessage(msg, via, delayMs);
  if (msg.event === 'flash' && delayMs != null) flash(msg, via);
  return delayMs;
}

function acceptGap(via, missed) {
  count(via, 'missed', missed);
  log(via, `gap: ${missed} message(s) lost`, { kind: 'warn', note: 'older than the history the server keeps' });
}

function acceptReset(via, head) {
  log(via, `reset to #${head}`, { kind: 'warn', note: 'our position was ahead of the log: the server restarted' });
  feed.lastSeq = head;
}

/** Handle a short/long poll answer body; returns a note for the log. */
function acceptBatch(via, batch) {
  if (batch.missed) acceptGap(via, batch.missed);
  const delays = batch.messages.map((m) => accept(m, via)).filter((d) => d != null);
  if (batch.reset) acceptReset(via, batch.next);
  else feed.lastSeq = Math.max(feed.lastSeq, batch.next);
  if (batch.epoch) feed.epoch = batch.epoch;
  const n = batch.messages.length;
  return `${n} message${n === 1 ? '' : 's'}` + (delays.length ? `, delay ${delays.map(formatMs).join(', ')}` : '');
}

// ---- HTTP accounting ---------------------------------------------------------------------

/** Bytes of the request this page can see: request line, the headers it sets, the body. */
function requestBytes(method, url, body) {
  let n = utf8(`${method} ${url} HTTP/1.1\r\nHost: ${location.host}\r\n\r\n`);
  if (body != null) n += utf8(`Content-Type: application/json\r\nContent-Length: ${utf8(body)}\r\n`) + utf8(body);
  return n;
}

/** Bytes of the response this page can see: status line, headers, body (no chunk framing). */
function responseBytes(res, text) {
  let n = utf8(`HTTP/1.1 ${res.status} ${res.statusText}\r\n\r\n`);
  for (const [k, v] of res.headers) n += utf8(`${k}: ${v}\r\n`);
  return n + utf8(text);
}

const roomPath = (room) => `/api/rooms/${encodeURIComponent(room)}`;
const clientParam = () => `client=${encodeURIComponent(session.name)}`;

/** Publish over HTTP (every transport but WebSocket, which sends a frame on its socket). */
async function publishHttp(via, body, addressing) {
  const url = `${roomPath(feed.room)}/messages`;
  const json = JSON.stringify({ from: session.name, body, ...addressing });
  const t0 = performance.now();
  count(via, 'requests');
  count(via, 'up', requestBytes('POST', url, json));
  try {
    const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: json });
    const text = await res.text();
    count(via, 'down', responseBytes(res, text));
    if (res.status === 201) {
      count(via, 'sent');
      log(via, `POST → ${res.status}`, { down: responseBytes(res, text), up: requestBytes('POST', url, json), tookMs: performance.now() - t0, note: `seq ${JSON.parse(text).seq}` });
    } else {
      log(via, `POST → ${res.status}`, { kind: 'error', tookMs: performance.now() - t0, note: text.slice(0, 200) });
    }
  } catch (e) {
    log(via, 'POST failed', { kind: 'error', note: String(e) });
  }
}

/**
 * One GET of a poll (`what`: 'poll' or 'longpoll'), counted and logged; a batch goes to
 * acceptBatch. Returns the status, or null when the receiver stopped while it was out (nothing
 * is counted then); throws on a network error.
 */
async function pollOnce(via, what, url, signal, emptyNote) {
  const t0 = performance.now();
  count(via, 'requests');
  const up = requestBytes('GET', url);
  count(via, 'up', up);
  const res = await fetch(url, { signal, cache: 'no-store' });
  const text = await res.text();
  if (signal.aborted) return null; // the receiver's stop() aborts its signal
  const down = responseBytes(res, text);
  count(via, 'down', down);
  const tookMs = performance.now() - t0;
  if (res.status === 204) {
    count(via, 'empty');
    log(via, `GET ${what} → 204`, { down, up, tookMs, note: emptyNote, kind: 'empty' });
  } else if (res.status === 200) {
    log(via, `GET ${what} → 200`, { down, up, tookMs, note: acceptBatch(via, JSON.parse(text)) });
  } else {
    log(via, `GET ${what} → ${res.status}`, { down, up, tookMs, kind: 'error', note: text.slice(0, 200) });
  }
  return res.status;
}

// ---- the four receivers ------------------------------------------------------------------
// Each starts following feed.room from feed.lastSeq and returns { stop(), send?(body) }.

function startShortPoll(via, intervalMs) {
  let stopped = false;
  let inFlight = false;
  let timer = null;
  const controller = new AbortController();
  // A fixed schedule with a random phase, like the loadgen's pollers: ticks are not pushed back
  // by slow answers, and a tick that finds the previous poll still running is skipped.
  const start = performance.now() + Math.random() * Math.min(intervalMs, 500);
  let tick = 0;
  function schedule() {
    if (stopped) return;
    tick++;
    timer = setTimeout(poll, Math.max(0, start + tick * intervalMs - performance.now()));
  }
  async function poll() {
    schedule();
    if (inFlight) { log(via, 'tick skipped', { note: 'previous poll still running' }); return; }
    inFlight = true;
    const url = `${roomPath(feed.room)}/poll?since=${cursor()}&${clientParam()}`;
    try {
      const status = await pollOnce(via, 'poll', url, controller.signal, 'nothing new');
      if (status == null) return;
      setStatus(mode.fallback ? 'fallback' : 'live', mode.fallback ? 'short poll (fallback)' : `short poll every ${intervalMs / 1000} s`);
    } catch (e) {
      if (!stopped) { log(via, 'GET poll failed', { kind: 'error', note: String(e) }); setStatus('error', 'poll failed'); }
    } finally {
      inFlight = false;
    }
  }
  schedule();
  return { stop() { stopped = true; clearTimeout(timer); controller.abort(); } };
}

function startLongPoll(via) {
  let stopped = false;
  const controller = new AbortController();
  (async () => {
    while (!stopped) {
      const url = `${roomPath(feed.room)}/longpoll?since=${cursor()}&${clientParam()}&timeout_ms=${LONG_POLL_TIMEOUT_MS}`;
      setStatus('live', 'long poll: request held open');
      try {
        const status = await pollOnce(via, 'longpoll', url, controller.signal, 'timed out with nothing new');
        if (status == null) return;
        if (status !== 200 && status !== 204) await sleep(1000);
      } catch (e) {
        if (stopped) return;
        log(via, 'GET longpoll failed', { kind: 'error', note: `${e}; retrying in 1 s` });
        setStatus('error', 'long poll failed; retrying');
        await sleep(1000);
      }
    }
  })();
  return { stop() { stopped = true; controller.abort(); } };
}

function startSse(via) {
  let retry = null;
  let es = null;
  function open() {
    // Built at each open: after a refusal we open a new EventSource (no Last-Event-ID), which
    // must resume from what this page has, not from where the transport started.
    const url = `${roomPath(feed.room)}/sse?since=${cursor()}&${clientParam()}`;
    const t0 = performance.now();
    es = new EventSource(url);
    count(via, 'requests');
    count(via, 'up', requestBytes('GET', url));
    setStatus('connecting', 'SSE: connecting');
    es.onopen = () => {
      log(via, 'stream open (200, text/event-stream)', { tookMs: performance.now() - t0, note: 'one response that never ends' });
      setStatus('live', 'SSE: stream open');
    };
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) {
        // A refused stream (4xx/5xx): EventSource gives up, so we retry ourselves.
        log(via, 'stream refused', { kind: 'error', note: 'retrying in 2 s' });
        setStatus('error', 'SSE refused; retrying');
        retry = setTimeout(open, 2000);
      } else {
        log(via, 'stream dropped', { kind: 'warn', note: 'EventSource reconnects by itself, sending Last-Event-ID' });
        setStatus('connecting', 'SSE: reconnecting');
        count(via, 'requests');
      }
    };
    const onEvent = (e) => {
      // What was on the wire for this event (the id line only when the server sent one).
      const down = utf8(`${e.lastEventId ? `id: ${e.lastEventId}\n` : ''}event: ${e.type}\ndata: ${e.data}\n\n`);
      count(via, 'down', down);
      const dash = e.lastEventId.indexOf('-');
      if (dash > 0) feed.epoch = e.lastEventId.slice(0, dash);
      const item = JSON.parse(e.data);
      if (e.type === 'gap') { acceptGap(via, item.missed); return; }
      if (e.type === 'reset') { acceptReset(via, item.head); return; }
      const delay = accept(item, via);
      log(via, `event: ${e.type} #${item.seq}`, { down, note: delay == null ? 'history' : `delay ${formatMs(delay)}` });
    };
    for (const name of SSE_EVENTS) es.addEventListener(name, onEvent);
  }
  open();
  return { stop() { clearTimeout(retry); es.close(); } };
}

/**
 * The WebSocket handshake's bytes, estimated: a page cannot read the upgrade request or the 101
 * (neither Resource Timing nor the WebSocket API exposes them), so this writes out the headers
 * Chromium sends (Host, Connection, Pragma, Cache-Control, User-Agent, Upgrade, Origin,
 * Sec-WebSocket-Version, Accept-Encoding, Accept-Language, Sec-WebSocket-Key,
 * Sec-WebSocket-Extensions) and the server's 101 (Upgrade, Connection, Sec-WebSocket-Accept,
 * Date). Cookies, if any, are not counted.
 */
function handshakeBytes(path) {
  const up = utf8(`GET ${path} HTTP/1.1\r\nHost: ${location.host}\r\nConnection: Upgrade\r\n`
    + 'Pragma: no-cache\r\nCache-Control: no-cache\r\n'
    + `User-Agent: ${navigator.userAgent}\r\nUpgrade: websocket\r\nOrigin: ${location.origin}\r\n`
    + 'Sec-WebSocket-Version: 13\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n'
    + `Accept-Language: ${(navigator.languages || [navigator.language]).join(',')}\r\n`
    + `Sec-WebSocket-Key: ${'x'.repeat(24)}\r\n`
    + 'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n');
  const down = utf8('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n'
    + `sec-websocket-accept: ${'x'.repeat(28)}\r\ndate: ${new Date().toUTCString()}\r\n\r\n`);
  return { up, down };
}

/** WebSocket frame size: 2-byte header, +2 or +8 for longer payloads, +4 mask from the client. */
const frameBytes = (payload, fromClient) =>
  payload + (payload <= 125 ? 2 : payload <= 65535 ? 4 : 10) + (fromClient ? 4 : 0);

function startWebSocket(via) {
  let stopped = false;
  let ws = null;
  let retry = null;
  let nextRef = 1;
  const pending = new Map(); // ref -> send time, to time the ack
  function open() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const path = `${roomPath(feed.room)}/ws?since=${cursor()}&${clientParam()}`;
    const t0 = performance.now();
    ws = new WebSocket(`${proto}//${location.host}${path}`);
    count(via, 'requests');
    const handshake = handshakeBytes(path);
    count(via, 'up', handshake.up);
    setStatus('connecting', 'WebSocket: connecting');
    ws.onopen = () => {
      count(via, 'down', handshake.down);
      log(via, 'upgraded (101)', { up: handshake.up, down: handshake.down, tookMs: performance.now() - t0, note: 'handshake bytes estimated from the headers a browser sends and the 101; then one connection, frames both ways' });
      setStatus('live', 'WebSocket: open');
    };
    ws.onmessage = (e) => {
      const down = frameBytes(utf8(e.data), false);
      count(via, 'down', down);
      const item = JSON.parse(e.data);
      switch (item.type) {
        case 'message': {
          const delay = accept(item, via);
          log(via, `frame: ${item.event} #${item.seq}`, { down, note: delay == null ? 'history' : `delay ${formatMs(delay)}` });
          break;
        }
        case 'ack': {
          const sentAt = pending.get(item.ref);
          pending.delete(item.ref);
          count(via, 'sent');
          log(via, `frame: ack ref ${item.ref}`, { down, tookMs: sentAt == null ? null : performance.now() - sentAt, note: `seq ${item.seq}` });
          break;
        }
        case 'gap': acceptGap(via, item.missed); break;
        case 'reset': acceptReset(via, item.head); break;
        case 'epoch': feed.epoch = item.epoch; break;
        default: log(via, `frame: ${item.type}`, { down, kind: 'error', note: item.error || '' });
      }
    };
    ws.onclose = (e) => {
      if (stopped) return;
      log(via, `closed (${e.code})`, { kind: 'warn', note: 'reconnecting in 1 s' });
      setStatus('error', 'WebSocket closed; reconnecting');
      retry = setTimeout(open, 1000);
    };
  }
  open();
  return {
    stop() { stopped = true; clearTimeout(retry); ws.close(); },
    send(body, addressing) {
      if (ws.readyState !== WebSocket.OPEN) { log(via, 'not sent', { kind: 'error', note: 'socket not open yet' }); return; }
      const ref = nextRef++;
      const frame = JSON.stringify({ type: 'send', body, ...addressing, ref });
      const up = frameBytes(utf8(frame), true);
      count(via, 'up', up);
      pending.set(ref, performance.now());
      ws.send(frame);
      log(via, `frame: send ref ${ref}`, { up });
    },
  };
}

// ---- choosing what runs: the transport, a hidden tab, the six-connection census ----------

const census = new Map(); // other tabs of this browser: id -> { born, wants, at }
const channel = 'BroadcastChannel' in window ? new BroadcastChannel('duplex-live-census') : null;

const wantsHeld = () => session != null && HELD.has(session.transport) && document.visibilityState === 'visible';

function announce(type = 'state') {
  if (channel) channel.postMessage({ type, id: tab.id, born: tab.born, wants: wantsHeld() });
}

/** Do the oldest MAX_HELD tabs that want a held connection include this one? */
function haveSlot() {
  const now = Date.now();
  const older = [...census.values()].filter((t) => t.wants && now - t.at < 3000 && t.born < tab.born);
  return older.length < MAX_HELD;
}

function renderCensus() {
  const now = Date.now();
  const others = [...census.values()].filter((t) => now - t.at < 3000);
  const holding = others.filter((t) => t.wants).length + (wantsHeld() ? 1 : 0);
  let text = others.length === 0 ? 'only this tab is open' : `${others.length + 1} tabs of this browser are open`;
  text += `, ${holding} of them on long poll or SSE`;
  if (mode && mode.fallback) text += '; this tab has no slot and short-polls';
  else if (mode && mode.paused) text += '; this tab is hidden and paused';
  $('census').textContent = text;
}

if (channel) {
  channel.onmessage = ({ data }) => {
    if (data.type === 'bye') census.delete(data.id);
    else census.set(data.id, { born: data.born, wants: data.wants, at: Date.now() });
    if (data.type === 'hello') announce();
  };
}

function desiredMode() {
  if (!session) return null;
  const t = session.transport;
  if (HELD.has(t) && document.visibilityState !== 'visible') return { key: `paused:${t}`, transport: t, paused: true };
  if (HELD.has(t) && !haveSlot()) return { key: 'fallback', transport: 'short_poll', fallback: true };
  if (t === 'short_poll') return { key: `short_poll:${session.interval}`, transport: t };
  return { key: t, transport: t };
}

function reconcile() {
  const want = desiredMode();
  renderCensus();
  if (want && mode && want.key === mode.key && feed.room === session.room) return;
  if (receiver) { receiver.stop(); receiver = null; }
  mode = want;
  if (!want) return;
  if (want.paused) {
    log(want.transport, 'paused', { note: 'tab hidden: connection released; catches up on return' });
    setStatus('paused', `${LABEL[want.transport]}: paused while hidden`);
  } else if (want.fallback) {
    log('short_poll', 'fallback to short poll', { kind: 'warn', note: `${MAX_HELD} older tabs hold long-poll/SSE connections` });
    receiver = startShortPoll('short_poll', FALLBACK_INTERVAL_MS);
  } else {
    const t = want.transport;
    receiver = t === 'short_poll' ? startShortPoll(t, session.interval)
      : t === 'long_poll' ? startLongPoll(t)
        : t === 'sse' ? startSse(t) : startWebSocket(t);
  }
  scheduleCounters();
  sendPresence();
}

// ---- clock, presence, flash --------------------------------------------------------------

/** Align with the server's clock: the sample with the shortest round trip wins (as NTP does). */
async function syncClock() {
  let best = null;
  for (let i = 0; i < 5; i++) {
    try {
      const t0 = localNowMs();
      const res = await fetch('/live/clock', { cache: 'no-store' });
      const { now_us: nowUs } = await res.json();
      const t1 = localNowMs();
      if (!best || t1 - t0 < best.rttMs) best = { rttMs: t1 - t0, offsetMs: nowUs / 1000 - (t0 + t1) / 2 };
    } catch (e) {
      break;
    }
  }
  if (best) {
    Object.assign(clock, best);
    $('clock-offset').textContent = `offset ${formatMs(Math.abs(best.offsetMs))} ${best.offsetMs >= 0 ? 'behind' : 'ahead of'} the server, ±${formatMs(best.rttMs / 2)}`;
  } else {
    $('clock-offset').textContent = 'could not be measured; delays trust this laptop\'s clock';
  }
}

function presenceBody(state) {
  return JSON.stringify({
    tab: tab.id, client: session ? session.name : '', room: session ? session.room : '',
    transport: mode ? mode.transport : null, state,
  });
}

function sendPresence() {
  if (!session) return;
  const state = mode && mode.paused ? 'paused' : mode && mode.fallback ? 'fallback' : 'active';
  fetch('/live/presence', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: presenceBody(state) })
    .catch(() => { /* the dashboard just misses one heartbeat */ });
}

function flashText(msg) {
  try { return `⚡ ${JSON.parse(msg.body).text}`; } catch { return `⚡ ${msg.body}`; }
}

/** The teacher's flash arrived: flash the page, show the delay, report it to the dashboard. */
function flash(msg, via) {
  let f;
  try { f = JSON.parse(msg.body); } catch { return; }
  if (flashesSeen.has(f.flash)) return;
  flashesSeen.add(f.flash);
  const delayMs = Math.max(0, (serverNowUs() - f.sent_us) / 1000);
  const banner = $('flash-banner');
  banner.textContent = `⚡ ${f.text} — arrived ${formatMs(delayMs)} after the teacher pressed flash, via ${LABEL[via]}`;
  banner.hidden = false;
  banner.dataset.flash = String(f.flash);
  document.body.classList.remove('flashing');
  void document.body.offsetWidth; // restart the animation
  document.body.classList.add('flashing');
  fetch('/live/flash/report', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ flash: f.flash, tab: tab.id, client: session.name, transport: via, delay_ms: delayMs }),
  }).catch(() => {});
}

// ---- the form ----------------------------------------------------------------------------

function readForm() {
  const transport = document.querySelector('input[name=transport]:checked').value;
  return { name: $('name').value.trim(), room: $('room').value.trim(), transport, interval: Number($('interval').value) };
}

let clockReady = Promise.resolve();

async function join() {
  await clockReady; // delays are measured against the server's clock, so align it first
  const next = readForm();
  if (!next.name || !/^[A-Za-z0-9_-]{1,64}$/.test(next.room)) { setStatus('error', 'name and room (letters, digits, _ -) please'); return; }
  localStorage.setItem('duplex-live', JSON.stringify({ name: next.name, room: next.room }));
  if (!session || session.room !== next.room) {
    // A new room: start from its history (since=0) and time only what arrives after joining.
    if (receiver) { receiver.stop(); receiver = null; mode = null; }
    feed.room = next.room;
    feed.lastSeq = 0;
    feed.epoch = null;
    feed.joinedUs = serverNowUs();
    $('messages').replaceChildren();
    $('room-name').textContent = next.room;
  }
  const changed = session && session.transport !== next.transport;
  session = next;
  if (changed) log(next.transport, `switched to ${LABEL[next.transport]}`, { note: `continuing after #${feed.lastSeq}` });
  $('connect').textContent = 'switch';
  announce();
  reconcile();
}

function init() {
  const saved = JSON.parse(localStorage.getItem('duplex-live') || '{}');
  const q = new URLSearchParams(location.search);
  $('name').value = q.get('name') || saved.name || `student-${Math.floor(Math.random() * 900 + 100)}`;
  $('room').value = q.get('room') || saved.room || 'lobby';
  if (q.get('transport')) {
    const radio = document.querySelector(`input[name=transport][value="${CSS.escape(q.get('transport'))}"]`);
    if (radio) radio.checked = true;
  }
  if (q.get('interval')) $('interval').value = q.get('interval');
  renderCounters();

  $('join').addEventListener('submit', (e) => { e.preventDefault(); join(); });
  // Switching transport takes effect at once once joined: no need to press the button again.
  // The interval only means something for short polling.
  const showInterval = () => { $('interval-label').hidden = readForm().transport !== 'short_poll'; };
  showInterval();
  for (const radio of document.querySelectorAll('input[name=transport]')) {
    radio.addEventListener('change', () => { showInterval(); if (session) join(); });
  }
  $('interval').addEventListener('change', () => { if (session) join(); });
  $('send').addEventListener('submit', (e) => {
    e.preventDefault();
    const body = $('body').value;
    if (!body || !session) return;
    $('body').value = '';
    const via = mode && !mode.paused ? mode.transport : session.transport;
    const event = $('mode').value;
    const to = $('to').value.trim();
    if (event === 'direct' && !to) { log(via, 'not sent', { kind: 'error', note: 'name the student to send to' }); return; }
    const addressing = { event, ...MODES[event].wire(to) };
    if (receiver && receiver.send) receiver.send(body, addressing);
    else publishHttp(via, body, addressing);
  });
  $('mode').addEventListener('change', () => { $('to').hidden = $('mode').value !== 'direct'; });
  $('clear-log').addEventListener('click', () => $('log').tBodies[0].replaceChildren());
  document.addEventListener('visibilitychange', () => { announce(); reconcile(); });
  window.addEventListener('pagehide', () => {
    if (channel) channel.postMessage({ type: 'bye', id: tab.id });
    if (session) navigator.sendBeacon('/live/presence', new Blob([presenceBody('gone')], { type: 'application/json' }));
  });
  setInterval(() => { announce(); reconcile(); }, 1000);
  setInterval(sendPresence, 5000);
  $('slot-max').textContent = ['zero', 'one', 'two', 'three', 'four', 'five'][MAX_HELD] || String(MAX_HELD);

  announce('hello');
  // Give the other tabs a moment to answer the census before taking a connection slot.
  clockReady = syncClock();
  if (q.get('join') === '1') clockReady.then(() => sleep(300)).then(join);
}

init();
