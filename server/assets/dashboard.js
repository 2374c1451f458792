// duplex's projector dashboard: shows where students join (/live/join, large, with the QR code
// the server renders), follows /live/stream (the server's own SSE stream) and draws, per
// transport, the requests and the bytes written per delivered message in large figures, then the
// students, the server's open connections and the request and byte rates; the flash button
// publishes a flash and the delays the pages report are drawn by transport. "Run the comparison"
// starts the guided experiment (every student page runs each transport in turn in its own
// browser); its progress and, per transport, what the browsers measured come with the stats,
// and the results file is the server's /live/experiment/results.json. Text from the network
// goes in with textContent only. Colours are not named here: each chart element gets its
// transport's `t-<id>` class and live.css colours it (one palette).
'use strict';

const TRANSPORTS = ['short_poll', 'long_poll', 'sse', 'websocket'];
// The teacher's token, from the URL `duplex serve` printed; the stream and the flash need it.
const TOKEN = new URLSearchParams(location.search).get('token') || '';
const LABEL = { short_poll: 'short poll', long_poll: 'long poll', sse: 'SSE', websocket: 'WebSocket' };
const HISTORY = 60; // seconds of rate history in each sparkline
const SVG = 'http://www.w3.org/2000/svg';

const $ = (id) => document.getElementById(id);
const history = Object.fromEntries(TRANSPORTS.map((t) => [t, []]));
let reports = []; // DelayReport, oldest first
let flashes = []; // FlashRecord, oldest first

function el(tag, attrs = {}, text) {
  const e = tag.startsWith('svg:') ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text != null) e.textContent = text;
  return e;
}

function rate(x) {
  if (x == null) return '–';
  return x >= 100 ? Math.round(x).toLocaleString() : x.toFixed(1);
}

function bytesRate(x) {
  if (x == null) return '–';
  if (x < 1000) return `${Math.round(x)} B/s`;
  if (x < 1e6) return `${(x / 1000).toFixed(1)} kB/s`;
  return `${(x / 1e6).toFixed(2)} MB/s`;
}

// ---- cards -------------------------------------------------------------------------------

function buildCards() {
  const cards = $('cards');
  for (const t of TRANSPORTS) {
    const card = el('section', { class: `card t-${t}`, 'data-transport': t });
    card.append(el('h2', {}, LABEL[t]));
    // The two numbers that teach, large: what each transport costs in requests and in bytes.
    card.append(el('div', { class: 'big requests' }, '0'), el('div', { class: 'label' }, 'requests'));
    card.append(el('div', { class: 'big per-message' }, '–'), el('div', { class: 'label' }, 'bytes / message'));
    // What the students' browsers measured in the comparison, once it has run.
    card.append(el('div', { class: 'comparison', hidden: '' }));
    const dl = el('dl');
    for (const [key, label] of [['clients', 'students'], ['paused', 'paused (hidden)'], ['open', 'open at server'],
      ['rps', 'requests/s'], ['bps', 'bytes/s']]) {
      dl.append(el('dt', {}, label), el('dd', { class: key }, '–'));
    }
    card.append(dl, el('svg:svg', { class: 'spark', viewBox: `0 0 ${HISTORY} 40`, preserveAspectRatio: 'none', 'aria-label': 'requests/s, last minute' }));
    cards.append(card);
  }
}

/** Bytes the server wrote per message it delivered: headers, framing and empty answers included. */
function perMessage(row) {
  if (!row.deliveries) return '–';
  const b = row.bytes_sent / row.deliveries;
  return b >= 10000 ? `${(b / 1000).toFixed(1)} k` : Math.round(b).toLocaleString();
}

function renderStats(s) {
  for (const row of s.transports) {
    const card = document.querySelector(`.card[data-transport="${row.transport}"]`);
    if (!card) continue;
    card.querySelector('.clients').textContent = String(row.clients);
    card.querySelector('.clients').dataset.count = String(row.clients);
    card.querySelector('.paused').textContent = String(row.paused);
    card.querySelector('.open').textContent = String(row.open_connections);
    card.querySelector('.rps').textContent = rate(row.requests_per_s);
    card.querySelector('.bps').textContent = bytesRate(row.bytes_per_s);
    card.querySelector('.requests').textContent = row.requests.toLocaleString();
    card.querySelector('.per-message').textContent = perMessage(row);
    if (row.requests_per_s != null) {
      const h = history[row.transport];
      h.push(row.requests_per_s);
      if (h.length > HISTORY) h.shift();
      drawSpark(card.querySelector('.spark'), h);
    }
  }
  flashes = s.flashes;
  if (s.experiment) renderExperiment(s.experiment, s.now_us);
  const rooms = s.rooms.map((r) => `${r.room} (${r.tabs})`).join(', ');
  $('flash-room').placeholder = rooms ? `every room: ${rooms}` : 'every room (none yet)';
}

/** requests/s over the last minute, scaled to the largest rate of any transport (coloured by
 *  its card's class). */
