// Browser tests of duplex's live page, in a real headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core) against a real server that `server/tests/browser.rs` starts.
//
//   node live.mjs <base-url> <screenshot-dir>
//
// Each check prints "ok <name>" or "FAIL <name>: <why>"; the exit code is the number of failures
// (capped at 100), so the Rust test fails on any of them and shows this output. Every wait is
// bounded. Separate browser contexts stand for separate laptops; pages of one context share one
// connection pool, like tabs of one browser.
import { TRANSPORTS, WAIT, assert, checker, cutOff, launch, newLaptop, openStudent, watchConsole } from './pages.mjs';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const [base, shotDir, teacherToken] = process.argv.slice(2);
if (!base || !shotDir) {
  console.error('usage: node live.mjs <base-url> <screenshot-dir>');
  process.exit(2);
}
mkdirSync(shotDir, { recursive: true });

const RUN = Date.now().toString(36); // room suffix: a rerun against the same server starts clean

const browser = await launch();
const { check, failed } = checker();
const laptop = (viewport) => newLaptop(browser, viewport);
const student = (ctx, opts) => openStudent(base, ctx, opts);

async function send(page, body, { mode = 'chat', to = '' } = {}) {
  await page.selectOption('#mode', mode);
  if (mode === 'direct') await page.fill('#to', to);
  await page.fill('#body', body);
  await page.click('#send-button');
}

/** The texts of the messages `page` shows. */
const bodies = (page) => page.$$eval('#messages .body', (els) => els.map((e) => e.textContent));

/** The meta line (seq, transport, mode, delay) of the message whose body is `body`. */
const metaOf = (page, body) => page.$$eval('#messages li', (lis, b) => {
  const li = lis.find((l) => l.querySelector('.body').textContent === b);
  return li ? li.querySelector('.meta').textContent : null;
}, body);

/** Waits until `page` shows a message whose body (as text) is exactly `body`. */
async function received(page, body) {
  await page.waitForFunction(
    (b) => [...document.querySelectorAll('#messages .body')].some((e) => e.textContent === b),
    body, { timeout: WAIT, polling: 100 });
}

/** The counters row of `transport` on `page`, as numbers where they are numbers. */
async function counters(page, transport) {
  return page.$eval(`#counters tr[data-transport=${transport}]`, (tr) => ({
    requests: Number(tr.querySelector('.requests').textContent),
    empty: Number(tr.querySelector('.empty').textContent),
    received: parseInt(tr.querySelector('.received').textContent, 10),
    sent: Number(tr.querySelector('.sent').textContent),
  }));
}

// 1. Every transport delivers to a page on another transport: sender on T, receiver on the next.
for (const [i, from] of TRANSPORTS.entries()) {
  const to = TRANSPORTS[(i + 1) % TRANSPORTS.length];
  await check(`message sent over ${from} reaches a page on ${to}`, async () => {
    const room = `pair-${from}-${to}-${RUN}`;
    const [a, b] = [await laptop(), await laptop()];
    try {
      const receiver = await student(b, { name: `rx-${to}`, room, transport: to });
      const sender = await student(a, { name: `tx-${from}`, room, transport: from });
      const body = `hello from ${from} at ${Date.now()}`;
      await send(sender, body);
      await received(receiver, body);
      await received(sender, body); // echo: the sender sees its own message too
      const rx = await counters(receiver, to);
      assert(rx.received >= 1, `receiver counted ${rx.received} messages on ${to}`);
      await sender.waitForFunction((t) => Number(document.querySelector(`#counters tr[data-transport=${t}] .sent`).textContent) >= 1, from, { timeout: WAIT });
      const meta = await receiver.$eval('#messages li:last-child .meta', (e) => e.textContent);
      assert(/\+\d/.test(meta), `receiver shows no delay for the message: ${meta}`);
      const logRows = await receiver.$$eval('#log tbody tr', (rows) => rows.length);
      assert(logRows > 0, 'receiver traffic log is empty');
      assert(a.errors.length + b.errors.length === 0, `page errors: ${[...a.errors, ...b.errors]}`);
    } finally {
      await a.close();
      await b.close();
    }
  });
}

