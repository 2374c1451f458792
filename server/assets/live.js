// duplex's classroom page, part 4 of 4 (after the other three): choosing
// what runs (the transport, a hidden tab, the six-connection census), the clock, presence, the
// flash, the form and start-up. Everything from the network or the user is rendered with
// textContent, never innerHTML (see live-core.js).
'use strict';

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
    tab: tab.token, client: session ? session.name : '', room: session ? session.room : '',
    transport: mode ? mode.transport : null, state,
  });
}

let issuing = null;
/** This tab's id from the server (POST /live/tab), asked for once; null when it was refused. */
function tabToken() {
  if (tab.token) return Promise.resolve(tab.token);
  if (!issuing) {
    issuing = fetch('/live/tab', { method: 'POST' })
      .then((res) => (res.ok ? res.json() : null))
      .then((issued) => { tab.token = issued ? issued.tab : null; return tab.token; })
      .catch(() => null)
      .finally(() => { issuing = null; });
  }
  return issuing;
}

async function sendPresence() {
  if (!session || !(await tabToken())) return;
  const state = mode && mode.paused ? 'paused' : mode && mode.fallback ? 'fallback' : 'active';
  try {
    const res = await fetch('/live/presence', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: presenceBody(state) });
    // The server forgot the id (it was idle long enough to be dropped): ask for a new one.
    if (res.status === 400 && (await res.text()).includes('unknown tab')) { tab.token = null; sendPresence(); }
  } catch { /* the dashboard just misses one heartbeat */ }
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
  flashLog.set(f.flash, { delayMs, via, sentUs: f.sent_us });
  if (flashLog.size > MAX_DELAYS) flashLog.delete(flashLog.keys().next().value);
  const banner = $('flash-banner');
  banner.textContent = `⚡ ${f.text} — arrived ${formatMs(delayMs)} after the teacher pressed flash, via ${LABEL[via]}`;
  banner.hidden = false;
  banner.dataset.flash = String(f.flash);
  document.body.classList.remove('flashing');
  void document.body.offsetWidth; // restart the animation
  document.body.classList.add('flashing');
  fetch('/live/flash/report', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ flash: f.flash, tab: tab.token, client: session.name, transport: via, delay_ms: delayMs }),
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
    if (session && tab.token) navigator.sendBeacon('/live/presence', new Blob([presenceBody('gone')], { type: 'application/json' }));
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