function drawSpark(svg, values) {
  const top = Math.max(1, ...TRANSPORTS.flatMap((t) => history[t]));
  const x0 = HISTORY - values.length;
  const points = values.map((v, i) => `${x0 + i},${(40 - (v / top) * 38).toFixed(1)}`).join(' ');
  svg.replaceChildren(el('svg:polyline', { points, 'stroke-width': 1.5, 'vector-effect': 'non-scaling-stroke' }));
}

// ---- flash delays ------------------------------------------------------------------------

/** A strip chart per transport on a log axis: the latest flash's delays as dots, earlier ones faint. */
function drawDelays() {
  const box = $('delays');
  const latest = flashes.length ? flashes[flashes.length - 1].flash : null;
  if (latest == null) { box.replaceChildren(el('p', { class: 'muted caption' }, 'No flash yet: press ⚡ and every student page flashes and reports its delay.')); return; }
  const W = 900, left = 110, right = 190, rowH = 34, top = 6, H = top + rowH * 4 + 22;
  const min = 0.1, max = 10000; // ms
  const x = (ms) => left + (Math.log10(Math.min(max, Math.max(min, ms)) / min) / Math.log10(max / min)) * (W - left - right);
  const svg = el('svg:svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'flash delays by transport' });
  for (const tick of [0.1, 1, 10, 100, 1000, 10000]) {
    svg.append(el('svg:line', { x1: x(tick), x2: x(tick), y1: top, y2: top + rowH * 4, stroke: '#e2e2dc' }));
    svg.append(el('svg:text', { x: x(tick), y: H - 5, 'text-anchor': 'middle' }, tick >= 1000 ? `${tick / 1000} s` : `${tick} ms`));
  }
  const recent = new Set(flashes.slice(-5).map((f) => f.flash));
  TRANSPORTS.forEach((t, i) => {
    const y = top + rowH * i + rowH / 2;
    svg.append(el('svg:text', { x: 0, y: y + 4 }, LABEL[t]));
    svg.append(el('svg:line', { x1: left, x2: W - right, y1: y, y2: y, stroke: '#f0f0ea' }));
    const mine = reports.filter((r) => r.transport === t && recent.has(r.flash));
    for (const r of mine) {
      const current = r.flash === latest;
      const jitter = ((r.dot.charCodeAt(0) * 7 + r.dot.charCodeAt(1) * 13) % 15) - 7; // stable spread
      const dot = el('svg:circle', { class: `t-${t}`, cx: x(r.delay_ms), cy: y + jitter, r: current ? 6 : 4, 'fill-opacity': current ? 0.85 : 0.2 });
      dot.append(el('svg:title', {}, `${r.client}: ${r.delay_ms.toFixed(1)} ms (flash #${r.flash})`));
      svg.append(dot);
    }
    const now = mine.filter((r) => r.flash === latest).map((r) => r.delay_ms).sort((a, b) => a - b);
    let summary = 'no report';
    if (now.length) {
      const med = now[Math.floor((now.length - 1) / 2)];
      svg.append(el('svg:line', { x1: x(med), x2: x(med), y1: y - 13, y2: y + 13, stroke: '#1d232a', 'stroke-width': 2 }));
      summary = `${now.length} × median ${med < 10 ? med.toFixed(1) : Math.round(med)} ms`;
    }
    svg.append(el('svg:text', { x: W - right + 12, y: y + 4, class: `summary-${t}` }, summary));
  });
  const f = flashes[flashes.length - 1];
  box.replaceChildren(el('p', { class: 'muted caption' }, `Flash #${f.flash} “${f.text}” to ${f.rooms.length} room(s): bold dots; the four before it faint; black tick = median.`), svg);
}

// ---- the guided experiment -------------------------------------------------------------

function kB(bytes) {
  return bytes >= 1000 ? `${(bytes / 1000).toFixed(1)} kB` : `${Math.round(bytes)} B`;
}

/** Progress while it runs; per transport, the browsers' figures on each card once reported. */
function renderExperiment(x, nowUs) {
  const current = x.phases.findIndex((p) => nowUs >= p.start_us && nowUs < p.end_us);
  let text;
  if (x.finished) {
    const reported = Math.max(...x.phases.map((p) => p.reports));
    text = `comparison #${x.experiment} done: ${reported} of ${x.pages} pages reported`;
  } else if (current < 0) {
    text = `comparison #${x.experiment}: starting on ${x.pages} pages…`;
  } else {
    const p = x.phases[current];
    text = `comparison #${x.experiment}: ${LABEL[p.transport]} (${current + 1} of ${x.phases.length}) on ${x.pages} pages, ${Math.ceil((p.end_us - nowUs) / 1e6)} s left`;
  }
  $('experiment-status').textContent = text;
  $('experiment-status').dataset.state = x.finished ? 'done' : 'running';
  $('experiment-button').disabled = !x.finished;
  const link = $('experiment-results');
  link.hidden = !x.finished;
  link.href = `/live/experiment/results.json?token=${encodeURIComponent(TOKEN)}`;
  for (const p of x.phases) {
    const box = document.querySelector(`.card[data-transport="${p.transport}"] .comparison`);
    if (!box || !p.reports) continue;
    box.hidden = false;
    box.dataset.requestsPerPage = String(p.requests_per_page);
    const delay = p.delay_p50_ms == null ? '–' : `${p.delay_p50_ms < 10 ? p.delay_p50_ms.toFixed(1) : Math.round(p.delay_p50_ms)} ms`;
    box.replaceChildren(el('span', { class: 'label' }, 'in the browsers, per page'),
      el('span', {}, `${p.requests_per_page.toFixed(1)} req · ${kB(p.bytes_per_page)} · ${delay}`));
    box.title = `${p.reports} pages; ${p.delivered} of ${p.expected} flash deliveries; median delay ${delay}`;
  }
}

async function startExperiment(e) {
  e.preventDefault();
  const body = { phase_s: Number($('experiment-seconds').value) };
  try {
    const res = await fetch('/live/experiment', { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Duplex-Teacher': TOKEN }, body: JSON.stringify(body) });
    const answer = await res.json();
    $('experiment-status').textContent = res.ok
      ? `comparison #${answer.experiment}: starting…` : answer.error;
    if (res.ok) $('experiment-button').disabled = true;
  } catch (err) {
    $('experiment-status').textContent = String(err);
  }
}

// ---- where students join ----------------------------------------------------------------

/** The join address in large type and as a QR code, both from the server (/live/join), which
 *  knows the port it listens on and the laptop's addresses; other addresses in small print. */
async function showJoin() {
  const token = encodeURIComponent(TOKEN);
  try {
    const res = await fetch(`/live/join?token=${token}`);
    const join = await res.json();
    if (!res.ok) { $('join-url').textContent = join.error; return; }
    $('join-url').textContent = join.shown;
    $('join-qr').src = `/live/join.svg?token=${token}`;
    const others = join.urls.slice(1).map((u) => `${u.url} (${u.interface})`);
    $('join-more').textContent = others.length ? `or ${others.join(', ')}` : '';
    $('join-fix').hidden = !join.fix;
    $('join-fix').textContent = join.fix || '';
  } catch (err) {
    $('join-url').textContent = String(err);
  }
}

// ---- wiring ------------------------------------------------------------------------------

function follow() {
  const es = new EventSource(`/live/stream?token=${encodeURIComponent(TOKEN)}`);
  es.onopen = () => { $('status').dataset.state = 'live'; $('status').textContent = 'live'; };
  es.onerror = () => { $('status').dataset.state = 'connecting'; $('status').textContent = 'reconnecting'; };
  es.addEventListener('stats', (e) => {
    const s = JSON.parse(e.data);
    const known = flashes.length;
    renderStats(s);
    if (flashes.length !== known) drawDelays();
  });
  es.addEventListener('delays', (e) => { reports = JSON.parse(e.data); drawDelays(); });
  es.addEventListener('delay', (e) => {
    reports.push(JSON.parse(e.data));
    if (reports.length > 2000) reports.shift();
    drawDelays();
  });
}

async function sendFlash(e) {
  e.preventDefault();
  const body = { text: $('flash-text').value };
  if ($('flash-room').value.trim()) body.room = $('flash-room').value.trim();
  try {
    const res = await fetch('/live/flash', { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Duplex-Teacher': TOKEN }, body: JSON.stringify(body) });
    const answer = await res.json();
    if (!res.ok) { $('flash-result').textContent = answer.error; return; }
    flashes.push({ flash: answer.flash, text: body.text, sent_us: answer.sent_us, rooms: answer.rooms });
    $('flash-result').textContent = answer.rooms.length
      ? `flash #${answer.flash} sent to ${answer.rooms.join(', ')}` : 'no student is in a room yet';
    drawDelays();
  } catch (err) {
    $('flash-result').textContent = String(err);
  }
}

/** The dashboard's stream holds a connection too: it joins the student pages' census (see
 *  live.js) as the oldest tab, so student tabs of this browser leave a connection for it. */
function joinCensus() {
  if (!('BroadcastChannel' in window)) return;
  const census = new BroadcastChannel('duplex-live-census');
  const me = { type: 'state', id: `dashboard-${Math.random().toString(36).slice(2)}`, born: 0, wants: true };
  census.onmessage = ({ data }) => { if (data.type === 'hello') census.postMessage(me); };
  census.postMessage(me);
  setInterval(() => census.postMessage(me), 1000);
  addEventListener('pagehide', () => census.postMessage({ type: 'bye', id: me.id }));
}

buildCards();
joinCensus();
showJoin();
$('flash-form').addEventListener('submit', sendFlash);
$('experiment-form').addEventListener('submit', startExperiment);
drawDelays();
follow();