// 2. Markup in a body or a name is shown as text, and never runs.
await check('a body of <img src=x onerror=alert(1)> renders as text on every transport', async () => {
  const room = `xss-${RUN}`;
  const evil = '<img src=x onerror=alert(1)>';
  const ctxs = [];
  try {
    const pages = [];
    for (const t of TRANSPORTS) {
      const ctx = await laptop();
      ctxs.push(ctx);
      pages.push(await student(ctx, { name: `<b>${t}</b>`, room, transport: t, viaForm: true }));
    }
    await send(pages[0], evil);
    for (const [i, page] of pages.entries()) {
      await received(page, evil);
      const html = await page.$eval('#messages', (e) => e.innerHTML);
      assert(!/<img/i.test(html), `${TRANSPORTS[i]} page created an <img> element: ${html}`);
      assert(await page.$('#messages img, #messages b') === null, `${TRANSPORTS[i]} page holds markup from the network`);
      const from = await page.$eval('#messages li:last-child .from', (e) => e.textContent);
      assert(from === '<b>short_poll</b>', `name shown as ${JSON.stringify(from)}`);
    }
    await pages[0].waitForTimeout(300); // an onerror would fire by now
    const dialogs = ctxs.flatMap((c) => c.dialogs);
    assert(dialogs.length === 0, `alert() ran: ${dialogs}`);
  } finally {
    for (const c of ctxs) await c.close();
  }
});

// 3. Seven tabs of one browser on SSE/long poll in one room: all load, all receive.
await check('seven tabs of one browser on long poll and SSE all load and receive', async () => {
  const ctx = await laptop();
  try {
    const pages = [];
    for (let i = 0; i < 7; i++) {
      pages.push(await student(ctx, { name: `tab${i}`, room: `tabs-${RUN}`, transport: i % 2 ? 'long_poll' : 'sse' }));
    }
    // The census settles within a couple of heartbeats: four hold a connection, three fall back.
    await pages[6].waitForFunction(() => document.querySelector('#status').dataset.state === 'fallback', null, { timeout: WAIT });
    const states = await Promise.all(pages.map((p) => p.$eval('#status', (e) => e.dataset.state)));
    assert(states.filter((s) => s === 'live').length <= 4, `more than four tabs hold a connection: ${states}`);
    const body = `to all tabs ${Date.now()}`;
    await send(pages[3], body);
    for (const p of pages) await received(p, body);
    const census = await pages[0].$eval('#census', (e) => e.textContent);
    assert(census.includes('7 tabs'), `census says: ${census}`);
  } finally {
    await ctx.close();
  }
});

// 4. A hidden tab gives its held-open connection back and misses nothing when shown again.
//    Headless pages are always visible, so the test overrides document.visibilityState.
async function setVisible(page, visible) {
  await page.evaluate((v) => {
    Object.defineProperty(document, 'visibilityState', { value: v ? 'visible' : 'hidden', configurable: true });
    document.dispatchEvent(new Event('visibilitychange'));
  }, visible);
}

for (const transport of ['long_poll', 'sse']) {
  await check(`a hidden ${transport} tab pauses and catches up when shown again`, async () => {
    const room = `hide-${transport}-${RUN}`;
    const [a, b] = [await laptop(), await laptop()];
    try {
      const hider = await student(a, { name: 'hider', room, transport });
      const talker = await student(b, { name: 'talker', room, transport: 'websocket' });
      await setVisible(hider, false);
      await hider.waitForSelector('#status[data-state=paused]', { timeout: WAIT });
      await send(talker, 'said while you were away');
      await received(talker, 'said while you were away');
      await hider.waitForTimeout(700);
      const early = await hider.$$eval('#messages .body', (els) => els.map((e) => e.textContent));
      assert(!early.includes('said while you were away'), 'a paused tab still received');
      await setVisible(hider, true);
      await received(hider, 'said while you were away');
      // The counters table is redrawn on the next animation frame, after the message shows.
      await hider.waitForFunction((t) => parseInt(document.querySelector(`#counters tr[data-transport=${t}] .received`).textContent, 10) >= 1,
        transport, { timeout: WAIT }).catch(() => {});
      const rx = await counters(hider, transport);
      assert(rx.received === 1, `expected exactly one message after catching up, counted ${rx.received}`);
    } finally {
      await a.close();
      await b.close();
    }
  });
}

