// duplex's classroom page, part 3 of 4 (after live-core.js and live-transports.js, before
// live.js; one global scope): the guided experiment. The teacher's dashboard starts it; the
// plan arrives as an `experiment` message over whatever transport this page is on. The page
// then runs each transport of the plan in turn, on the server's clock (aligned over
// /live/clock), and at the end of each phase sends what it counted in that phase to
// /live/experiment/report: requests, empty answers, bytes (the parts this page can see; see
// the note on the page), and the delay of every flash of that phase. When the last phase is
// over it goes back to the transport the student had picked.
'use strict';

let experimentRun = null; // { id, before, timers } while a plan runs

/** The experiment message as the chat shows it. */
function experimentText(msg) {
  try {
    const plan = JSON.parse(msg.body);
    const seconds = (plan.phases[0].end_us - plan.phases[0].start_us) / 1e6;
    return `▶ the comparison: ${plan.phases.map((p) => LABEL[p.transport]).join(' → ')}, ${seconds} s each`;
  } catch {
    return msg.body;
  }
}

function showExperiment(text, state) {
  const note = $('experiment-note');
  note.hidden = false;
  note.dataset.state = state;
  note.textContent = text;
}

/** What phase `i` is counted from: a copy of its transport's counters and the time. */
function phaseStart(transport) {
  const s = stats[transport];
  // Resource Timing keeps 250 entries by default; each phase starts from an empty buffer.
  performance.clearResourceTimings();
  return { at: performance.now(), counts: { ...s, delays: null } };
}

/**
 * Response header bytes as Resource Timing reports them for this phase's requests
 * (transferSize - encodedBodySize), or null when the browser does not expose them: Chromium
 * reports a fixed 300 bytes for every response (measured), which says nothing.
 */
function resourceTimingHeaders(since) {
  const entries = performance.getEntriesByType('resource')
    .filter((e) => e.startTime >= since && e.name.includes('/api/rooms/') && e.transferSize > 0);
  const sizes = entries.map((e) => e.transferSize - e.encodedBodySize);
  if (!sizes.length || sizes.every((n) => n === 300)) return null;
  return sizes.reduce((a, b) => a + b, 0);
}

/** Switches this page to `transport` for the experiment (the form shows it too). */
function runTransport(transport, intervalMs) {
  const radio = document.querySelector(`input[name=transport][value="${transport}"]`);
  if (radio) radio.checked = true;
  session = { ...session, transport, interval: intervalMs };
  announce();
  reconcile();
}

function endPhase(run, plan, i, start) {
  const phase = plan.phases[i];
  const t = phase.transport;
  const now = stats[t];
  const d = (field) => now[field] - start.counts[field];
  // Only this phase's flashes, seen over this phase's transport.
  const delays = [...flashLog.entries()]
    .filter(([, f]) => f.via === t && f.sentUs >= phase.start_us && f.sentUs <= phase.end_us)
    .map(([flash, f]) => ({ flash, delay_ms: f.delayMs }));
  const down = d('down');
  const header = Math.min(d('headerDown'), down);
  const figures = {
    experiment: plan.experiment, phase: i, tab: tab.token, transport: t,
    requests: d('requests'), empty_responses: d('empty'), connections_opened: d('opened'), errors: d('errors'),
    bytes_up: d('up'), bytes_down: down, header_down: header, payload_down: Math.min(d('payloadDown'), down - header),
    resource_timing_header_down: resourceTimingHeaders(start.at), delays,
  };
  run.sent.push(figures);
  fetch('/live/experiment/report', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(figures) })
    .then((res) => { if (!res.ok) return res.text().then((text) => log(t, `experiment report → ${res.status}`, { kind: 'error', note: text.slice(0, 200) })); })
    .catch((e) => log(t, 'experiment report failed', { kind: 'error', note: String(e) }));
  log(t, `comparison: ${LABEL[t]} done`, { note: `${figures.requests} requests, ${delays.length} flashes, ↓${down} ↑${figures.bytes_up}` });
}

/** The plan arrived: schedule every phase on the server's clock. */
function startExperiment(msg) {
  let plan;
  try { plan = JSON.parse(msg.body); } catch { return; }
  if (!session || !tab.token || (experimentRun && experimentRun.id === plan.experiment)) return;
  if (experimentRun) experimentRun.timers.forEach(clearTimeout);
  const run = { id: plan.experiment, before: { transport: session.transport, interval: session.interval }, timers: [], sent: [] };
  experimentRun = run;
  const at = (us, fn) => run.timers.push(setTimeout(fn, Math.max(0, (us - serverNowUs()) / 1000)));
  showExperiment(`The comparison starts: ${plan.phases.map((p) => LABEL[p.transport]).join(', ')}`, 'waiting');
  // A phase ends at its end time or when the next one starts, whichever timer fires first
  // (they are due at the same instant), and only once.
  const starts = [];
  const finish = (i) => { if (starts[i]) { endPhase(run, plan, i, starts[i]); starts[i] = null; } };
  plan.phases.forEach((phase, i) => {
    at(phase.start_us, () => {
      if (i > 0) finish(i - 1);
      // Counted from before the switch: opening the new transport is part of its cost.
      starts[i] = phaseStart(phase.transport);
      runTransport(phase.transport, plan.short_poll_interval_ms);
      showExperiment(`The comparison: ${LABEL[phase.transport]} (${i + 1} of ${plan.phases.length}), in this browser`, 'running');
    });
    at(phase.end_us, () => finish(i));
  });
  at(plan.phases[plan.phases.length - 1].end_us + 20, () => {
    runTransport(run.before.transport, run.before.interval);
    $('interval').value = String(run.before.interval);
    showExperiment(`The comparison is over: this browser sent its figures for ${run.sent.length} transports`, 'done');
    experimentRun = null;
  });
}
