// duplex's classroom page, part 1 of 4 (loaded in order by index.html as classic scripts that
// share one global scope): the constants, the page's state, rendering, the delivery logic every
// transport shares, and HTTP accounting. live-transports.js holds the four receivers;
// live-experiment.js the guided experiment; live.js chooses which receiver runs and wires up
// the form, the clock, presence and the flash.
//
// The page follows one room over the transport the student picks and shows, per
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
const SSE_EVENTS = ['chat', 'others', 'direct', 'flash', 'experiment', 'message', 'gap', 'reset'];
const MAX_LOG_ROWS = 300;
const MAX_MESSAGES = 200;
const MAX_DELAYS = 500;

const $ = (id) => document.getElementById(id);
const utf8 = (s) => new TextEncoder().encode(s).length;
const localNowMs = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- state -------------------------------------------------------------------------------

// `id` names this tab to the other tabs of this browser only (the census, in live.js); `token`
// is the id the server issued it (POST /live/tab), its credential for heartbeats and reports,
// never shown or shared.
const tab = { id: Math.random().toString(36).slice(2, 10), born: Date.now() + Math.random(), token: null };
const clock = { offsetMs: 0, rttMs: null }; // server time = local time + offsetMs
const serverNowUs = () => (localNowMs() + clock.offsetMs) * 1000;

const stats = Object.fromEntries(TRANSPORTS.map((t) => [t, {
  requests: 0, empty: 0, received: 0, sent: 0, down: 0, up: 0, delays: [], lastDelay: null,
  missed: 0, duplicates: 0,
  // For the guided experiment's figures (live-experiment.js): parts of `down`, and events.
  headerDown: 0, payloadDown: 0, opened: 0, errors: 0,
}]));

let session = null; // { name, room, transport, interval } once joined
const feed = { room: null, lastSeq: 0, epoch: null, joinedUs: 0 }; // position in the room's log
// The cursor sent back: `<epoch>-<seq>` once the server said which epoch (a restarted server then
// answers a reset instead of resuming at a seq that now means another message).
const cursor = () => (feed.epoch ? `${feed.epoch}-${feed.lastSeq}` : `${feed.lastSeq}`);
let mode = null; // { key, transport, fallback, paused } actually running
let receiver = null; // { stop(), send?(body) } of the running mode
const flashesSeen = new Set();
// Every flash this page saw: number -> { delayMs, via, sentUs }, for the experiment's reports.
const flashLog = new Map();

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
  body.textContent = msg.event === 'flash' ? flashText(msg)
    : msg.event === 'experiment' ? experimentText(msg) : msg.body;
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
  s.payloadDown += utf8(JSON.stringify(msg)); // the message's JSON as delivered
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
  if (msg.event === 'experiment' && delayMs != null) startExperiment(msg);
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
    count(via, 'headerDown', responseBytes(res, ''));
    if (res.status === 201) {
      count(via, 'sent');
      log(via, `POST → ${res.status}`, { down: responseBytes(res, text), up: requestBytes('POST', url, json), tookMs: performance.now() - t0, note: `seq ${JSON.parse(text).seq}` });
    } else {
      log(via, `POST → ${res.status}`, { kind: 'error', tookMs: performance.now() - t0, note: text.slice(0, 200) });
    }
  } catch (e) {
    count(via, 'errors');
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
  count(via, 'headerDown', responseBytes(res, ''));
  const tookMs = performance.now() - t0;
  if (res.status === 204) {
    count(via, 'empty');
    log(via, `GET ${what} → 204`, { down, up, tookMs, note: emptyNote, kind: 'empty' });
  } else if (res.status === 200) {
    log(via, `GET ${what} → 200`, { down, up, tookMs, note: acceptBatch(via, JSON.parse(text)) });
  } else {
    count(via, 'errors');
    log(via, `GET ${what} → ${res.status}`, { down, up, tookMs, kind: 'error', note: text.slice(0, 200) });
  }
  return res.status;
}
