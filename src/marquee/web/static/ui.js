// Small DOM helpers shared by the pages: element building (text only, never HTML strings),
// plain-language error messages with retry countdowns, polling, and page clean-up.

import { t, has } from './i18n.js';

/** An element: `h('a', {href: '/'}, 'text', child)`. Attributes named on* add listeners;
 * false/null/undefined attributes and children are left out. Children are text or nodes. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'value') el.value = value;
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

let fieldCounter = 0;

/** A labelled form control: `<div class="field"><label for>…</label>control hint</div>`. */
export function field(label, control, hint = null) {
  if (!control.id) {
    fieldCounter += 1;
    control.id = `f${fieldCounter}`;
  }
  let hintEl = null;
  if (hint) {
    hintEl = h('p', { class: 'hint', id: `${control.id}-hint` }, hint);
    control.setAttribute('aria-describedby', hintEl.id);
  }
  return h('div', { class: 'field' }, h('label', { for: control.id }, label), control, hintEl);
}

// -- page life -----------------------------------------------------------------------------

const leaving = new Set();

/** Run `fn` when the current page is left (timers, polls). */
export function onLeave(fn) {
  leaving.add(fn);
  return fn;
}

/** Called by the router before it renders another page. */
export function leavePage() {
  for (const fn of leaving) {
    try {
      fn();
    } catch {
      // One failing clean-up must not keep the others from running.
    }
  }
  leaving.clear();
}

/** Announce `text` politely to screen readers (the page's status region). */
export function announce(text) {
  const region = document.getElementById('status');
  if (!region) return;
  region.textContent = '';
  // A new text node after a tick, so the same message twice is announced twice.
  setTimeout(() => {
    region.textContent = text;
  }, 50);
}

/**
 * Call `task` now and every `seconds` while the page is open and visible. `task` may return
 * a number of seconds to wait before the next call instead (e.g. after a 429).
 */
export function poll(seconds, task) {
  let timer = null;
  let stopped = false;
  const run = async () => {
    timer = null;
    if (stopped) return;
    let wait = seconds;
    if (document.visibilityState !== 'hidden') {
      try {
        const asked = await task();
        if (typeof asked === 'number' && asked > 0) wait = asked;
      } catch {
        // The task reports its own failures; polling goes on.
      }
    }
    if (!stopped) timer = setTimeout(run, wait * 1000);
  };
  const onVisible = () => {
    if (document.visibilityState === 'visible' && timer !== null) {
      clearTimeout(timer);
      run();
    }
  };
  document.addEventListener('visibilitychange', onVisible);
  run();
  const stop = () => {
    stopped = true;
    if (timer !== null) clearTimeout(timer);
    document.removeEventListener('visibilitychange', onVisible);
  };
  onLeave(stop);
  return {
    stop,
    now: () => {
      if (timer !== null) {
        clearTimeout(timer);
        run();
      }
    },
  };
}

// -- errors in plain words -----------------------------------------------------------------

const CONSOLE_FIELDS = {
  name: 'console.venue_name',
  city: 'console.city',
  address: 'console.address',
  timezone: 'console.timezone',
  title: 'console.title_field',
  category: 'console.category',
  venue: 'console.venue',
  venue_id: 'console.venue',
  description: 'console.description',
  starts_at: 'console.starts_at',
  ends_at: 'console.ends_at',
  sale_starts_at: 'console.sale_starts_at',
  per_user_limit: 'console.per_user_limit',
  price: 'console.price',
  capacity: 'console.capacity',
  quantity: 'show.quantity',
  email: 'auth.email',
  password: 'auth.password',
  full_name: 'auth.full_name',
  payment_token: 'order.token',
  payment_method: 'order.method',
  payload: 'console.checkin_payload',
};

function fieldNames(problem) {
  const names = new Set();
  for (const error of problem.errors || []) {
    const loc = (error.loc || []).filter((part) => part !== 'body');
    const last = loc.length ? String(loc[loc.length - 1]) : '';
    const key = CONSOLE_FIELDS[last];
    names.add(key ? t(key) : last || '?');
  }
  return [...names].join(', ') || '?';
}

