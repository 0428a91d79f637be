#!/usr/bin/env node
// The deskhand widget in real headless Chromium (Debian's `chromium`, driven
// by playwright-core; the test never downloads a browser).
//
//   node widget.test.mjs <deskhand_url> <agent_key> <artifacts_dir> [<host_page_url>]
//   node widget.test.mjs --screenshot <deskhand_url> <out.png>
//
// <host_page_url> is a page on another origin that embeds the widget under a
// hostile stylesheet (tests/browser/widget_browser.rs serves it, with `/strict` for a
// strict Content-Security-Policy); without it the demo page at
// <deskhand_url>/ is the host and the cross-origin checks are not run.
// Steps run in order (later ones build on earlier state) and stop at the
// first failure, saving a screenshot of every open page into <artifacts_dir>.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.DESKHAND_CHROMIUM || '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const WAIT = 20_000; // for an answer: the worker answers in well under a second
const TOTAL = 240_000;

const QUESTION = 'How do I turn on two-factor authentication?';
const HUMAN = 'I want to talk to a human';
const AGENT_TEXT = 'Hi, this is Dana from support. I can help with that.';
const MARKUP = [
  '<img src=x onerror="window.__pwned=\'customer-img\'">',
  '<script>window.__pwned=\'customer-script\'</script>',
];
const AGENT_MARKUP = '<img src=x onerror="window.__pwned=\'agent\'"><b>not bold</b>';

function usage() {
  console.error('usage: node widget.test.mjs <deskhand_url> <agent_key> <artifacts_dir> [<host_page_url>]\n' +
    '       node widget.test.mjs --screenshot <deskhand_url> <out.png>');
  process.exit(2);
}

function launch() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS, timeout: 60_000 });
}

// ---- helpers over the widget's (open) shadow root --------------------------

/** Every message bubble: [{cls, text, who}], in order. */
const bubbles = (page) => page.evaluate(() => {
  const root = document.querySelector('deskhand-chat').shadowRoot;
  return [...root.querySelectorAll('.log .m')].map((el) => ({
    cls: el.className,
    text: [...el.childNodes].find((n) => n.nodeType === Node.TEXT_NODE)?.textContent ?? '',
    who: el.querySelector('.who')?.textContent ?? null,
  }));
});

/** Waits until a bubble with class `cls` contains `text`; returns its locator. */
async function bubble(page, cls, text, timeout = WAIT) {
  const loc = page.locator(`deskhand-chat .log .m.${cls}`).filter({ hasText: text }).last();
  await loc.waitFor({ state: 'visible', timeout });
  return loc;
}

const style = (loc, prop) => loc.evaluate((el, p) => getComputedStyle(el)[p], prop);
const shadowActive = (page) => page.evaluate(() => document.querySelector('deskhand-chat').shadowRoot.activeElement?.tagName ?? null);

/** The widget's saved conversation: {id, token}. */
async function savedConversation(page) {
  const saved = await page.evaluate(() => Object.entries(localStorage).filter(([k]) => k.startsWith('deskhand:')));
  if (saved.length !== 1) return null;
  return JSON.parse(saved[0][1]).conv ?? null;
}

async function send(page, text) {
  const input = page.locator('deskhand-chat textarea');
  await input.click();
  await input.fill(text);
  await page.keyboard.press('Enter');
}

