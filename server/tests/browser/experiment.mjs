// The guided experiment end to end in headless Chromium: four student laptops (each starting on
// another transport) and the teacher's dashboard at 1280x720. The teacher presses "run the
// comparison"; every page runs each transport in turn for <phase-s> seconds and reports; the
// dashboard shows the browsers' figures per transport and offers the results file, which this
// script saves to <results-out> for `server/tests/browser.rs` to check and render.
//
//   node experiment.mjs <base-url> <screenshot-dir> <teacher-token> <results-out> <phase-s>
//
// Screenshots: dashboard-experiment-running.png (during the third phase) and
// dashboard-experiment-done.png in <screenshot-dir>. The exit code is the number of failed
// checks; every wait is bounded.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TRANSPORTS, WAIT, assert, checker, cutOff, launch, newLaptop, openStudent, watchConsole } from './pages.mjs';

const [base, shotDir, teacherToken, resultsOut, phaseArg] = process.argv.slice(2);
if (!base || !shotDir || !teacherToken || !resultsOut || !phaseArg) {
  console.error('usage: node experiment.mjs <base-url> <screenshot-dir> <teacher-token> <results-out> <phase-s>');
  process.exit(2);
}
mkdirSync(shotDir, { recursive: true });
const PHASE_S = Number(phaseArg);
// The whole plan (a 1.5 s lead and four phases) and a generous margin for a loaded machine.
const PLAN_MS = 1500 + 4 * PHASE_S * 1000 + WAIT;
const room = `comparison-${Date.now().toString(36)}`;

const browser = await launch();
const { check, failed } = checker();

await check('four browsers run the guided experiment and the dashboard offers their figures', async () => {
  const teacher = await newLaptop(browser, { width: 1280, height: 720 });
  const laptops = [];
  try {
    const dash = await teacher.newPage();
    watchConsole(dash, teacher, 'dashboard');
    await dash.goto(`${base}/dashboard?token=${teacherToken}`);
    await dash.waitForSelector('#status[data-state=live]', { timeout: WAIT });
    const pages = [];
    for (const [i, transport] of TRANSPORTS.entries()) {
      const ctx = await newLaptop(browser);
      laptops.push(ctx);
      pages.push(await openStudent(base, ctx, { name: `student-${i}`, room, transport }));
    }
    // Every page is on the dashboard (its heartbeat carries the server-issued tab id).
    await dash.waitForFunction(() => [...document.querySelectorAll('.card .clients')]
      .reduce((n, e) => n + Number(e.textContent), 0) === 4, null, { timeout: WAIT });

    await dash.fill('#experiment-seconds', String(PHASE_S));
    await dash.click('#experiment-button');
    // Every page learns the plan over its own transport and says what it is doing.
    for (const page of pages) {
      await page.waitForSelector('#experiment-note[data-state=running]', { timeout: WAIT });
    }
    await dash.waitForFunction(() => /\(3 of 4\)/.test(document.querySelector('#experiment-status').textContent),
      null, { timeout: PLAN_MS });
    await dash.screenshot({ path: join(shotDir, 'dashboard-experiment-running.png') });
    await dash.waitForSelector('#experiment-status[data-state=done]', { timeout: PLAN_MS });
    // All four pages' figures for all four transports (the last phase's arrive just after it).
    await dash.waitForFunction(() => [...document.querySelectorAll('.card .comparison')].every((e) => !e.hidden)
      && /4 of 4 pages reported/.test(document.querySelector('#experiment-status').textContent), null, { timeout: WAIT });
    await dash.waitForTimeout(1200); // one more stats tick, so the screenshot has every card's line
    await dash.screenshot({ path: join(shotDir, 'dashboard-experiment-done.png') });
    const cut = await cutOff(dash);
    assert(cut.length === 0, `at 1280x720 the dashboard cuts off: ${cut.join('; ')}`);

    // What the cards say is what the browsers measured: short polling asks about
    // phase / interval times per page, the held transports about once.
    const perPage = await dash.$$eval('.card', (cards) => Object.fromEntries(cards.map((c) =>
      [c.dataset.transport, Number(c.querySelector('.comparison').dataset.requestsPerPage)])));
    const polls = (PHASE_S * 1000) / 500;
    assert(perPage.short_poll >= polls * 0.6 && perPage.short_poll <= polls * 1.3,
      `short poll: ${perPage.short_poll} requests per page, expected about ${polls}`);
    for (const t of ['sse', 'websocket']) assert(perPage[t] >= 1 && perPage[t] <= 3, `${t}: ${perPage[t]} requests per page`);

    // The results file, as the teacher's link downloads it.
    const href = await dash.$eval('#experiment-results', (a) => a.href);
    const file = await dash.evaluate(async (url) => {
      const res = await fetch(url);
      return { status: res.status, disposition: res.headers.get('content-disposition'), text: await res.text() };
    }, href);
    assert(file.status === 200 && /results\.json/.test(file.disposition), `results link: ${file.status} ${file.disposition}`);
    writeFileSync(resultsOut, file.text);

    // Every page went back to the transport its student had picked.
    for (const [i, page] of pages.entries()) {
      await page.waitForSelector('#experiment-note[data-state=done]', { timeout: WAIT });
      const picked = await page.$eval('input[name=transport]:checked', (e) => e.value);
      assert(picked === TRANSPORTS[i], `page ${i} is on ${picked}, its student picked ${TRANSPORTS[i]}`);
    }
    await pages[0].screenshot({ path: join(shotDir, 'live-after-experiment.png'), fullPage: true });
    const errors = [...teacher.errors, ...laptops.flatMap((c) => c.errors)];
    assert(errors.length === 0, `page errors: ${errors}`);
  } finally {
    for (const c of laptops) await c.close();
    await teacher.close();
  }
});

await browser.close();
console.log(failed() ? `${failed()} check(s) failed` : 'all browser checks passed');
process.exit(Math.min(failed(), 100));