/**
 * What to tell a person about `error`: `{text, retryAfter, kind}`; `retryAfter` (seconds)
 * when waiting makes a retry worth it, and `text` may contain `{n}` for the countdown.
 */
export function describe(error) {
  const code = error && error.code ? error.code : 'network';
  const p = (error && error.problem) || {};
  const wait = error && error.retryAfter ? error.retryAfter : null;
  const retry = (key, fallback = 1) => ({ key, retryAfter: wait ?? fallback });
  switch (code) {
    case 'network':
      return { text: t('msg.network'), kind: 'error' };
    case 'rate_limited':
      return { ...retry('msg.rate_limited'), kind: 'wait' };
    case 'too_many_attempts':
      return { ...retry('msg.too_many_attempts', 30), kind: 'wait' };
    case 'overloaded':
      return { ...retry('msg.overloaded'), kind: 'wait' };
    case 'busy':
      return { ...retry('msg.busy'), kind: 'wait' };
    case 'service_unavailable':
    case 'upstream_unavailable':
    case 'bad_gateway':
    case 'not_ready':
      return { ...retry('msg.unavailable', 2), kind: 'wait' };
    case 'upstream_timeout':
      return { text: t('msg.timeout'), kind: 'error' };
    case 'insufficient_inventory':
      if (Number(p.available) === 0) return { text: t('msg.sold_out'), kind: 'error' };
      return {
        text: t('msg.insufficient', {
          available: p.available ?? '?',
          requested: p.requested ?? '?',
        }),
        kind: 'error',
      };
    case 'not_on_sale':
      return { text: t('msg.not_on_sale'), kind: 'error' };
    case 'per_user_limit_exceeded':
      return {
        text: t('msg.per_user_limit', { limit: p.limit ?? '?', already: p.already_ordered ?? 0 }),
        kind: 'error',
      };
    case 'invalid_quantity':
      return { text: t('msg.invalid_quantity', { limit: p.limit ?? '?' }), kind: 'error' };
    case 'payment_declined':
      return { text: t('msg.payment_declined', { reason: p.reason || '—' }), kind: 'error' };
    case 'payment_timeout':
      return { text: t('msg.payment_timeout'), kind: 'error' };
    case 'payment_provider_unavailable':
      return { text: t('msg.payment_unavailable'), kind: 'error' };
    case 'payment_in_progress':
      return { ...retry('msg.payment_in_progress'), kind: 'wait' };
    case 'invalid_state_transition': {
      const status = p.order_status || p.refund_request_status || '';
      const label = has(`status.${status}`) ? t(`status.${status}`) : status;
      return { text: t('msg.invalid_state', { status: label }), kind: 'error' };
    }
    case 'not_found':
    case 'order_not_found':
    case 'ticket_not_found':
    case 'refund_request_not_found':
    case 'seat_area_not_found':
      return { text: t('msg.not_found'), kind: 'error' };
    case 'refund_window_closed':
      return { text: t('msg.refund_window_closed'), kind: 'error' };
    case 'refund_already_requested':
      return { text: t('msg.refund_already_requested'), kind: 'error' };
    case 'tickets_used':
      return {
        text: t('msg.tickets_used', { n: (error.problem.ticket_ids || []).length }),
        kind: 'error',
      };
    case 'ticket_void':
      return { text: t('msg.ticket_void'), kind: 'error' };
    case 'email_taken':
      return { text: t('msg.email_taken'), kind: 'error' };
    case 'invalid_credentials':
      return { text: t('msg.invalid_credentials'), kind: 'error' };
    case 'invalid_email':
      return { text: t('msg.invalid_email'), kind: 'error' };
    case 'weak_password':
      return { text: t('msg.weak_password'), kind: 'error' };
    case 'invalid_full_name':
      return { text: t('msg.invalid_full_name'), kind: 'error' };
    case 'invalid_phone':
      return { text: t('msg.invalid_phone'), kind: 'error' };
    case 'unauthorized':
    case 'invalid_refresh_token':
    case 'refresh_token_expired':
    case 'refresh_token_revoked':
    case 'refresh_token_reused':
      return { text: t('msg.unauthorized'), kind: 'error' };
    case 'forbidden':
      return { text: t('msg.forbidden'), kind: 'error' };
    case 'account_not_found':
      return { text: t('msg.account_not_found'), kind: 'error' };
    case 'validation_error':
      return { text: t('msg.validation', { fields: fieldNames(p) }), kind: 'error' };
    case 'already_exists':
      return { text: t('msg.already_exists'), kind: 'error' };
    case 'capacity_below_taken':
      return { text: t('msg.capacity_below_taken', { taken: p.taken ?? '?' }), kind: 'error' };
    default:
      return { text: t('msg.generic', { code }), kind: 'error' };
  }
}