function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}
function equal(actual, expected, msg) {
  const a = JSON.stringify(actual), e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${msg}: expected ${e}, got ${a}`);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, fn, timeout = WAIT) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

// ---- the run ---------------------------------------------------------------

async function main(base, agentKey, artifacts, hostUrl) {
  mkdirSync(artifacts, { recursive: true });
  const watchdog = setTimeout(() => { console.log(`not ok - whole run exceeded ${TOTAL / 1000} s`); process.exit(1); }, TOTAL);
  const host = hostUrl ? hostUrl.replace(/\/$/, '') : null;
  const browser = await launch();
  console.log(`# ${browser.version()} at ${CHROMIUM}; deskhand ${base}; host page ${host ?? base + '/ (demo)'}`);
  const pages = new Map(); // name → page, for failure screenshots
  const consoles = new Map(); // name → every console line
  const problems = []; // unexpected console errors and page errors
  const expected = [/ERR_INTERNET_DISCONNECTED/, /ERR_CONNECTION_REFUSED/, /ERR_FAILED/, /Failed to fetch/, /status of 401/];

  async function open(name, url, options = {}) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...options });
    const page = await context.newPage();
    consoles.set(name, []);
    page.on('console', (m) => {
      consoles.get(name).push(m.text());
      const where = m.location().url || '';
      if (m.type() === 'error' && !expected.some((re) => re.test(m.text())) && !where.endsWith('/favicon.ico')) {
        problems.push(`${name}: console: ${m.text()} (${where})`);
      }
    });
    page.on('pageerror', (e) => problems.push(`${name}: page error: ${e.message}`));
    pages.set(name, page);
    await page.goto(url);
    await page.locator('deskhand-chat .launch').waitFor({ state: 'visible', timeout: WAIT });
    return page;
  }

  async function agent(id, action, body) {
    const res = await fetch(`${base}/v1/conversations/${id}/${action}`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${agentKey}`, 'Content-Type': 'application/json' },
      body: body ? JSON.stringify(body) : undefined,
    });
    const json = await res.json();
    assert(res.ok, `agent ${action}: ${res.status} ${JSON.stringify(json)}`);
    return json;
  }

  async function customerMessages(conv) {
    const res = await fetch(`${base}/v1/conversations/${conv.id}/messages`, { headers: { Authorization: `Bearer ${conv.token}` } });
    assert(res.ok, `poll ${res.status}`);
    return (await res.json()).messages.filter((m) => m.role === 'customer');
  }

  let passed = 0, failed = 0;
  const steps = [];
  const step = (name, fn) => steps.push([name, fn]);
  const home = host ? `${host}/` : `${base}/`;
  let a, b, convA, convB;

  step('the widget loads in a shadow root; host CSS does not leak in, widget CSS does not leak out', async () => {
    a = await open('a', home);
    assert(await a.evaluate(() => document.querySelector('deskhand-chat').shadowRoot?.mode === 'open'), 'open shadow root');
    const launcher = a.locator('deskhand-chat .launch');
    equal(await style(launcher, 'color'), 'rgb(255, 255, 255)', 'launcher text colour');
    equal(await style(launcher, 'fontSize'), '14px', 'launcher font size');
    equal(await style(launcher, 'textTransform'), 'none', 'launcher text-transform');
    equal(await style(launcher, 'backgroundColor'), 'rgb(29, 78, 216)', 'launcher background');
    equal(await style(a.locator('deskhand-chat'), 'opacity'), '1', 'host element opacity');
    // Inherited properties are the way in: a plain text element shows none of the host's.
    const hello = a.locator('deskhand-chat .hello');
    equal(await style(hello, 'color'), 'rgb(31, 35, 40)', 'text colour');
    equal(await style(hello, 'fontSize'), '13px', 'text size');
    equal(await style(hello, 'textTransform'), 'none', 'text-transform');
    equal(await style(hello, 'letterSpacing'), 'normal', 'letter-spacing');
    assert(!/^serif/.test(await style(hello, 'fontFamily')), 'font family');
    if (host) {
      // The host page's own elements keep the host's styles, not the widget's.
      for (const id of ['#probe', '#probe-button']) {
        equal(await style(a.locator(id), 'color'), 'rgb(255, 0, 0)', `${id} colour`);
        equal(await style(a.locator(id), 'borderTopLeftRadius'), '0px', `${id} radius`);
        equal(await style(a.locator(id), 'backgroundColor'), 'rgb(255, 255, 0)', `${id} background`);
      }
    }
  });

  step('keyboard: Enter on the launcher opens it, Enter sends; the answer has a source link', async () => {
    await a.locator('deskhand-chat .launch').focus();
    await a.keyboard.press('Enter');
    await a.locator('deskhand-chat .panel').waitFor({ state: 'visible' });
    equal(await shadowActive(a), 'TEXTAREA', 'focus moves to the message box');
    const log = a.locator('deskhand-chat .log');
    equal(await log.getAttribute('aria-live'), 'polite', 'aria-live on the message log');
    equal(await log.getAttribute('role'), 'log', 'role of the message log');
    // Record whether the pending indicator ever shows (the answer may be fast).
    await a.evaluate(() => {
      const t = document.querySelector('deskhand-chat').shadowRoot.querySelector('.typing');
      window.__typingSeen = false;
      new MutationObserver(() => { if (!t.hidden) window.__typingSeen = true; }).observe(t, { attributes: true });
    });
    await a.keyboard.type(QUESTION);
    await a.keyboard.press('Enter');
    await bubble(a, 'customer', QUESTION, 2_000);
    equal(await a.locator('deskhand-chat textarea').inputValue(), '', 'input cleared after sending');
    const answer = await bubble(a, 'assistant', 'Settings');
    equal(await answer.locator('.who').textContent(), 'Assistant (bot)', 'bot label');
    const link = answer.locator('a').first();
    assert((await link.getAttribute('href')).startsWith('https://'), 'source link is https');
    equal(await link.getAttribute('rel'), 'noopener noreferrer', 'source link rel');
    equal(await link.getAttribute('target'), '_blank', 'source link target');
    assert((await link.textContent()).trim().length > 0, 'source link has a title');
    assert(await a.evaluate(() => window.__typingSeen), 'pending indicator shown while the answer was awaited');
    await a.locator('deskhand-chat .typing').waitFor({ state: 'hidden' });
    equal(await shadowActive(a), 'TEXTAREA', 'focus stays in the message box');
    convA = await savedConversation(a);
    assert(convA?.id && convA?.token, 'conversation id and token saved in localStorage');
  });

  step('asking for a human shows the holding message', async () => {
    await a.keyboard.type(HUMAN);
    await a.keyboard.press('Enter');
    await bubble(a, 'system', 'a person will follow up');
    await until('the escalated status line', async () => (await a.locator('deskhand-chat .state').textContent()).includes('A person'));
    await a.locator('deskhand-chat .typing').waitFor({ state: 'hidden' });
  });

  step('an agent reply sent through the API appears, marked as from a person', async () => {
    const r = await agent(convA.id, 'agent-replies', { text: AGENT_TEXT, agent: 'Dana' });
    equal(r.status, 'escalated', 'status after the agent reply');
    const reply = await bubble(a, 'agent', AGENT_TEXT);
    equal(await reply.locator('.who').textContent(), 'Support agent', 'agent label');
    const bot = a.locator('deskhand-chat .log .m.assistant').first();
    assert(await style(reply, 'backgroundColor') !== await style(bot, 'backgroundColor'), 'agent and bot bubbles look different');
    assert(await style(reply, 'borderLeftWidth') !== await style(bot, 'borderLeftWidth'), 'agent bubble has its own border');
  });

  step('message text containing <script> or <img onerror> shows as text', async () => {
    for (const text of MARKUP) await send(a, text);
    await agent(convA.id, 'agent-replies', { text: AGENT_MARKUP });
    for (const text of MARKUP) await bubble(a, 'customer', text, 5_000);
    await bubble(a, 'agent', 'not bold');
    await until('messages confirmed by the server', async () => (await bubbles(a)).every((m) => !/sending|failed/.test(m.cls)));
    await sleep(500); // an injected <img> would have fired onerror by now
    const all = await bubbles(a);
    for (const text of [...MARKUP, AGENT_MARKUP]) assert(all.some((m) => m.text === text), `verbatim text ${text}`);
    equal(await a.evaluate(() => document.querySelector('deskhand-chat').shadowRoot.querySelectorAll('.log img, .log script, .log b').length), 0, 'elements created from message text');
    equal(await a.evaluate(() => window.__pwned ?? null), null, 'script ran from message text');
  });

  step('a reload restores the conversation', async () => {
    const before = await bubbles(a);
    await a.reload();
    await a.locator('deskhand-chat .panel').waitFor({ state: 'visible' }); // it was open: it stays open
    await until('history restored', async () => (await bubbles(a)).length === before.length);
    equal(await bubbles(a), before, 'messages after reload');
    await a.locator('deskhand-chat .log .m.assistant a[href^="https://"]').first().waitFor();
    equal(await savedConversation(a), convA, 'same conversation');
  });

  step('a lost response and an outage show an error with Retry; the message is sent once', async () => {
    const text = 'Are you still there?';
    let posts = 0;
    await a.route('**/v1/conversations/*/messages*', async (route) => {
      if (route.request().method() === 'POST' && posts++ === 0) {
        await route.fetch(); // the server gets it, the widget never hears back
      }
      await route.abort('connectionrefused');
    });
    await send(a, text);
    await a.locator('deskhand-chat .alert').waitFor({ state: 'visible', timeout: 5_000 });
    assert(/reach support|offline/i.test(await a.locator('deskhand-chat .alert').textContent()), 'error text');
    await bubble(a, 'failed', text);
    await a.unroute('**/v1/conversations/*/messages*');
    // Not click(): an automatic retry may already have hidden the alert.
    await a.locator('deskhand-chat .alert button').dispatchEvent('click');
    await a.locator('deskhand-chat .alert').waitFor({ state: 'hidden', timeout: 5_000 });
    await until('the message confirmed', async () => (await bubbles(a)).filter((m) => m.text === text && m.cls === 'm customer').length === 1);
    const stored = (await customerMessages(convA)).filter((m) => m.text === text);
    equal(stored.length, 1, 'copies of the retried message on the server');
    await sleep(1_500); // a poll or two later it is still shown once
    equal((await bubbles(a)).filter((m) => m.text === text).length, 1, 'copies shown');
  });

  step('offline: the widget says so, and recovers when back online', async () => {
    await a.context().setOffline(true);
    await a.locator('deskhand-chat .alert').waitFor({ state: 'visible', timeout: 20_000 });
    assert(/offline/i.test(await a.locator('deskhand-chat .alert').textContent()), 'offline text');
    await a.context().setOffline(false);
    await a.locator('deskhand-chat .alert').waitFor({ state: 'hidden', timeout: 20_000 });
  });

  step('two browser contexts cannot see each other\'s conversations', async () => {
    b = await open('b', home);
    equal(await savedConversation(b), null, 'no conversation in a fresh context');
    await b.locator('deskhand-chat .launch').click();
    await sleep(1_000);
    equal((await bubbles(b)).map((m) => m.cls), ['m hello'], 'a fresh context shows only the greeting');
    await send(b, QUESTION);
    await bubble(b, 'assistant', 'Settings');
    convB = await savedConversation(b);
    assert(convB && convB.id !== convA.id, 'a conversation of its own');
    const texts = (await bubbles(b)).map((m) => m.text);
    for (const t of [HUMAN, AGENT_TEXT]) assert(!texts.includes(t), `B sees A's ${t}`);
    // B's token does not open A's conversation, even from the browser.
    const status = await b.evaluate(async ([base, id, token]) => (await fetch(`${base}/v1/conversations/${id}/messages`, { headers: { Authorization: `Bearer ${token}` } })).status, [base, convA.id, convB.token]);
    equal(status, 401, "B's token on A's conversation");
  });

  step('polling: quick after sending, slower when idle, paused while hidden', async () => {
    const polls = [];
    const onRequest = (r) => { if (r.method() === 'GET' && r.url().includes('/messages')) polls.push(Date.now()); };
    b.on('request', onRequest);
    const t0 = Date.now();
    await send(b, 'How do I export my data?');
    await sleep(17_000);
    const gaps = polls.slice(1).map((t, i) => t - polls[i]);
    const early = polls.slice(1).map((t, i) => [t - t0, gaps[i]]).filter(([at]) => at < 8_000).map(([, g]) => g);
    assert(early.length >= 5 && Math.max(...early) <= 1_500, `quick polls after sending: ${early}`);
    assert(Math.max(...gaps) >= 2_400, `backed off when idle: ${gaps}`);
    // Hidden: no polls at all. Visible again: one at once.
    await b.evaluate(() => {
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
      document.dispatchEvent(new Event('visibilitychange'));
    });
    polls.length = 0;
    await sleep(4_000);
    equal(polls.length, 0, 'polls while hidden');
    const shown = Date.now();
    await b.evaluate(() => {
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => false });
      document.dispatchEvent(new Event('visibilitychange'));
    });
    await until('a poll on becoming visible', async () => polls.length > 0, 2_000);
    assert(polls[0] - shown < 1_000, 'immediate poll when visible');
    b.off('request', onRequest);
  });

  step('an agent closing the conversation shows in the widget', async () => {
    await agent(convB.id, 'close');
    await b.evaluate(() => document.dispatchEvent(new Event('visibilitychange'))); // poll now
    await until('the closed status line', async () => (await b.locator('deskhand-chat .state').textContent()).includes('closed'), 5_000);
  });

  step('phone-sized viewport: the open widget fills the screen and works by touch', async () => {
    const p = await open('phone', home, { viewport: { width: 375, height: 667 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
    const lb = await p.locator('deskhand-chat .launch').boundingBox();
    assert(lb.x >= 0 && lb.y >= 0 && lb.x + lb.width <= 375 && lb.y + lb.height <= 667, `launcher inside the screen: ${JSON.stringify(lb)}`);
    await p.locator('deskhand-chat .launch').tap();
    const panel = p.locator('deskhand-chat .panel');
    await panel.waitFor({ state: 'visible' });
    const box = await panel.boundingBox();
    equal([box.x, box.y, box.width, box.height], [0, 0, 375, 667], 'panel box');
    for (const sel of ['textarea', '.send', '.x']) {
      const bb = await p.locator(`deskhand-chat ${sel}`).boundingBox();
      assert(bb && bb.x >= 0 && bb.x + bb.width <= 375 && bb.y + bb.height <= 667 && bb.height >= 24, `${sel} inside the screen and tappable: ${JSON.stringify(bb)}`);
    }
    equal(await style(p.locator('deskhand-chat textarea'), 'fontSize'), '16px', 'no zoom-on-focus font size');
    await p.locator('deskhand-chat textarea').tap();
    await p.keyboard.type(QUESTION);
    await p.locator('deskhand-chat .send').tap();
    const answer = await bubble(p, 'assistant', 'Settings');
    const ab = await answer.boundingBox();
    assert(ab.x >= 0 && ab.x + ab.width <= 375, 'answer fits the width');
    assert(await panel.evaluate((el) => el.scrollWidth <= el.clientWidth), 'no sideways scrolling');
    await p.locator('deskhand-chat .x').tap();
    await p.locator('deskhand-chat .launch').waitFor({ state: 'visible' });
  });

  if (host) {
    step('a host page with a strict Content-Security-Policy: the widget still works', async () => {
      const s = await open('strict', `${host}/strict`);
      const csp = () => consoles.get('strict').filter((t) => /Content Security Policy/i.test(t));
      equal(await style(s.locator('deskhand-chat .launch'), 'backgroundColor'), 'rgb(29, 78, 216)', 'styles applied');
      await s.locator('deskhand-chat .launch').click();
      await send(s, QUESTION);
      await bubble(s, 'assistant', 'Settings');
      equal(csp(), [], 'CSP violations');
    });
  }

  step('the demo page at / embeds the widget and shows the embed snippet', async () => {
    const d = await open('demo', `${base}/`);
    const snippet = await d.locator('pre').textContent();
    assert(snippet.includes(`<script src="${base}/widget.js" data-deskhand-url="${base}"`), `snippet: ${snippet}`);
    await d.locator('deskhand-chat .launch').click();
    equal(await d.locator('deskhand-chat h2').textContent(), 'Tallybird help', 'data-title');
  });

  step('no unexpected errors in any page', async () => {
    equal(problems, [], 'console and page errors');
  });

  for (const [name, fn] of steps) {
    const t = Date.now();
    try {
      await fn();
      passed++;
      console.log(`ok - ${name} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
    } catch (e) {
      failed++;
      console.log(`not ok - ${name}\n${String(e.stack || e).replace(/^/gm, '  # ')}`);
      await evidence(name, pages, artifacts);
      break;
    }
  }
  const skipped = steps.length - passed - failed;
  await browser.close();
  clearTimeout(watchdog);
  console.log(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
  process.exit(failed ? 1 : 0);
}

/** A screenshot and the widget's text of every open page. */
async function evidence(step, pages, dir) {
  const slug = step.replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '').slice(0, 60).toLowerCase();
  for (const [name, page] of pages) {
    if (page.isClosed()) continue;
    const file = join(dir, `${slug}--${name}`);
    try {
      await page.screenshot({ path: `${file}.png`, timeout: 10_000 });
      const dump = await page.evaluate(() => document.querySelector('deskhand-chat')?.shadowRoot?.textContent ?? '(no widget)');
      writeFileSync(`${file}.txt`, `${page.url()}\n\n${dump}\n`);
      console.log(`  # saved ${file}.png`);
    } catch (e) {
      console.log(`  # could not save evidence of ${name}: ${e.message}`);
    }
  }
}

/** docs/widget.png: the demo page with an answered question. */
async function screenshot(base, out) {
  const browser = await launch();
  try {
    const page = await browser.newPage({ viewport: { width: 1040, height: 680 } });
    await page.goto(`${base}/`);
    await page.locator('deskhand-chat .launch').click();
    await send(page, QUESTION);
    await bubble(page, 'assistant', 'Settings');
    await page.locator('deskhand-chat .typing').waitFor({ state: 'hidden' });
    await page.locator('deskhand-chat textarea').fill('');
    await page.mouse.move(0, 0);
    await page.evaluate(() => document.activeElement?.blur());
    await page.screenshot({ path: out });
    console.log(`saved ${out}`);
  } finally {
    await browser.close();
  }
}

// Last, so that every helper above is initialized.
const args = process.argv.slice(2);
if (args[0] === '--screenshot') {
  if (args.length !== 3) usage();
  await screenshot(args[1].replace(/\/$/, ''), args[2]);
} else {
  if (args.length < 3 || args.length > 4) usage();
  await main(args[0].replace(/\/$/, ''), args[1], args[2], args[3]);
}