// 5. The dashboard counts students per transport and draws the flash delays.
await check('dashboard shows clients per transport and flash delays; a student switches transports without loss', async () => {
  const room = `class-${RUN}`;
  const plan = { short_poll: 1, long_poll: 1, sse: 2, websocket: 1 };
  const teacher = await laptop({ width: 1280, height: 720 }); // a common projector
  const ctxs = [];
  try {
    const dash = await teacher.newPage();
    watchConsole(dash, teacher, 'dashboard');
    await dash.goto(`${base}/dashboard?token=${teacherToken}`);
    await dash.waitForSelector('#status[data-state=live]', { timeout: WAIT });
    const pages = [];
    for (const [t, n] of Object.entries(plan)) {
      for (let i = 0; i < n; i++) {
        const ctx = await laptop();
        ctxs.push(ctx);
        const page = await student(ctx, { name: `${t}-${i}`, room, transport: t });
        await send(page, `${t}-${i} is here`);
        pages.push(page);
      }
    }
    await dash.waitForFunction((plan) => Object.entries(plan).every(([t, n]) =>
      document.querySelector(`.card[data-transport=${t}] .clients`).textContent === String(n)), plan, { timeout: WAIT });
    await dash.fill('#flash-text', 'Look up! <script>alert(2)</script>');
    await dash.click('#flash-button');
    for (const page of pages) {
      await page.waitForSelector('#flash-banner:not([hidden])', { timeout: WAIT });
      const banner = await page.$eval('#flash-banner', (e) => e.textContent);
      assert(banner.includes('<script>alert(2)</script>') && /arrived [\d.]+ ms/.test(banner), `banner: ${banner}`);
    }
    await dash.waitForFunction((plan) => Object.entries(plan).every(([t, n]) => {
      const s = document.querySelector(`#delays .summary-${t}`);
      return s && s.textContent.startsWith(`${n} ×`);
    }), plan, { timeout: WAIT });
    const dots = await dash.$$eval('#delays circle[r="6"]', (c) => c.length); // this flash's dots
    assert(dots === 5, `expected 5 delay dots, got ${dots}`);
    // Let the sparklines gather a few seconds of rates, then take the projector's picture.
    await dash.waitForTimeout(3000);
    await dash.screenshot({ path: join(shotDir, 'dashboard.png'), fullPage: true });
    const cut = await cutOff(dash);
    assert(cut.length === 0, `at 1280x720 the dashboard cuts off: ${cut.join('; ')}`);
    // A student switches through every transport while another keeps talking: each message
    // arrives once, counted under the transport in use when it came.
    const [switcher, talker] = [pages[2], pages[0]];
    for (const t of ['short_poll', 'websocket', 'long_poll', 'sse']) {
      await switcher.check(`input[name=transport][value=${t}]`);
      await switcher.waitForSelector(`#counters tr.current[data-transport=${t}]`, { timeout: WAIT });
      const before = (await counters(switcher, t)).received;
      await send(talker, `now over ${t}`);
      await received(switcher, `now over ${t}`);
      await switcher.waitForTimeout(t === 'short_poll' ? 2000 : 300); // let short polling show its empties
      const after = (await counters(switcher, t)).received;
      assert(after === before + 1, `${t}: received went from ${before} to ${after}`);
    }
    const dups = await switcher.$$eval('#counters .received', (cells) => cells.map((c) => c.textContent).join(' '));
    assert(!dups.includes('dup') && !dups.includes('lost'), `duplicates or losses after switching: ${dups}`);
    // The student page as a student sees it: the flash, four transports' costs, the traffic log.
    await switcher.screenshot({ path: join(shotDir, 'live.png'), fullPage: true });
    const errors = [...teacher.errors, ...ctxs.flatMap((c) => c.errors)];
    assert(errors.length === 0, `page errors: ${errors}`);
    assert(ctxs.flatMap((c) => c.dialogs).length === 0, 'a flash text ran as script');
  } finally {
    for (const c of ctxs) await c.close();
    await teacher.close();
  }
});

