// Helpers the browser checks share (live.mjs, experiment.mjs): a headless Chromium (Debian's
// /usr/bin/chromium, or $CHROMIUM) driven by playwright-core, checks that print "ok <name>" or
// "FAIL <name>: <why>", separate browser contexts standing for separate laptops, console-error
// collection, the projector cut-off check, and opening a student page joined to a room.
import { chromium } from 'playwright-core';

export const TRANSPORTS = ['short_poll', 'long_poll', 'sse', 'websocket'];
export const WAIT = 30000; // ms: how long to wait for something that must happen; generous because CI
// machines are shared and have two cores (15 s once ran out under load). Not a speed check.

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** `check(name, body)` runs one check and prints its outcome; `failed()` counts the failures. */
export function checker() {
  let failures = 0;
  async function check(name, body) {
    const started = Date.now();
    try {
      await body();
      console.log(`ok ${name} (${Date.now() - started} ms)`);
    } catch (e) {
      failures++;
      console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
    }
  }
  return { check, failed: () => failures };
}

export function assert(cond, message) {
  if (!cond) throw new Error(message);
}

/** A fresh "laptop" of `browser`: its own profile, cookies, storage and connection pool. */
export async function newLaptop(browser, viewport = { width: 1280, height: 860 }) {
  const ctx = await browser.newContext({ viewport });
  ctx.dialogs = [];
  ctx.errors = [];
  return ctx;
}

/** Collects `page`'s uncaught errors and console errors (a 404 for a favicon is one) into
 *  `ctx.errors`, which each check asserts empty. */
export function watchConsole(page, ctx, name) {
  page.on('pageerror', (e) => ctx.errors.push(`${name}: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') ctx.errors.push(`${name} console: ${m.text()}`); });
  // The console names no URL for a failed request; this says which request and what the server
  // answered (every error of ours carries a JSON reason).
  page.on('response', async (r) => {
    if (r.status() < 400) return;
    const body = await r.text().catch(() => '');
    ctx.errors.push(`${name} ${r.status()} ${r.request().method()} ${r.url()}: ${body.slice(0, 200)}`);
  });
}

/** What on `page` is cut off: the page scrolls, or an element's box (zero-sized ones aside)
 *  reaches outside the viewport or outside an ancestor that clips its overflow. */
export function cutOff(page) {
  return page.evaluate(() => {
    const W = innerWidth, H = innerHeight, out = [];
    const doc = document.documentElement;
    if (doc.scrollWidth > W || doc.scrollHeight > H) out.push(`the page scrolls: ${doc.scrollWidth}x${doc.scrollHeight} in ${W}x${H}`);
    const name = (e) => `${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}${e.getAttribute('class') ? '.' + e.getAttribute('class').split(' ').join('.') : ''}`;
    const outside = (r, b) => r.left < b.left - 1 || r.top < b.top - 1 || r.right > b.right + 1 || r.bottom > b.bottom + 1;
    for (const e of document.body.querySelectorAll('*')) {
      const r = e.getBoundingClientRect();
      if (r.width === 0 || r.height === 0) continue;
      if (outside(r, { left: 0, top: 0, right: W, bottom: H })) { out.push(`${name(e)} at ${Math.round(r.left)},${Math.round(r.top)}-${Math.round(r.right)},${Math.round(r.bottom)}`); continue; }
      for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {
        if (getComputedStyle(a).overflow === 'visible') continue;
        if (outside(r, a.getBoundingClientRect())) out.push(`${name(e)} clipped by ${name(a)}`);
        break;
      }
    }
    return out;
  });
}

/** Opens the student page in `ctx`, joined to `room` over `transport`, and waits until live. */
export async function openStudent(base, ctx, { name, room, transport, viaForm = false }) {
  const page = await ctx.newPage();
  page.on('dialog', (d) => { ctx.dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  watchConsole(page, ctx, name);
  if (viaForm) {
    await page.goto(`${base}/`);
    await page.fill('#name', name);
    await page.fill('#room', room);
    await page.check(`input[name=transport][value=${transport}]`);
    await page.click('#connect');
  } else {
    const q = new URLSearchParams({ name, room, transport, interval: '500', join: '1' });
    await page.goto(`${base}/?${q}`);
  }
  await page.waitForSelector('#status[data-state=live], #status[data-state=fallback]', { timeout: WAIT });
  return page;
}
