#!/usr/bin/env node
// The deskhand agent console in real headless Chromium (Debian's `chromium`,
// driven by playwright-core; nothing is downloaded).
//
//   node console.test.mjs <deskhand_url> <agent_key> <artifacts_dir>
//   node console.test.mjs --screenshot <deskhand_url> <agent_key> <out_dir>
//
// One customer chats in the widget on the demo page (<deskhand_url>/); one
// agent works the console at <deskhand_url>/agent. Steps run in order and
// stop at the first failure, saving a screenshot of every open page into
// <artifacts_dir>. --screenshot signs in to an already seeded server and
// writes console.png, console-phone.png and stats.png into <out_dir>.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.DESKHAND_CHROMIUM || '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const WAIT = 20_000;
const TOTAL = 240_000;

const MARKUP = '<img src=x onerror="window.__pwned=\'customer\'">';
const HUMAN = `I want to talk to a human ${MARKUP}`;
const REPLY = 'Hi, this is Dana from support <b>not bold</b>. Happy to help.';
const NOTE = 'Internal: customer is on the annual plan';

function usage() {
  console.error('usage: node console.test.mjs <deskhand_url> <agent_key> <artifacts_dir>\n' +
    '       node console.test.mjs --screenshot <deskhand_url> <agent_key> <out_dir>');
  process.exit(2);
}