// 7. The three broadcast modes, sent over a WebSocket frame and over an HTTP POST: everyone,
//    everyone but the sender, one student; every page says which mode a message came with.
await check('broadcast modes: everyone, everyone but me, one student, shown on each page', async () => {
  const room = `modes-${RUN}`;
  const ctxs = [await laptop(), await laptop(), await laptop()];
  try {
    const ann = await student(ctxs[0], { name: 'ann', room, transport: 'websocket' });
    const bob = await student(ctxs[1], { name: 'bob', room, transport: 'sse' });
    const cy = await student(ctxs[2], { name: 'cy', room, transport: 'short_poll' });
    const all = [ann, bob, cy];
    for (const [sender, via] of [[ann, 'ws'], [bob, 'http']]) {
      const everyone = `everyone ${via}`;
      await send(sender, everyone);
      for (const p of all) await received(p, everyone);
      const meta = await metaOf(cy, everyone);
      assert(meta.includes('to everyone ·'), `cy shows ${meta}`);
      const others = `all but me ${via}`;
      await send(sender, others, { mode: 'others' });
      for (const p of all.filter((p) => p !== sender)) await received(p, others);
      const direct = `just cy ${via}`;
      await send(sender, direct, { mode: 'direct', to: 'cy' });
      await received(cy, direct);
      assert((await metaOf(cy, direct)).includes('to one student'), `cy shows ${await metaOf(cy, direct)}`);
      assert((await metaOf(cy, others)).includes('to everyone but the sender'), `cy shows ${await metaOf(cy, others)}`);
      // A last message to everyone, after which the left-out pages must not have the others.
      const last = `done ${via}`;
      await send(sender, last);
      for (const p of all) await received(p, last);
      await cy.waitForTimeout(1200); // two short polls
      assert(!(await bodies(sender)).includes(others), `${via}: the sender received its own "everyone but me"`);
      for (const p of all.filter((p) => p !== cy)) {
        assert(!(await bodies(p)).includes(direct), `${via}: a page other than cy's received the direct message`);
      }
    }
    const errors = ctxs.flatMap((c) => c.errors);
    assert(errors.length === 0, `page errors: ${errors}`);
  } finally {
    for (const c of ctxs) await c.close();
  }
});

// 6. The dashboard's QR code, decoded here (jsQR on the pixels the browser drew), is the join
//    URL in large type, which is the server's own address (a loopback server shows its loopback
//    URL and says students cannot reach it).
await check('dashboard QR code decodes to the join URL shown in large type', async () => {
  const teacher = await laptop();
  try {
    const dash = await teacher.newPage();
    watchConsole(dash, teacher, 'dashboard');
    await dash.goto(`${base}/dashboard?token=${teacherToken}`);
    await dash.waitForFunction(() => document.querySelector('#join-url').textContent.startsWith('http'), null, { timeout: WAIT });
    // Evaluated over the DevTools protocol, which the page's CSP (own scripts only) allows.
    await dash.evaluate(readFileSync('node_modules/jsqr/dist/jsQR.js', 'utf8') + ';0');
    const decoded = await dash.evaluate(async () => {
      const img = document.querySelector('#join-qr');
      await img.decode();
      const size = 400;
      const canvas = Object.assign(document.createElement('canvas'), { width: size, height: size });
      const g = canvas.getContext('2d');
      g.fillStyle = '#fff';
      g.fillRect(0, 0, size, size);
      g.drawImage(img, 0, 0, size, size);
      const code = jsQR(g.getImageData(0, 0, size, size).data, size, size);
      return code ? code.data : null;
    });
    const shown = await dash.$eval('#join-url', (e) => e.textContent);
    assert(decoded === shown, `QR code says ${JSON.stringify(decoded)}, the page shows ${JSON.stringify(shown)}`);
    assert(shown === `${base}/`, `a server on ${base} should be joined at ${base}/, the page shows ${shown}`);
    const fix = await dash.$eval('#join-fix', (e) => (e.hidden ? '' : e.textContent));
    assert(fix.includes('students cannot reach'), `a loopback server should say students cannot reach it: ${JSON.stringify(fix)}`);
    assert(teacher.errors.length === 0, `console errors: ${teacher.errors}`);
  } finally {
    await teacher.close();
  }
});

await browser.close();
console.log(failed() ? `${failed()} check(s) failed` : 'all browser checks passed');
process.exit(Math.min(failed(), 100));
