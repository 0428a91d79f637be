/*! deskhand chat widget · Apache-2.0
 * <script src="https://SUPPORT-HOST/widget.js" data-deskhand-url="https://SUPPORT-HOST" defer></script>
 * Optional: data-title, data-greeting, data-brand (one of the site's retriever.brands). Message text is only ever set as text, never as HTML. */
(() => {
  'use strict';
  const me = document.currentScript || document.querySelector('script[data-deskhand-url]');
  if (!me || !window.fetch) return;
  // Relative URLs resolve against the script's own address; it defaults to its folder.
  const base = new URL(me.dataset.deskhandUrl || '.', me.src || location.href);
  if (!base.pathname.endsWith('/')) base.pathname += '/';
  const KEY = 'deskhand:' + base.href; // one conversation per deskhand install
  const all = (window.__deskhand = window.__deskhand || {});
  if (all[KEY]) return;
  all[KEY] = 1;

  const load = () => { try { return JSON.parse(localStorage.getItem(KEY)) || {}; } catch { return {}; } };
  const save = () => { try { localStorage.setItem(KEY, JSON.stringify({ conv, open })); } catch {} };
  let { conv, open } = load(); // conv: {id, token, user}
  // A signed-in user, vouched for by the site's backend (docs/actions.md):
  // data-user-id, data-user-email, data-user-hash. A stored conversation of
  // another (or no) user is not reused.
  const d = me.dataset;
  const user = d.userId && d.userHash ? { id: d.userId, email: d.userEmail || undefined, hash: d.userHash } : null;
  if (conv && (conv.user || null) !== (user ? user.id : null)) conv = null;
  // data-brand: answers come from that brand's articles. The server binds it
  // into the conversation's token; a stored conversation of another brand is
  // not reused.
  const brand = (d.brand || '').trim() || null;
  if (conv && (conv.brand || null) !== brand) conv = null;

  // Builds elements; string children become text nodes (Node.append), never markup.
  const h = (tag, props, ...kids) => {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (v != null && v !== false) el.setAttribute(k, v === true ? '' : v);
    }
    el.append(...kids.filter((c) => c != null));
    return el;
  };

  const CSS = `:host{all:initial!important;position:fixed!important;right:16px!important;bottom:16px!important;z-index:2147483000!important;display:block!important;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif!important;color:#1f2328!important;text-align:left!important}
*{box-sizing:border-box}[hidden]{display:none!important}
button,textarea{font:inherit;color:inherit;margin:0}button{cursor:pointer}
:focus-visible{outline:2px solid #f59e0b;outline-offset:2px}
.launch{display:flex;align-items:center;gap:8px;padding:12px 18px;border:0;border-radius:999px;background:#1d4ed8;color:#fff;font-weight:600;box-shadow:0 4px 14px rgba(0,0,0,.25)}
.badge{min-width:20px;padding:0 6px;border-radius:10px;background:#dc2626;font-size:12px;line-height:20px}
.panel{position:absolute;right:0;bottom:0;width:370px;height:min(580px,calc(100vh - 32px));display:flex;flex-direction:column;background:#fff;border-radius:14px;box-shadow:0 10px 40px rgba(0,0,0,.3);overflow:hidden}
header{display:flex;align-items:flex-start;gap:8px;padding:14px 16px;background:#1d4ed8;color:#fff}
h2{margin:0;font-size:16px;line-height:1.3}.state{margin:2px 0 0;font-size:12px;opacity:.9}
.x{margin-left:auto;border:0;background:none;color:#fff;font-size:22px;line-height:1;padding:2px 8px;border-radius:6px}
.log{flex:1;overflow-y:auto;padding:14px;display:flex;flex-direction:column;gap:10px;background:#f4f6f8}
.m{max-width:85%;padding:9px 12px;border-radius:12px;white-space:pre-wrap;overflow-wrap:anywhere;background:#fff;border:1px solid #dde1e6}
.customer{align-self:flex-end;background:#1d4ed8;color:#fff;border-color:#1d4ed8}
.agent{background:#eafbf0;border:1px solid #16a34a;border-left-width:4px}
.system,.hello{align-self:center;max-width:95%;background:#fff8e1;border-color:#f0d58a;font-size:13px;text-align:center}
.who{display:block;margin-bottom:2px;font-size:11px;font-weight:700;letter-spacing:.04em;text-transform:uppercase;color:#57606a}.agent .who{color:#15803d}
ul{margin:6px 0 0;padding:6px 0 0 18px;border-top:1px solid #dde1e6;font-size:13px;white-space:normal}a{color:#1d4ed8}
.sending{opacity:.6}.failed{background:#fff;color:#b91c1c;border:1px dashed #dc2626}
.note{display:block;font-size:11px;margin-top:2px}
.typing{padding:4px 16px 6px;font-size:12px;color:#57606a;background:#f4f6f8}
.alert{display:flex;gap:8px;align-items:center;padding:8px 12px;background:#fef2f2;color:#991b1b;font-size:13px}
.alert button{margin-left:auto;border:1px solid #991b1b;background:#fff;color:#991b1b;border-radius:6px;padding:3px 12px}
form{display:flex;gap:8px;padding:10px;border-top:1px solid #dde1e6;background:#fff}
textarea{flex:1;resize:none;height:42px;max-height:120px;padding:10px;border:1px solid #b8bec6;border-radius:10px;background:#fff}
.send{border:0;border-radius:10px;padding:0 16px;background:#1d4ed8;color:#fff;font-weight:600}
.rate{display:flex;flex-wrap:wrap;gap:4px;align-items:center;margin-top:6px;white-space:normal;font-size:12px;color:#57606a}
.rate button,.csat button{border:1px solid #b8bec6;background:#fff;border-radius:8px;padding:2px 8px;color:#1f2328}
.rate button[aria-pressed=true],.csat button[aria-pressed=true]{background:#dbeafe;border-color:#1d4ed8}
.why{display:flex;flex-wrap:wrap;gap:4px;align-items:center;width:100%}.why .person{background:#1d4ed8;color:#fff;border-color:#1d4ed8}
.csat{align-self:center;text-align:center;font-size:13px;background:#fff;border:1px solid #dde1e6;border-radius:12px;padding:8px 12px;white-space:normal}
.csat div{display:flex;gap:4px;justify-content:center;margin-top:4px}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip-path:inset(50%);white-space:nowrap}
@media (max-width:480px){:host{right:12px!important;bottom:12px!important}.panel{position:fixed;inset:0;width:auto;height:auto;border-radius:0}textarea{font-size:16px}}`;

  const title = me.dataset.title || 'Help';
  const WHO = { assistant: 'Assistant (bot)', agent: 'Support agent' };
  const STATE = {
    open: 'Answers in seconds; a person can take over.',
    escalated: 'A person from our team will reply here.',
    closed: 'This conversation is closed. Write to start again.',
  };

  const badge = h('span', { class: 'badge', hidden: true });
  const launcher = h('button', { class: 'launch', type: 'button', 'aria-expanded': 'false', 'aria-controls': 'panel', onclick: () => show(true, true) }, 'Chat with us', badge);
  const stateLine = h('p', { class: 'state' }, STATE.open);
  const log = h('div', { class: 'log', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions', 'aria-label': 'Messages', tabindex: '0' },
    h('p', { class: 'm hello' }, me.dataset.greeting || 'Hi! Ask a question and I will answer from our help centre.'));
  const typing = h('div', { class: 'typing', hidden: true }, 'Assistant is typing…');
  const alertText = h('span');
  const alertBox = h('div', { class: 'alert', role: 'alert', hidden: true }, alertText, h('button', { type: 'button', onclick: () => retry() }, 'Retry'));
  const input = h('textarea', { rows: '1', maxlength: '4000', placeholder: 'Type your question…', 'aria-label': 'Your message', enterkeyhint: 'send' });
  const panel = h('section', { id: 'panel', class: 'panel', 'aria-label': title + ' chat', hidden: true },
    h('header', null, h('div', null, h('h2', null, title), stateLine), h('button', { class: 'x', type: 'button', 'aria-label': 'Close chat', onclick: () => show(false, true) }, '×')),
    log, typing, alertBox,
    h('form', { onsubmit: (e) => { e.preventDefault(); submit(); } }, input, h('button', { class: 'send', type: 'submit' }, 'Send')));

  const host = h('deskhand-chat');
  const root = host.attachShadow({ mode: 'open' });
  try { // constructed sheets are not inline styles, so a strict host CSP allows them
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
    root.adoptedStyleSheets = [sheet];
  } catch { root.append(h('style', null, CSS)); }
  root.append(launcher, panel);

  let cursor = '0', status = 'open', waiting = false, unread = 0, restoring = !!conv;
  let timer = 0, polling = false, flushing = false, failures = 0, fastUntil = 0, idle = 1500;
  const mine = []; // this page's customer messages: {key, text, el, id?, polled?}
  const outbox = []; // of those, the ones not yet accepted
  const seen = new Set();

  function show(on, focus) {
    open = on;
    panel.hidden = !on;
    launcher.hidden = on;
    launcher.setAttribute('aria-expanded', on);
    save();
    if (on) {
      unread = 0;
      badge.hidden = true;
      bottom();
    }
    if (focus) (on ? input : launcher).focus();
  }
  panel.addEventListener('keydown', (e) => { if (e.key === 'Escape') show(false, true); });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
  });
  input.addEventListener('input', grow);
  function grow() {
    input.style.height = '';
    input.style.height = Math.min(input.scrollHeight + 2, 120) + 'px';
  }

  const bottom = () => { log.scrollTop = log.scrollHeight; };
  const rid = () => Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');

  function link(s) {
    const text = String(s.title || s.doc_id || 'Source');
    try {
      const u = new URL(s.url);
      if (u.protocol === 'https:' || u.protocol === 'http:') return h('a', { href: u.href, target: '_blank', rel: 'noopener noreferrer' }, text);
    } catch {}
    return h('span', null, text);
  }

  function bubble(m) {
    const role = m.role === 'customer' || WHO[m.role] ? m.role : 'system';
    const el = h('div', { class: 'm ' + role, title: m.created_at ? new Date(m.created_at).toLocaleString() : null },
      WHO[role] ? h('span', { class: 'who' }, WHO[role]) : role === 'customer' ? h('span', { class: 'sr' }, 'You: ') : null,
      String(m.text));
    const docs = new Set();
    const sources = (m.sources || []).filter((s) => s && !docs.has(s.doc_id) && docs.add(s.doc_id));
    if (sources.length) el.append(h('ul', { 'aria-label': 'Sources' }, ...sources.map((s) => h('li', null, link(s)))));
    if (role === 'assistant' && m.id) el.append(rating(m.id));
    return el;
  }

  // Thumbs up/down on a bot reply; a thumbs-down asks what was wrong and offers a person.
  const WRONG = [['wrong_answer', 'Wrong answer'], ['did_not_understand', "Didn't understand me"], ['wanted_person', 'I wanted a person']];
  function rating(mid) {
    const said = h('span', { class: 'said', 'aria-live': 'polite' });
    const press = (btns, on) => btns.forEach((b) => b.setAttribute('aria-pressed', String(b === on)));
    const rate = async (value, reason, btn) => {
      try {
        const r = await call('POST', `v1/conversations/${encodeURIComponent(conv.id)}/messages/${encodeURIComponent(mid)}/feedback`, { rating: value, reason: reason || null });
        press([up, down], value === 'up' ? up : down);
        why.hidden = !r.offer_person;
        if (reason) press(chips, btn);
        said.textContent = value === 'up' ? 'Thanks!' : reason ? 'Thanks, noted.' : '';
      } catch { said.textContent = 'Could not send that; try again.'; }
    };
    const up = h('button', { type: 'button', class: 'up', 'aria-label': 'Helpful', 'aria-pressed': 'false', onclick: () => rate('up') }, '👍');
    const down = h('button', { type: 'button', class: 'down', 'aria-label': 'Not helpful', 'aria-pressed': 'false', onclick: () => rate('down') }, '👎');
    const chips = WRONG.map(([code, label]) => {
      const b = h('button', { type: 'button', 'data-reason': code, 'aria-pressed': 'false', onclick: () => rate('down', code, b) }, label);
      return b;
    });
    const person = h('button', { type: 'button', class: 'person', onclick: () => { input.value = "I'd like to talk to a person, please."; submit(); person.disabled = true; } }, 'Talk to a person');
    const why = h('div', { class: 'why', hidden: true }, h('span', null, 'What was wrong?'), ...chips, person);
    return h('div', { class: 'rate', role: 'group', 'aria-label': 'Was this answer helpful?' }, up, down, said, why);
  }

  // After a conversation closes: one question, 1 to 5.
  let csatFor = null;
  function askCsat() {
    if (!conv || csatFor === conv.id) return;
    csatFor = conv.id;
    const said = h('span', { 'aria-live': 'polite' });
    const scores = [1, 2, 3, 4, 5].map((n) => {
      const b = h('button', { type: 'button', 'data-score': String(n), 'aria-label': n + ' out of 5', 'aria-pressed': 'false', onclick: async () => {
        try {
          await call('POST', `v1/conversations/${encodeURIComponent(conv.id)}/csat`, { score: n });
          scores.forEach((x) => x.setAttribute('aria-pressed', String(x === b)));
          said.textContent = 'Thank you!';
        } catch { said.textContent = 'Could not send that; try again.'; }
      } }, String(n));
      return b;
    });
    log.append(h('div', { class: 'csat', role: 'group', 'aria-label': 'Rate this conversation' },
      'How did we do? (1 = poor, 5 = great)', h('div', null, ...scores), said));
    bottom();
  }

  function add(m) {
    if (seen.has(m.id)) return;
    seen.add(m.id);
    // The server's order is the truth: what it has goes before what it has not seen yet.
    const place = (el) => log.insertBefore(el, (mine.find((x) => !x.polled) || {}).el || null);
    if (m.role === 'customer') {
      const left = mine.filter((x) => !x.polled);
      const local = left.find((x) => x.id === m.id) || left.find((x) => !x.id && x.text === m.text);
      if (local) {
        local.polled = true;
        local.id = m.id;
        if (!outbox.includes(local)) local.el.className = 'm customer';
        return place(local.el);
      }
    } else waiting = false;
    place(bubble(m));
    if (m.role !== 'customer' && !restoring && panel.hidden) {
      badge.textContent = ++unread;
      badge.hidden = false;
    }
  }

  function note(msg, text) {
    msg.el.querySelector('.note')?.remove();
    if (text) msg.el.append(h('span', { class: 'note' }, text));
  }

  function submit() {
    const text = input.value.trim();
    if (!text) return;
    input.value = '';
    grow();
    const msg = { key: rid(), text, el: bubble({ role: 'customer', text }) };
    msg.el.classList.add('sending');
    mine.push(msg);
    outbox.push(msg);
    log.append(msg.el);
    bottom();
    if (status !== 'escalated') waiting = true;
    fastUntil = Date.now() + 10e3;
    idle = 1500;
    update();
    flush();
  }

  async function call(method, path, body, key) {
    const headers = {};
    if (conv && path !== 'v1/conversations') headers.Authorization = 'Bearer ' + conv.token;
    if (body) headers['Content-Type'] = 'application/json';
    if (key) headers['Idempotency-Key'] = key;
    const res = await fetch(new URL(path, base), { method, headers, body: body && JSON.stringify(body), credentials: 'omit', cache: 'no-store' });
    const data = await res.json().catch(() => ({}));
    if (res.ok) return data;
    throw Object.assign(new Error((data.error && data.error.message) || 'HTTP ' + res.status), { status: res.status });
  }

  // A conversation the server no longer accepts (its secret changed): start over.
  const forget = () => { conv = null; cursor = '0'; status = 'open'; save(); };

  async function deliver(msg, again) {
    if (!conv) {
      const opening = {};
      if (user) opening.user = user;
      if (brand) opening.brand = brand;
      const c = await call('POST', 'v1/conversations', user || brand ? opening : undefined);
      conv = { id: c.conversation_id, token: c.token, user: user ? user.id : null, brand };
      save();
    }
    try {
      // The same key on a retry makes it the same ticket: never two answers.
      const r = await call('POST', `v1/conversations/${encodeURIComponent(conv.id)}/messages`, { text: msg.text }, msg.key);
      msg.id = r.message_id;
    } catch (e) {
      if (e.status !== 401 || again) throw e;
      forget();
      return deliver(msg, true);
    }
  }

  async function flush() {
    if (flushing) return;
    flushing = true;
    try {
      while (outbox.length) {
        const msg = outbox[0];
        msg.el.className = 'm customer sending';
        note(msg);
        try {
          await deliver(msg);
        } catch (e) {
          if (!e.status || e.status >= 500 || e.status === 429) throw e;
          msg.el.className = 'm customer failed'; // refused for good (too long…): say why
          note(msg, 'Not sent: ' + e.message);
          msg.polled = true; // settled: nothing of the server's goes after it
          waiting = false;
        }
        outbox.shift();
        msg.el.classList.remove('sending');
      }
      failures = 0;
      hideAlert();
      poll();
    } catch (e) {
      for (const m of outbox) { m.el.className = 'm customer failed'; note(m, 'Not sent yet'); }
      trouble();
      clearTimeout(timer);
      timer = setTimeout(flush, Math.min(30e3, 1e3 * 2 ** failures));
    } finally {
      flushing = false;
      update();
    }
  }

  async function poll() {
    clearTimeout(timer);
    timer = 0;
    if (!conv || polling || document.hidden) return;
    polling = true;
    const id = conv.id;
    try {
      const r = await call('GET', `v1/conversations/${encodeURIComponent(id)}/messages?after=${encodeURIComponent(cursor)}`);
      if (!conv || conv.id !== id) return;
      failures = 0;
      hideAlert();
      const before = log.childElementCount;
      r.messages.forEach(add);
      cursor = r.cursor;
      status = r.status;
      if (status === 'escalated') waiting = false;
      if (status === 'closed') askCsat();
      if (log.childElementCount > before) { bottom(); idle = 1500; }
      restoring = false;
      if (outbox.length) flush();
    } catch (e) {
      if (e.status === 401) forget();
      else trouble();
    } finally {
      polling = false;
      update();
      schedule();
    }
  }

  // Quick right after sending, then slower and slower while nothing happens.
  function schedule() {
    clearTimeout(timer);
    if (!conv || document.hidden) return;
    let wait;
    if (failures) wait = Math.min(30e3, 1e3 * 2 ** failures);
    else if (Date.now() < fastUntil || (waiting && Date.now() < fastUntil + 20e3)) wait = 700;
    else { wait = idle; idle = Math.min(idle * 2, 15e3); }
    timer = setTimeout(poll, wait * (0.85 + Math.random() * 0.3));
  }

  function trouble() {
    failures++;
    alertText.textContent = navigator.onLine === false ? 'You are offline.' : 'Cannot reach support right now.';
    alertBox.hidden = false;
  }
  const hideAlert = () => { alertBox.hidden = true; };
  function retry() {
    failures = 0;
    hideAlert();
    outbox.length ? flush() : poll();
  }

  function update() {
    stateLine.textContent = STATE[status] || STATE.open;
    typing.hidden = !waiting || status === 'escalated' || outbox.length > 0;
  }

  document.addEventListener('visibilitychange', () => (document.hidden ? clearTimeout(timer) : poll()));
  addEventListener('online', retry);
  addEventListener('offline', trouble);

  const start = () => {
    document.body.append(host);
    if (open) show(true);
    poll();
  };
  document.body ? start() : addEventListener('DOMContentLoaded', start);
})();