/**
 * A message area for one form or panel, announced to screen readers. `show(kind, text)` for
 * success/info; `error(err, {disable})` explains an ApiError, and when the server asked to
 * wait, counts down ("retry in N s"), keeping `disable` (buttons) disabled until then.
 */
export function messageBox() {
  const box = h('div', { class: 'msg', 'aria-live': 'assertive', 'aria-atomic': 'true' });
  let timer = null;
  const stopTimer = () => {
    if (timer !== null) clearInterval(timer);
    timer = null;
  };
  onLeave(stopTimer);
  box.clear = () => {
    stopTimer();
    box.className = 'msg';
    box.replaceChildren();
  };
  box.show = (kind, text) => {
    box.clear();
    box.className = `msg msg-${kind}`;
    box.append(h('p', {}, text));
  };
  box.error = (error, { disable = [], onReady = null } = {}) => {
    const said = describe(error);
    box.clear();
    box.className = `msg msg-${said.kind}`;
    if (!said.retryAfter) {
      box.append(h('p', { role: 'alert' }, said.text));
      return said;
    }
    let left = said.retryAfter;
    // The sentence is announced once; the number then counts down silently.
    const [before, after] = t(said.key, { n: '\u0000' }).split('\u0000');
    const count = h('span', { class: 'secs', 'aria-live': 'off' }, String(left));
    box.append(h('p', { role: 'alert' }, before, count, after ?? ''));
    for (const button of disable) button.disabled = true;
    timer = setInterval(() => {
      left -= 1;
      if (left > 0) {
        count.textContent = String(left);
        return;
      }
      stopTimer();
      for (const button of disable) button.disabled = false;
      box.className = 'msg msg-info';
      box.replaceChildren(h('p', {}, t('msg.retry_now')));
      if (onReady) onReady();
    }, 1000);
    return said;
  };
  return box;
}

/** A status badge such as "已支付". */
export function badge(kind, text) {
  return h('span', { class: `badge badge-${kind}` }, text);
}

/** A definition list from [term, value] pairs (pairs with an empty value are left out). */
export function details(pairs) {
  const dl = h('dl', { class: 'facts' });
  for (const [term, value] of pairs) {
    if (value === null || value === undefined || value === '') continue;
    dl.append(h('div', {}, h('dt', {}, term), h('dd', {}, value)));
  }
  return dl;
}

/** Pagination links; `href(page)` builds each page's URL. */
export function pager(page, pageSize, total, href) {
  const pages = Math.max(1, Math.ceil(total / pageSize));
  // Nothing to show, but still a node: callers hand it to replaceChildren, which would print
  // a null as the word "null".
  if (pages <= 1) return document.createDocumentFragment();
  return h(
    'nav',
    { class: 'pager', 'aria-label': t('pager.label') },
    page > 1 ? h('a', { href: href(page - 1), rel: 'prev' }, t('pager.prev')) : null,
    h('span', { 'aria-current': 'page' }, t('pager.page', { page, pages })),
    page < pages ? h('a', { href: href(page + 1), rel: 'next' }, t('pager.next')) : null,
  );
}

/** Set a submit button's busy state (text and disabled) and give back a restore function. */
export function busy(button, text) {
  const before = button.textContent;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  button.textContent = text;
  return () => {
    button.textContent = before;
    button.removeAttribute('aria-busy');
    button.disabled = false;
  };
}