const launch = () => chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS, timeout: 60_000 });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}
function equal(actual, expected, msg) {
  const a = JSON.stringify(actual), e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${msg}: expected ${e}, got ${a}`);
}
async function until(what, fn, timeout = WAIT) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function signIn(page, base, key, name) {
  await page.goto(`${base}/agent`);
  await page.locator('#key').waitFor({ state: 'visible', timeout: WAIT });
  await page.fill('#key', key);
  if (name) await page.fill('#name', name);
  await page.click('#signin-btn');
}

async function main(base, agentKey, artifacts) {
  mkdirSync(artifacts, { recursive: true });
  const watchdog = setTimeout(() => { console.log(`not ok - whole run exceeded ${TOTAL / 1000} s`); process.exit(1); }, TOTAL);
  const browser = await launch();
  console.log(`# ${browser.version()} at ${CHROMIUM}; deskhand ${base}`);
  const pages = new Map();
  const problems = [];
  const expected = [/status of 401/, /status of 403/, /Failed to fetch/];
  async function newPage(name, options = {}) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...options });
    const page = await context.newPage();
    page.on('console', (m) => {
      // The demo page (not the console) has no favicon.
      const where = m.location().url || '';
      if (m.type() === 'error' && !expected.some((re) => re.test(m.text())) && !where.endsWith('/favicon.ico')) {
        problems.push(`${name}: console: ${m.text()} (${where})`);
      }
    });
    page.on('pageerror', (e) => problems.push(`${name}: page error: ${e.message}`));
    pages.set(name, page);
    return page;
  }

  let agent, customer, conv;
  const steps = [];
  const step = (name, fn) => steps.push([name, fn]);

  step('a wrong key is refused and leaves nothing behind', async () => {
    agent = await newPage('agent');
    await signIn(agent, base, 'not-the-key-0123456789');
    await until('the refusal', async () => /refused/.test(await agent.textContent('#signin-error')));
    assert(await agent.isHidden('#app'), 'the console stays hidden');
    equal((await agent.context().cookies()).length, 0, 'no cookie for a wrong key');
  });

  step('sign in: an HttpOnly, Secure, SameSite=Strict cookie; nothing in storage', async () => {
    await agent.fill('#key', agentKey);
    await agent.fill('#name', 'Dana');
    await agent.press('#key', 'Enter');
    await agent.locator('#app').waitFor({ state: 'visible', timeout: WAIT });
    equal(await agent.textContent('#agent-name'), 'Dana', 'signed-in name');
    const [cookie] = await agent.context().cookies();
    assert(cookie && cookie.name === 'dh_agent', 'session cookie set');
    equal([cookie.httpOnly, cookie.secure, cookie.sameSite, cookie.path], [true, true, 'Strict', '/agent'], 'cookie flags');
    equal(await agent.evaluate(() => document.cookie), '', 'the script cannot read the cookie');
    equal(await agent.evaluate(() => localStorage.length + sessionStorage.length), 0, 'nothing in web storage');
    assert(!(await agent.content()).includes(agentKey), 'the key is not left in the page');
  });

  step('an escalated conversation appears in the queue', async () => {
    customer = await newPage('customer');
    await customer.goto(`${base}/`);
    await customer.locator('deskhand-chat .launch').click();
    const input = customer.locator('deskhand-chat textarea');
    await input.fill(HUMAN);
    await customer.keyboard.press('Enter');
    await customer.locator('deskhand-chat .log .m.system').first().waitFor({ state: 'visible', timeout: WAIT });
    conv = await customer.evaluate(() => {
      const [, v] = Object.entries(localStorage).find(([k]) => k.startsWith('deskhand:'));
      return JSON.parse(v).conv;
    });
    assert(conv && conv.id, 'the widget saved its conversation');
    const item = agent.locator(`#queue-list button.item[data-id="${conv.id}"]`);
    await item.waitFor({ state: 'visible', timeout: WAIT });
    assert(/asked for a human/.test(await item.textContent()), 'the reason is shown');
    assert(/widget/.test(await item.textContent()), 'the channel is shown');
  });

  step('keyboard: j opens it; the transcript shows markup as text', async () => {
    await agent.locator('body').click({ position: { x: 5, y: 200 } });
    await agent.evaluate(() => document.activeElement && document.activeElement.blur());
    // j moves to the first (newest) conversation, which is ours.
    await agent.keyboard.press('j');
    await agent.locator('#conv').waitFor({ state: 'visible', timeout: WAIT });
    const first = agent.locator('#transcript .m.customer').first();
    await first.waitFor({ timeout: WAIT });
    assert((await first.textContent()).includes(MARKUP), 'the customer text is shown literally');
    equal(await agent.evaluate(() => document.querySelectorAll('#transcript img').length), 0, 'no element made from text');
    equal(await agent.evaluate(() => window.__pwned ?? null), null, 'no script ran');
    assert(/asked for a human/.test(await agent.textContent('#conv-meta')), 'the escalation reason');
    assert(await agent.locator('#transcript .m.system').count() >= 1, 'the holding notice is shown');
  });

  step('r, type, Ctrl+Enter: the reply goes out and the widget shows it', async () => {
    await agent.keyboard.press('r');
    equal(await agent.evaluate(() => document.activeElement.id), 'reply', 'r focuses the reply box');
    await agent.keyboard.type(REPLY);
    await agent.keyboard.press('Control+Enter');
    await agent.locator('#transcript .m.agent').filter({ hasText: 'Dana from support' }).waitFor({ timeout: WAIT });
    equal(await agent.inputValue('#reply'), '', 'the box is cleared');
    await until('the status says how the reply travels', async () => /customer sees it in the chat/.test(await agent.textContent('#status')));
    const bubble = customer.locator('deskhand-chat .log .m.agent').filter({ hasText: 'Dana from support' });
    await bubble.waitFor({ state: 'visible', timeout: WAIT });
    assert((await bubble.textContent()).includes('<b>not bold</b>'), 'the agent text is shown literally');
    assert(/assigned to Dana/.test(await agent.textContent('#conv-meta')), 'replying assigned it');
  });

  step('an internal note shows in the console and never in the widget', async () => {
    await agent.fill('#reply', NOTE);
    await agent.click('#note-btn');
    await agent.locator('#transcript .m.note').filter({ hasText: NOTE }).waitFor({ timeout: WAIT });
    // Give the widget several polls to show it, were it a message.
    await sleep(4000);
    const text = await customer.evaluate(() => document.querySelector('deskhand-chat').shadowRoot.textContent);
    assert(!text.includes('annual plan'), 'the note reached the customer');
  });

  step('a request without the CSRF token is refused', async () => {
    const refused = await agent.evaluate(async (id) => {
      const r = await fetch(`/agent/api/conversations/${id}/close`, { method: 'POST', credentials: 'same-origin' });
      return [r.status, (await r.json()).error.code];
    }, conv.id);
    equal(refused, [403, 'csrf_failed'], 'no token');
    const forged = await agent.evaluate(async (id) => {
      const r = await fetch(`/agent/api/conversations/${id}/close`, { method: 'POST', headers: { 'X-CSRF-Token': 'forged' } });
      return r.status;
    }, conv.id);
    equal(forged, 403, 'a forged token');
    assert(/status: escalated/.test(await agent.textContent('#conv-meta')), 'still escalated');
  });

  step('e closes it: off the queue', async () => {
    await agent.evaluate(() => document.activeElement && document.activeElement.blur());
    await agent.keyboard.press('e');
    await until('closed', async () => /status: closed/.test(await agent.textContent('#conv-meta')));
    await agent.locator(`#queue-list button.item[data-id="${conv.id}"]`).waitFor({ state: 'detached', timeout: WAIT });
  });

  step('the closed conversation asks the customer for a 1-5 score', async () => {
    const four = customer.locator('deskhand-chat .csat button[data-score="4"]');
    await four.waitFor({ state: 'visible', timeout: WAIT });
    await four.click();
    await customer.locator('deskhand-chat .csat').filter({ hasText: 'Thank you' }).waitFor({ timeout: WAIT });
    equal(await four.getAttribute('aria-pressed'), 'true', 'the score is marked');
  });

  step('hand back to the bot: the bot answers the customer again', async () => {
    await agent.click('#handback-btn');
    await until('open', async () => /status: open/.test(await agent.textContent('#conv-meta')));
    await customer.locator('deskhand-chat textarea').fill('How do I export my data?');
    await customer.keyboard.press('Enter');
    await customer.locator('deskhand-chat .log .m.assistant').first().waitFor({ state: 'visible', timeout: WAIT });
  });

  step('a thumbs-down asks what was wrong, offers a person, and the console shows it', async () => {
    const answer = customer.locator('deskhand-chat .log .m.assistant').last();
    await answer.locator('button.down').click();
    const wrong = answer.locator('.why button[data-reason="wrong_answer"]');
    await wrong.waitFor({ state: 'visible', timeout: WAIT });
    assert(await answer.locator('.why button.person').isVisible(), 'a person is offered');
    await wrong.click();
    await until('the thanks', async () => /noted/.test(await answer.textContent()));
    await agent.reload();
    await agent.locator('#app').waitFor({ state: 'visible', timeout: WAIT });
    await agent.goto(`${base}/agent`);
    // Open it from the API's list of all its messages: it is no longer queued.
    const rated = await agent.evaluate(async (id) => {
      const r = await fetch(`/agent/api/conversations/${id}`);
      return (await r.json()).messages.filter((m) => m.rating).map((m) => [m.rating.rating, m.rating.reason]);
    }, conv.id);
    equal(rated, [['down', 'wrong_answer']], 'the rating is stored with the reply');
    await answer.locator('.why button.person').click();
    await agent.locator(`#queue-list button.item[data-id="${conv.id}"]`).waitFor({ state: 'visible', timeout: WAIT });
  });

  step('the stats page shows the resolution figures and exports CSV; the gaps page lists the rated-down question', async () => {
    await agent.goto(`${base}/agent#stats`);
    await agent.locator('#tiles .tile').first().waitFor({ timeout: WAIT });
    assert(/resolution rate/.test(await agent.textContent('#tiles')), 'the resolution tile');
    assert(/asked for a human/.test(await agent.textContent('#reasons-table')), 'escalations by reason');
    const href = await agent.getAttribute('#export-csv', 'href');
    const csv = await agent.evaluate(async (h) => { const r = await fetch(h); return [r.headers.get('content-type'), await r.text()]; }, href);
    assert(csv[0].startsWith('text/csv') && csv[1].startsWith('figure,value'), 'CSV export');
    await agent.keyboard.press('j'); // keys belong to the queue page only
    assert(await agent.isHidden('#main'), 'j does nothing on the stats page');
    await agent.click('#nav-gaps');
    await agent.locator('#gaps-list li li').filter({ hasText: 'How do I export my data?' }).waitFor({ timeout: WAIT });
    assert(/Grouped by shared words/.test(await agent.textContent('#gaps-how')), 'says how the gaps were grouped');
    await agent.click('#nav-queue');
    await agent.locator('#queue-pane').waitFor({ state: 'visible', timeout: WAIT });
  });

  step('on a phone: one pane at a time, nothing wider than the screen', async () => {
    const phone = await newPage('phone', { viewport: { width: 390, height: 780 }, isMobile: true, hasTouch: true });
    await phone.context().addCookies(await agent.context().cookies());
    await phone.goto(`${base}/agent`);
    await phone.locator('#app').waitFor({ state: 'visible', timeout: WAIT });
    assert(await phone.isVisible('#queue-pane'), 'the queue shows first');
    assert(await phone.isHidden('#conv-pane'), 'the conversation pane waits');
    const width = await phone.evaluate(() => document.documentElement.scrollWidth);
    assert(width <= 390, `page is ${width} px wide`);
  });

  step('every control has an accessible name; no console errors', async () => {
    const unnamed = await agent.evaluate(() => [...document.querySelectorAll('button, input, select, textarea')]
      .filter((e) => !e.closest('[hidden]'))
      .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
      .map((e) => e.id || e.outerHTML.slice(0, 60)));
    equal(unnamed, [], 'controls without a name');
    equal(problems, [], 'console errors');
  });

  let passed = 0, failed = 0;
  for (const [name, fn] of steps) {
    const t = Date.now();
    try {
      await fn();
      passed++;
      console.log(`ok - ${name} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
    } catch (e) {
      failed++;
      console.log(`not ok - ${name}\n${String(e.stack || e).replace(/^/gm, '  # ')}`);
      for (const [n, page] of pages) {
        if (page.isClosed()) continue;
        const file = join(artifacts, `${name.replace(/[^a-z0-9]+/gi, '-').slice(0, 50)}--${n}.png`);
        await page.screenshot({ path: file, timeout: 10_000 }).catch(() => {});
        console.log(`  # saved ${file}`);
      }
      break;
    }
  }
  await browser.close();
  clearTimeout(watchdog);
  const skipped = steps.length - passed - failed;
  console.log(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
  process.exit(failed ? 1 : 0);
}

