// The deskhand agent console: plain JavaScript, no framework, no build step
// (one page with a queue and a conversation does not need one, and nothing
// to vendor means nothing to audit or update).
//
// Invariants:
// * Text from customers, the bot and agents only ever reaches the page as
//   text nodes (`textContent` / `createTextNode`), never as markup.
// * The agent key is sent once, to sign in, and kept nowhere; the session
//   is an HttpOnly cookie the script cannot read. The CSRF token lives in a
//   variable of this closure only (never in storage), and goes with every
//   POST as `X-CSRF-Token`.
// * Polling backs off: the queue is read every 4 s while it changes, up to
//   every 30 s while it does not, up to 60 s after errors, every 60 s while
//   the tab is hidden; any action polls again at once.
(() => {
  'use strict';

  const API = '/agent/api';
  const FAST = 4000, SLOW = 30000, ERROR_MAX = 60000, HIDDEN = 60000;

  let csrf = null;
  let me = null;
  let queue = [];
  let selected = null; // conversation id
  let current = null; // the open conversation
  let queueTimer = null, convTimer = null;
  let queueDelay = FAST, lastQueueKey = '';
  let convKey = '';

  const $ = (id) => document.getElementById(id);

  /** An element with attributes and children (strings become text nodes). */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'dataset') Object.assign(e.dataset, v);
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
    return e;
  }

  function say(text) {
    const s = $('status');
    s.textContent = text;
    clearTimeout(say.t);
    say.t = setTimeout(() => { s.textContent = ''; }, 4000);
  }

  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }

  async function api(method, path, body, extraHeaders) {
    const headers = { Accept: 'application/json', ...(extraHeaders || {}) };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
    const res = await fetch(API + path, {
      method, headers, credentials: 'same-origin', cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status === 204) return null;
    let data = null;
    try { data = await res.json(); } catch (_) { /* not JSON */ }
    if (!res.ok) {
      const err = data && data.error ? data.error : { code: 'http_' + res.status, message: res.statusText };
      if (res.status === 401 && err.code === 'not_signed_in' && path !== '/session') showSignIn('Your session ended; sign in again.');
      throw new ApiError(res.status, err.code, err.message);
    }
    return data;
  }

  // ---- sign-in ---------------------------------------------------------

  function showSignIn(message) {
    stopPolling();
    csrf = null; me = null; current = null; selected = null;
    $('app').hidden = true;
    $('signin-view').hidden = false;
    $('signin-error').textContent = message || '';
    $('key').value = '';
    $('key').focus();
  }

  function showApp(who) {
    me = who.agent;
    csrf = who.csrf;
    $('agent-name').textContent = me;
    $('signin-view').hidden = true;
    $('app').hidden = false;
    pollQueue(true);
    route();
  }

  $('signin').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const key = $('key').value.trim();
    if (!key) { $('signin-error').textContent = 'Enter your agent key.'; return; }
    $('signin-btn').disabled = true;
    try {
      const who = await api('POST', '/session', { key, name: $('name').value.trim() || null });
      $('key').value = '';
      showApp(who);
    } catch (e) {
      $('signin-error').textContent = e.status === 401 ? 'That key was refused.' : 'Sign-in failed: ' + e.message;
      $('key').select();
    } finally {
      $('signin-btn').disabled = false;
    }
  });

  $('signout').addEventListener('click', async () => {
    try { await api('POST', '/session/end'); } catch (_) { /* signed out anyway */ }
    showSignIn('Signed out.');
  });

  // ---- the queue -------------------------------------------------------

  const REASONS = {
    asked_for_human: 'asked for a human', low_confidence: 'low confidence', no_knowledge: 'no knowledge',
    negative_sentiment: 'negative sentiment', sensitive_topic: 'sensitive topic', model_refused: 'model refused',
    processing_failed: 'processing failed', unparseable: 'unparseable', delivery_failed: 'delivery failed',
    follow_up: 'follow-up', unverified_sender: 'unverified sender', unhelpful: 'unhelpful',
    needs_account_data: 'needs account data', unsupported_language: 'unsupported language',
  };
  const reasonText = (r) => (r ? REASONS[r] || r : 'taken over');

  function ago(secs) {
    if (secs === null || secs === undefined) return '';
    if (secs < 60) return secs + ' s';
    if (secs < 3600) return Math.floor(secs / 60) + ' min';
    if (secs < 86400) return Math.floor(secs / 3600) + ' h ' + Math.floor((secs % 3600) / 60) + ' min';
    return Math.floor(secs / 86400) + ' d';
  }

  function stopPolling() {
    clearTimeout(queueTimer); clearTimeout(convTimer);
    queueTimer = convTimer = null;
  }

  function schedule(fn, delay) {
    return setTimeout(fn, document.hidden ? Math.max(delay, HIDDEN) : delay);
  }

  async function pollQueue(now) {
    clearTimeout(queueTimer);
    if (now) queueDelay = FAST;
    const params = new URLSearchParams();
    if ($('f-reason').value) params.set('reason', $('f-reason').value);
    if ($('f-channel').value) params.set('channel', $('f-channel').value);
    try {
      const data = await api('GET', '/queue' + (params.toString() ? '?' + params : ''));
      queue = data.conversations;
      queueNow = Date.parse(data.now);
      const key = JSON.stringify(queue.map((c) => [c.conversation_id, c.escalated_at, c.last_role, c.assignee]));
      queueDelay = key === lastQueueKey && !now ? Math.min(queueDelay * 1.5, SLOW) : FAST;
      lastQueueKey = key;
      renderQueue();
      $('queue-state').textContent = 'Updated ' + new Date(data.now).toLocaleTimeString();
    } catch (e) {
      if (!csrf) return;
      queueDelay = Math.min(Math.max(queueDelay * 2, FAST * 2), ERROR_MAX);
      $('queue-state').textContent = 'Could not update (' + e.message + '); retrying in ' + Math.round(queueDelay / 1000) + ' s';
    }
    if (csrf) queueTimer = schedule(() => pollQueue(false), queueDelay);
  }

  let queueNow = Date.now();
  /** How long the customer has waited, or what happened last. */
  function waitText(c) {
    if (c.waiting_secs !== null && c.waiting_secs !== undefined) return 'waiting ' + ago(c.waiting_secs);
    if (c.last_role === 'agent') return 'agent replied';
    return 'escalated ' + ago(Math.max(0, Math.round((queueNow - Date.parse(c.escalated_at)) / 1000))) + ' ago';
  }

  function renderQueue() {
    const list = $('queue-list');
    const hadFocus = list.contains(document.activeElement);
    list.replaceChildren(...queue.map((c) => {
      const high = c.priority === 'high';
      return el('li', {},
        el('button', {
          type: 'button', class: 'item', dataset: { id: c.conversation_id },
          'aria-current': c.conversation_id === selected ? 'true' : 'false',
          onclick: () => openConversation(c.conversation_id),
        },
        el('span', { class: 'top' },
          el('span', { class: 'cust' }, c.customer),
          el('span', { class: 'wait' }, waitText(c))),
        el('span', {},
          el('span', { class: 'badge' + (high ? ' high' : '') }, high ? 'high priority' : 'normal'),
          el('span', { class: 'badge reason' }, reasonText(c.reason)),
          el('span', { class: 'badge' }, c.channel),
          c.assignee ? el('span', { class: 'badge' }, '→ ' + c.assignee) : null),
        el('span', { class: 'preview' }, c.subject ? c.subject + ' — ' + c.last_text : c.last_text)));
    }));
    $('queue-count').textContent = String(queue.length);
    if (!queue.length) list.append(el('li', { class: 'muted empty' }, 'Nobody is waiting.'));
    if (hadFocus) focusSelected();
  }

  function focusSelected() {
    const b = $('queue-list').querySelector('button[aria-current="true"]');
    if (b) b.focus();
  }

  $('f-reason').addEventListener('change', () => pollQueue(true));
  $('f-channel').addEventListener('change', () => pollQueue(true));
  document.addEventListener('visibilitychange', () => { if (!document.hidden && csrf) pollQueue(true); });

  // ---- a conversation --------------------------------------------------

  async function openConversation(id) {
    selected = id;
    document.body.classList.add('reading');
    for (const b of $('queue-list').querySelectorAll('button.item')) {
      b.setAttribute('aria-current', b.dataset.id === id ? 'true' : 'false');
    }
    convKey = '';
    await loadConversation();
  }

  async function loadConversation() {
    clearTimeout(convTimer);
    if (!selected) return;
    const id = selected;
    try {
      const c = await api('GET', '/conversations/' + encodeURIComponent(id));
      if (selected !== id) return;
      current = c;
      const key = JSON.stringify([c.status, c.assignee, c.messages.length, c.notes.length, !!c.draft]);
      if (key !== convKey) { convKey = key; renderConversation(); }
    } catch (e) {
      if (e.status === 404) { say('That conversation is gone.'); selected = null; current = null; closeView(); return; }
      say('Could not load the conversation: ' + e.message);
    }
    if (csrf && selected === id) convTimer = schedule(loadConversation, 5000);
  }

  function closeView() {
    $('conv').hidden = true;
    $('conv-empty').hidden = false;
    document.body.classList.remove('reading');
  }

  function safeUrl(u) {
    try {
      const url = new URL(u, location.href);
      return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : null;
    } catch (_) { return null; }
  }

  const WHO = { customer: 'Customer', assistant: 'Bot', agent: 'Agent', system: 'Notice' };

  function messageItem(m) {
    const facts = [];
    if (m.role === 'assistant' && typeof m.confidence === 'number') facts.push('confidence ' + m.confidence.toFixed(2));
    if (m.rating) facts.push('customer rated ' + (m.rating.rating === 'up' ? '👍' : '👎') + (m.rating.reason ? ' (' + m.rating.reason.replace(/_/g, ' ') + ')' : ''));
    const time = new Date(m.created_at);
    return el('li', { class: 'm ' + m.role, dataset: { role: m.role, id: m.id } },
      el('span', { class: 'who' }, WHO[m.role] || m.role, ' · ', el('time', { datetime: m.created_at }, time.toLocaleString())),
      el('p', { class: 'text' }, m.text),
      m.sources && m.sources.length ? el('ul', { class: 'sources', 'aria-label': 'Sources' },
        m.sources.map((s) => {
          const href = s.url ? safeUrl(s.url) : null;
          return el('li', {}, href ? el('a', { href, target: '_blank', rel: 'noopener noreferrer' }, s.title || s.doc_id) : (s.title || s.doc_id));
        })) : null,
      facts.length ? el('p', { class: 'facts' }, facts.join(' · ')) : null);
  }

  function noteItem(n) {
    return el('li', { class: 'm note', dataset: { role: 'note', id: n.id } },
      el('span', { class: 'who' }, 'Internal note · ', n.agent, ' · ',
        el('time', { datetime: n.created_at }, new Date(n.created_at).toLocaleString())),
      el('p', { class: 'text' }, n.text));
  }

  function renderConversation() {
    const c = current;
    $('conv-empty').hidden = true;
    $('conv').hidden = false;
    $('conv-title').textContent = c.customer + (c.subject ? ' — ' + c.subject : '');
    const meta = [c.channel, 'status: ' + c.status];
    if (c.status === 'escalated') meta.push('reason: ' + reasonText(c.reason));
    if (c.priority) meta.push(c.priority + ' priority');
    meta.push(c.assignee ? 'assigned to ' + c.assignee : 'unassigned');
    $('conv-meta').textContent = meta.join(' · ');
    $('assign-btn').hidden = c.assignee === me;
    $('handback-btn').disabled = c.status === 'open';
    $('close-btn').disabled = c.status === 'closed';
    const timeline = [
      ...c.messages.map((m) => ({ at: m.created_at, item: messageItem(m) })),
      ...c.notes.map((n) => ({ at: n.created_at, item: noteItem(n) })),
    ].sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
    $('transcript').replaceChildren(...timeline.map((t) => t.item));
    if (c.draft) {
      $('draft').hidden = false;
      $('draft-text').textContent = c.draft.text;
      $('draft-meta').textContent = '(confidence ' + c.draft.confidence.toFixed(2) + ', ' + reasonText(c.draft.reason) + ')';
    } else {
      $('draft').hidden = true;
    }
    const last = $('transcript').lastElementChild;
    if (last && !$('conv-pane').contains(document.activeElement)) last.scrollIntoView({ block: 'nearest' });
  }

  async function act(what, body, headers) {
    if (!current) return null;
    const id = current.conversation_id;
    const out = await api('POST', '/conversations/' + encodeURIComponent(id) + '/' + what, body, headers);
    convKey = '';
    await loadConversation();
    pollQueue(true);
    return out;
  }

  function key() {
    return (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random()).slice(0, 64);
  }

  // A reply that failed is sent again with the same Idempotency-Key, so a
  // reply that did reach the server before the failure is stored and
  // delivered once.
  let pending = null;

  const DELIVERY = {
    poll: 'Reply sent: the customer sees it in the chat.',
    outbox: 'Reply sent: it goes out on the customer\'s channel (email or helpdesk).',
    stored_only: 'Reply saved, but not sent: this channel has no outbound delivery configured.',
    held_sender: 'Reply saved, but not sent: the sender failed email authentication (the address may be forged).',
  };

  async function sendReply(text) {
    if (!text.trim()) { say('Write a reply first.'); $('reply').focus(); return; }
    const conv = current && current.conversation_id;
    if (!pending || pending.text !== text || pending.conv !== conv) pending = { text, conv, key: key() };
    $('send').disabled = true;
    try {
      const out = await act('reply', { text }, { 'Idempotency-Key': pending.key });
      pending = null;
      $('reply').value = '';
      say((out && DELIVERY[out.delivery]) || 'Reply sent.');
    } catch (e) {
      say('The reply was not sent: ' + e.message);
    } finally {
      $('send').disabled = false;
    }
  }

  $('composer').addEventListener('submit', (ev) => { ev.preventDefault(); sendReply($('reply').value); });
  $('reply').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); sendReply($('reply').value); }
  });
  $('note-btn').addEventListener('click', async () => {
    const text = $('reply').value;
    if (!text.trim()) { say('Write the note first.'); $('reply').focus(); return; }
    try {
      await act('note', { text }, { 'Idempotency-Key': key() });
      $('reply').value = '';
      say('Note added (only agents see it).');
    } catch (e) { say('The note was not added: ' + e.message); }
  });
  $('draft-send').addEventListener('click', () => { if (current && current.draft) sendReply(current.draft.text); });
  $('draft-edit').addEventListener('click', () => {
    if (!current || !current.draft) return;
    $('reply').value = current.draft.text;
    $('reply').focus();
  });
  $('assign-btn').addEventListener('click', () => act('assign').then(() => say('Assigned to you.'), (e) => say(e.message)));
  $('handback-btn').addEventListener('click', () => act('handback').then(() => say('Handed back to the bot.'), (e) => say(e.message)));
  $('close-btn').addEventListener('click', closeConversation);
  $('back').addEventListener('click', () => { closeView(); focusSelected(); });

  function closeConversation() {
    if (!current || current.status === 'closed') return;
    act('close').then(() => say('Closed.'), (e) => say(e.message));
  }

  // ---- pages: queue, stats, gaps ------------------------------------------

  const PAGES = { queue: 'main', stats: 'stats-view', gaps: 'gaps-view' };
  let page = 'queue';

  function route() {
    const want = (location.hash || '#queue').slice(1);
    page = PAGES[want] ? want : 'queue';
    for (const [name, id] of Object.entries(PAGES)) {
      $(id).hidden = name !== page;
      const link = $('nav-' + name);
      if (name === page) link.setAttribute('aria-current', 'page'); else link.removeAttribute('aria-current');
    }
    if (!csrf) return;
    if (page === 'stats') loadStats();
    if (page === 'gaps') loadGaps();
  }
  window.addEventListener('hashchange', route);

  const pct = (r) => (r * 100).toFixed(1) + ' %';
  const since = (days) => new Date(Date.now() - days * 86400e3).toISOString().slice(0, 10);

  async function loadStats() {
    const q = '?since=' + since(Number($('stats-period').value));
    $('export-csv').setAttribute('href', '/agent/api/stats' + q + '&format=csv');
    $('export-json').setAttribute('href', '/agent/api/stats' + q);
    try {
      const v = await api('GET', '/stats' + q);
      const r = v.resolution;
      const tile = (value, label) => el('div', { class: 'tile' }, el('span', { class: 'v' }, value), el('span', { class: 'k' }, label));
      $('tiles').replaceChildren(
        tile(pct(r.involvement_rate), 'involvement (bot answered)'),
        tile(pct(r.resolution_rate), 'resolution rate (of involved)'),
        tile(pct(r.confirmed_rate), 'resolved, confirmed'),
        tile(pct(r.assumed_rate), 'resolved, assumed'),
        tile(pct(r.reopen_rate), 'reopened'),
        tile(r.csat.responses ? r.csat.average.toFixed(2) + ' / 5' : '—', 'CSAT (' + r.csat.responses + ' answers)'),
        tile(Math.round(r.latency.p50_ms) + ' / ' + Math.round(r.latency.p95_ms) + ' ms', 'latency p50 / p95'),
        tile('$' + r.cost_per_resolution.toFixed(3), 'cost per resolution'));
      const row = (k, val) => el('tr', {}, el('th', { scope: 'row' }, k), el('td', {}, String(val)));
      $('stats-table').tBodies[0].replaceChildren(
        row('conversations', r.conversations),
        row('involved', r.involved),
        row('resolved, confirmed', r.resolved_confirmed),
        row('resolved, assumed', r.resolved_assumed),
        row('pending (too recent to assume)', r.pending),
        row('escalated', r.escalated),
        row('reopened', r.reopened),
        row('thumbs up / down', (r.ratings.up || 0) + ' / ' + (r.ratings.down || 0)),
        row('tickets', v.tickets),
        row('total cost', '$' + r.total_cost.toFixed(2)));
      const reasons = Object.entries(r.escalations_by_reason);
      $('reasons-table').tBodies[0].replaceChildren(...(reasons.length
        ? reasons.sort((a, b) => b[1] - a[1]).map(([k, n]) => row(reasonText(k), n))
        : [el('tr', {}, el('td', { colspan: '2' }, 'No escalations.'))]));
      $('stats-note').textContent = 'Resolved means the bot\'s last answer was confirmed (thumbs up, thanks, CSAT 4–5) or met ' +
        r.settings.assume_after_hours + ' h of silence; a new question within ' + r.settings.reopen_days + ' days reopens it.';
    } catch (e) { say('Could not load the figures: ' + e.message); }
  }
  $('stats-period').addEventListener('change', loadStats);

  const WHY = { no_knowledge: 'no knowledge', low_confidence: 'low confidence', thumbs_down: 'thumbs-down' };
  async function loadGaps() {
    try {
      const v = await api('GET', '/gaps?since=' + since(30));
      $('gaps-how').textContent = (v.clustering === 'embeddings'
        ? 'Grouped by meaning (embeddings).'
        : 'Grouped by shared words.') + (v.clustering_note ? ' ' + v.clustering_note : '');
      if (!v.gaps.length) { $('gaps-list').replaceChildren(el('li', { class: 'muted' }, 'No gaps in the last 30 days.')); return; }
      $('gaps-list').replaceChildren(...v.gaps.map((g) => el('li', {},
        el('span', { class: 'terms' }, g.terms.join(', ') || '(no shared terms)'),
        ' — ', g.count + (g.count === 1 ? ' question' : ' questions'), ' (',
        Object.entries(g.why).map(([k, n]) => (WHY[k] || k) + ' ' + n).join(', '), ')',
        el('ul', {}, g.examples.map((x) => el('li', {}, x))))));
    } catch (e) { say('Could not load the gaps: ' + e.message); }
  }

  // ---- keyboard --------------------------------------------------------

  function move(step) {
    if (!queue.length) return;
    let i = queue.findIndex((c) => c.conversation_id === selected);
    i = i < 0 ? (step > 0 ? 0 : queue.length - 1) : Math.min(Math.max(i + step, 0), queue.length - 1);
    openConversation(queue[i].conversation_id).then(focusSelected);
  }

  document.addEventListener('keydown', (ev) => {
    if ($('app').hidden || page !== 'queue' || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const t = ev.target;
    const typing = t && (t.tagName === 'TEXTAREA' || t.tagName === 'INPUT' || t.tagName === 'SELECT');
    if (typing) {
      if (ev.key === 'Escape') t.blur();
      return;
    }
    if (ev.key === 'j') { ev.preventDefault(); move(1); }
    else if (ev.key === 'k') { ev.preventDefault(); move(-1); }
    else if (ev.key === 'r' && current) { ev.preventDefault(); $('reply').focus(); }
    else if (ev.key === 'e' && current) { ev.preventDefault(); closeConversation(); }
  });

  // ---- start -----------------------------------------------------------

  api('GET', '/session').then(showApp, () => showSignIn(''));
})();