/** docs/console.png and docs/console-phone.png over a seeded server. */
async function screenshot(base, key, out) {
  const browser = await launch();
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 760 } });
    await signIn(page, base, key, 'Dana');
    await page.locator('#queue-list button.item').first().waitFor({ timeout: WAIT });
    await page.locator('#queue-list button.item').first().click();
    await page.locator('#transcript .m').first().waitFor({ timeout: WAIT });
    await page.mouse.move(0, 0);
    await page.screenshot({ path: join(out, 'console.png') });
    const phone = await browser.newPage({ viewport: { width: 390, height: 780 }, isMobile: true });
    await phone.context().addCookies(await page.context().cookies());
    await phone.goto(`${base}/agent`);
    await phone.locator('#queue-list button.item').first().waitFor({ timeout: WAIT });
    await phone.screenshot({ path: join(out, 'console-phone.png') });
    await page.goto(`${base}/agent#stats`);
    await page.locator('#tiles .tile').first().waitFor({ timeout: WAIT });
    await page.screenshot({ path: join(out, 'stats.png'), fullPage: true });
    console.log(`saved ${out}/console.png, console-phone.png, stats.png`);
  } finally {
    await browser.close();
  }
}

const args = process.argv.slice(2);
if (args[0] === '--screenshot') {
  if (args.length !== 4) usage();
  await screenshot(args[1].replace(/\/$/, ''), args[2], args[3]);
} else {
  if (args.length !== 3) usage();
  await main(args[0].replace(/\/$/, ''), args[1], args[2]);
}
