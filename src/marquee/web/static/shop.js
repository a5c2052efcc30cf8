// The storefront pages: shows, a show's sessions and seats, signing in, orders, payment,
// e-tickets and refunds. Each page function renders into ctx.main.

import * as api from './api.js';
import { clock, dateTime, money, sessionTime, t, tOr } from './i18n.js';
import {
  announce,
  badge,
  busy,
  details,
  field,
  h,
  messageBox,
  onLeave,
  pager,
  poll,
} from './ui.js';

const PAGE_SIZE = 12;
const LIVE_SECONDS = 5;
const SANDBOX_TOKEN = (method) => `${method}_token_demo`;
const STATUS_KIND = {
  created: 'muted',
  pending_payment: 'warn',
  paid: 'ok',
  completed: 'ok',
  cancelled: 'muted',
  refunded: 'info',
};

function statusBadge(status) {
  return badge(STATUS_KIND[status] || 'muted', tOr(`status.${status}`, status));
}

/** Where to go after signing in: a local path only, never another site. */
function safeNext(value, fallback = '/') {
  return value && value.startsWith('/') && !value.startsWith('//') ? value : fallback;
}

/** Render a page that failed to load: the reason, and a way to retry when waiting helps. */
function failed(ctx, error, retry) {
  const box = messageBox();
  ctx.main.replaceChildren(h('section', {}, box));
  box.error(error, { onReady: retry });
  if (error.code === 'unauthorized') {
    box.append(h('p', {}, h('a', { href: loginHref() }, t('nav.login'))));
  }
}

// Each show's venue time zone (from the show's public page), so that session times read as
// the venue's clock, whatever the buyer's own zone. Unknown stays unknown (the browser's zone).
const zoneOfShow = new Map();

async function venueZones(showIds) {
  const missing = [...new Set(showIds)].filter((id) => !zoneOfShow.has(id));
  await Promise.all(
    missing.map(async (id) => {
      try {
        const found = await api.get(`/api/v1/shows/${encodeURIComponent(id)}`, { auth: 'none' });
        zoneOfShow.set(id, found.timezone);
      } catch {
        // The listing still shows the time, in the browser's zone and saying so.
      }
    }),
  );
  return zoneOfShow;
}

// A URL of this site as a path on the page's own origin.
function sameOrigin(url) {
  const parsed = new URL(url, location.origin);
  return parsed.pathname + parsed.search;
}

function loginHref(next = location.pathname + location.search) {
  return `/login?next=${encodeURIComponent(next)}`;
}

// -- facets: the cities and categories to filter by ----------------------------------------

let facetsPromise = null;

/** Cities and categories of the shows listed, fetched once per visit (the catalogue has no
 * facet endpoint; one page of up to 100 shows is enough to offer the choices). */
function facets() {
  if (!facetsPromise) {
    facetsPromise = api
      .get(`/api/v1/shows${api.query({ page_size: 100 })}`, { auth: 'none' })
      .then((page) => ({
        cities: [...new Set(page.shows.map((s) => s.city))].sort(),
        categories: [...new Set(page.shows.map((s) => s.category))].sort(),
      }))
      .catch((error) => {
        facetsPromise = null;
        throw error;
      });
  }
  return facetsPromise;
}

function options(select, values, current, emptyLabel) {
  const all = new Set(values);
  if (current) all.add(current);
  select.replaceChildren(
    h('option', { value: '' }, emptyLabel),
    ...[...all].map((value) => h('option', { value, selected: value === current }, value)),
  );
  select.value = current || '';
}

/** The home page's URL for these filters and page number. */
function homeUrl({ city, category, q }, page) {
  return `/${api.query({ city, category, q, page: page > 1 ? page : '' })}`;
}

/** When and why an order was cancelled, e.g. "…（超时未支付，自动取消）". */
function cancelledText(o) {
  if (!o.cancelled_at) return '';
  const why = o.cancel_reason ? tOr(`order.cancel_reason.${o.cancel_reason}`, o.cancel_reason) : '';
  return why ? `${dateTime(o.cancelled_at)} (${why})` : dateTime(o.cancelled_at);
}

// -- home: browse ----------------------------------------------------------------------------

export async function home(ctx) {
  ctx.title(t('shows.title'));
  const q = ctx.query;
  const filters = {
    city: q.get('city') || '',
    category: q.get('category') || '',
    q: q.get('q') || '',
    page: Math.max(1, Number.parseInt(q.get('page') || '1', 10) || 1),
  };
  const city = h('select', { name: 'city' });
  const category = h('select', { name: 'category' });
  options(city, [], filters.city, t('shows.all_cities'));
  options(category, [], filters.category, t('shows.all_categories'));
  const search = h('input', {
    type: 'search',
    name: 'q',
    value: filters.q,
    placeholder: t('shows.search_placeholder'),
    maxlength: 100,
  });
  const submit = h('button', { type: 'submit' }, t('shows.search_button'));
  const go = () =>
    ctx.navigate(
      homeUrl({ city: city.value, category: category.value, q: search.value.trim() }, 1),
    );
  const form = h(
    'form',
    {
      class: 'filters',
      role: 'search',
      'aria-label': t('shows.filters'),
      onsubmit: (event) => {
        event.preventDefault();
        go();
      },
    },
    field(t('shows.city'), city),
    field(t('shows.category'), category),
    field(t('shows.search'), search),
    h('div', { class: 'actions' }, submit),
  );
  city.addEventListener('change', () => go());
  category.addEventListener('change', () => go());
  const box = messageBox();
  const results = h('div', { class: 'results' });
  const count = h('p', { class: 'count', role: 'status' });
  const hasFilters = filters.city || filters.category || filters.q;
  ctx.main.replaceChildren(
    h(
      'section',
      {},
      h('h1', {}, t('shows.title')),
      form,
      hasFilters ? h('p', {}, h('a', { href: '/' }, t('shows.reset'))) : null,
      box,
      count,
      results,
    ),
  );

  facets()
    .then((found) => {
      options(city, found.cities, filters.city, t('shows.all_cities'));
      options(category, found.categories, filters.category, t('shows.all_categories'));
    })
    .catch(() => {
      // The filters still work with what the URL names; the list says what went wrong.
    });

  const load = async () => {
    box.clear();
    let page;
    try {
      const wanted = { ...filters, page_size: PAGE_SIZE };
      page = await api.get(`/api/v1/shows${api.query(wanted)}`, { auth: 'none' });
    } catch (error) {
      box.error(error, { disable: [submit], onReady: load });
      return;
    }
    if (!ctx.alive()) return;
    count.textContent = t('shows.count', { n: page.total });
    if (!page.shows.length) {
      results.replaceChildren(h('p', { class: 'empty' }, t('shows.none')));
      return;
    }
    const href = (n) => homeUrl(filters, n);
    results.replaceChildren(
      h('ul', { class: 'cards' }, page.shows.map(showCard)),
      pager(page.page, page.page_size, page.total, href),
    );
  };
  await load();
}

function showCard(show) {
  return h(
    'li',
    { class: 'card' },
    h(
      'article',
      {},
      h('p', { class: 'kicker' }, show.category, ' · ', show.city),
      h('h2', {}, h('a', { href: `/shows/${encodeURIComponent(show.show_id)}` }, show.title)),
      h('p', { class: 'venue' }, show.venue),
      h(
        'p',
        { class: 'when' },
        show.date || t('shows.date_tbd'),
        show.last_session_at && show.first_session_at !== show.last_session_at
          ? ` – ${show.last_session_at.slice(0, 10)}`
          : '',
      ),
      show.status === 'on_sale'
        ? null
        : badge('muted', tOr(`shows.status.${show.status}`, show.status)),
    ),
  );
}

// -- one show: sessions, seats, buying ------------------------------------------------------

export async function show(ctx, showId) {
  const id = encodeURIComponent(showId);
  let detail;
  let sessions;
  try {
    [detail, sessions] = await Promise.all([
      api.get(`/api/v1/shows/${id}`, { auth: 'none' }),
      api.get(`/api/v1/shows/${id}/sessions`, { auth: 'none' }),
    ]);
  } catch (error) {
    ctx.title(t('shows.title'));
    failed(ctx, error, () => show(ctx, showId));
    return;
  }
  if (!ctx.alive()) return;
  ctx.title(detail.title);
  const list = sessions.sessions;
  const wanted = ctx.query.get('session');
  let current = list.find((s) => s.session_id === wanted) || list.find((s) => s.on_sale) || list[0];
  let chosenArea = ctx.query.get('area') || null;
  // An idempotency key per buying intent: a retry after a timeout or 429 cannot buy twice.
  let intentKey = api.newKey();

  const sessionBox = h('fieldset', { class: 'choices' }, h('legend', {}, t('show.session')));
  const areaBox = h('fieldset', { class: 'choices areas' }, h('legend', {}, t('show.areas')));
  const quantity = h('input', {
    type: 'number',
    name: 'quantity',
    min: 1,
    max: current ? current.per_user_limit : 4,
    value: Math.max(1, Number.parseInt(ctx.query.get('qty') || '1', 10) || 1),
    inputmode: 'numeric',
    required: true,
  });
  const quantityField = field(
    t('show.quantity'),
    quantity,
    t('show.limit', { n: current ? current.per_user_limit : 4 }),
  );
  const total = h('p', { class: 'total', 'aria-live': 'polite' });
  const buy = h('button', { type: 'submit', class: 'primary' }, t('show.buy'));
  const box = messageBox();
  const live = h('p', { class: 'live' });

  const areaOf = (areaId) =>
    current ? current.seat_areas.find((a) => a.area_id === areaId) || null : null;

  const newIntent = () => {
    intentKey = api.newKey();
  };

  const drawTotal = () => {
    const area = areaOf(chosenArea);
    const qty = Number.parseInt(quantity.value, 10);
    total.textContent =
      area && qty > 0 ? t('show.total', { amount: money(area.price * qty, area.currency) }) : '';
  };

  const drawSessions = () => {
    sessionBox.replaceChildren(h('legend', {}, t('show.session')));
    for (const s of list) {
      const input = h('input', {
        type: 'radio',
        name: 'session',
        value: s.session_id,
        checked: current && s.session_id === current.session_id,
        onchange: () => {
          current = s;
          chosenArea = null;
          quantity.max = String(s.per_user_limit);
          newIntent();
          drawAreas();
          drawTotal();
          liveUpdates.now();
        },
      });
      sessionBox.append(
        h(
          'label',
          { class: 'choice' },
          input,
          h('span', { class: 'choice-main' }, sessionTime(s.starts_at, detail.timezone)),
          badge(s.on_sale ? 'ok' : 'muted', s.on_sale ? t('show.on_sale') : t('show.not_on_sale')),
        ),
      );
    }
  };

  // Areas are drawn once per session and then updated in place, so a live update never
  // takes keyboard focus (or a screen reader's place) away from the radio a buyer is on.
  let areaEls = new Map();
  let drawnKey = null;
  const drawAreas = () => {
    const areas = current ? current.seat_areas : [];
    if (chosenArea && !areaOf(chosenArea)) chosenArea = null;
    const key = current
      ? `${current.session_id}|${areas.map((a) => `${a.area_id}:${a.name}:${a.price}`).join(',')}`
      : '';
    if (key !== drawnKey) {
      drawnKey = key;
      areaEls = new Map();
      areaBox.replaceChildren(h('legend', {}, t('show.areas')));
      if (!areas.length) areaBox.append(h('p', { class: 'empty' }, t('show.no_areas')));
      for (const area of areas) {
        const input = h('input', {
          type: 'radio',
          name: 'area',
          value: area.area_id,
          onchange: () => {
            chosenArea = area.area_id;
            newIntent();
            drawTotal();
          },
        });
        const left = h('span', { class: 'left' });
        const label = h(
          'label',
          { class: 'choice area', 'data-area': area.area_id },
          input,
          h('span', { class: 'choice-main' }, area.name),
          h('span', { class: 'price' }, money(area.price, area.currency)),
          left,
        );
        areaEls.set(area.area_id, { input, left, label });
        areaBox.append(label);
      }
    }
    for (const area of areas) {
      const el = areaEls.get(area.area_id);
      const soldOut = area.available <= 0;
      el.input.disabled = soldOut || !current.on_sale;
      el.input.checked = area.area_id === chosenArea;
      el.label.classList.toggle('sold-out', soldOut);
      el.left.replaceChildren(
        soldOut ? badge('bad', t('show.sold_out')) : t('show.available', { n: area.available }),
      );
    }
    buy.disabled = !current || !current.on_sale || !areas.length;
    if (current) {
      quantityField.querySelector('.hint').textContent = t('show.limit', {
        n: current.per_user_limit,
      });
    }
  };

  const applyAvailability = (availability) => {
    if (!current || availability.session_id !== current.session_id) return;
    const before = new Map(current.seat_areas.map((a) => [a.area_id, a.available]));
    current.on_sale = availability.on_sale;
    current.seat_areas = availability.seat_areas;
    for (const area of current.seat_areas) {
      if (
        area.available <= 0 &&
        (before.get(area.area_id) ?? 0) > 0 &&
        area.area_id === chosenArea
      ) {
        announce(t('show.now_sold_out', { area: area.name }));
      }
    }
    drawAreas();
    drawTotal();
  };

  const liveUpdates = poll(LIVE_SECONDS, async () => {
    if (!current) return undefined;
    try {
      const availability = await api.get(
        `/api/v1/sessions/${encodeURIComponent(current.session_id)}/availability`,
        { auth: 'none' },
      );
      if (!ctx.alive()) return undefined;
      applyAvailability(availability);
      live.textContent = t('show.live', { n: LIVE_SECONDS, time: clock() });
      return undefined;
    } catch (error) {
      if (error.retryAfter) {
        live.textContent = t('show.live_paused', { n: error.retryAfter });
        return error.retryAfter;
      }
      live.textContent = t('show.live_failed');
      return undefined;
    }
  });

  quantity.addEventListener('input', () => {
    newIntent();
    drawTotal();
  });

  const form = h(
    'form',
    {
      class: 'buy',
      'aria-labelledby': 'buy-heading',
      onsubmit: async (event) => {
        event.preventDefault();
        box.clear();
        if (!current) return;
        if (!chosenArea) {
          box.show('error', t('show.choose_area'));
          return;
        }
        const qty = Number.parseInt(quantity.value, 10);
        if (!api.signedIn()) {
          const choice = { session: current.session_id, area: chosenArea, qty };
          const back = `/shows/${id}${api.query(choice)}`;
          ctx.navigate(`${loginHref(back)}&why=buy`);
          return;
        }
        const restore = busy(buy, t('show.buying'));
        try {
          const order = await api.post(
            '/api/v1/orders',
            { session_id: current.session_id, seat_area_id: chosenArea, quantity: qty },
            { auth: 'required', headers: { 'Idempotency-Key': intentKey } },
          );
          ctx.navigate(`/orders/${encodeURIComponent(order.order_id)}`);
        } catch (error) {
          restore();
          if (error.code === 'unauthorized') {
            ctx.navigate(loginHref());
            return;
          }
          // A refused order changes nothing: the next attempt is a new intent.
          if (!error.retryAfter && error.code !== 'network' && error.status !== 504) newIntent();
          box.error(error, { disable: [buy] });
          if (error.code === 'insufficient_inventory' || error.code === 'not_on_sale') {
            liveUpdates.now();
          }
        }
      },
    },
    h('h2', { id: 'buy-heading' }, t('show.sessions')),
    list.length
      ? [sessionBox, areaBox, quantityField, total, buy, box]
      : h('p', {}, t('show.no_sessions')),
  );

  ctx.main.replaceChildren(
    h(
      'section',
      { class: 'show' },
      h('nav', { class: 'crumbs' }, h('a', { href: '/' }, t('show.back'))),
      h('h1', {}, detail.title),
      h('p', { class: 'kicker' }, detail.category, ' · ', detail.city),
      details([
        [t('show.venue'), detail.venue],
        [t('show.address'), detail.address],
      ]),
      detail.status === 'on_sale'
        ? null
        : badge('muted', tOr(`shows.status.${detail.status}`, detail.status)),
      form,
      list.length ? live : null,
      detail.description
        ? h(
            'section',
            { class: 'about' },
            h('h2', {}, t('show.about')),
            h('p', {}, detail.description),
          )
        : null,
    ),
  );
  if (list.length) {
    drawSessions();
    drawAreas();
    drawTotal();
  }
  if (ctx.query.get('area') && api.signedIn()) buy.focus();
}

// -- signing in -----------------------------------------------------------------------------

function authPage(ctx, mode) {
  const registering = mode === 'register';
  ctx.title(registering ? t('auth.register_title') : t('auth.login_title'));
  const next = safeNext(ctx.query.get('next'));
  const email = h('input', {
    type: 'email',
    name: 'email',
    autocomplete: 'email',
    required: true,
    maxlength: 320,
  });
  const password = h('input', {
    type: 'password',
    name: 'password',
    autocomplete: registering ? 'new-password' : 'current-password',
    required: true,
    minlength: registering ? 8 : null,
    maxlength: 128,
  });
  const fullName = registering
    ? h('input', {
        type: 'text',
        name: 'full_name',
        autocomplete: 'name',
        required: true,
        maxlength: 400,
      })
    : null;
  const submit = h(
    'button',
    { type: 'submit', class: 'primary' },
    registering ? t('auth.register') : t('auth.login'),
  );
  const box = messageBox();
  const other = registering ? '/login' : '/register';
  const keep = ctx.query.get('next') ? `?next=${encodeURIComponent(next)}` : '';
  const form = h(
    'form',
    {
      class: 'auth',
      onsubmit: async (event) => {
        event.preventDefault();
        box.clear();
        const restore = busy(submit, t('auth.working'));
        try {
          const profile = registering
            ? await api.register(email.value.trim(), password.value, fullName.value.trim())
            : await api.login(email.value.trim(), password.value);
          announce(t('auth.welcome', { name: profile.full_name || profile.email }));
          ctx.navigate(next, { replace: true });
        } catch (error) {
          restore();
          box.error(error, { disable: [submit] });
        }
      },
    },
    registering ? field(t('auth.full_name'), fullName) : null,
    field(t('auth.email'), email),
    field(t('auth.password'), password, registering ? t('auth.password_hint') : null),
    h('div', { class: 'actions' }, submit),
    box,
  );
  ctx.main.replaceChildren(
    h(
      'section',
      { class: 'narrow' },
      h('h1', {}, registering ? t('auth.register_title') : t('auth.login_title')),
      ctx.query.get('why') === 'buy'
        ? h('p', { class: 'msg msg-info' }, t('show.sign_in_to_buy'))
        : null,
      form,
      h(
        'p',
        {},
        registering ? t('auth.have_account') : t('auth.no_account'),
        ' ',
        h('a', { href: `${other}${keep}` }, registering ? t('auth.login') : t('auth.register')),
      ),
    ),
  );
  (registering ? fullName : email).focus();
}

export function login(ctx) {
  authPage(ctx, 'login');
}

export function register(ctx) {
  authPage(ctx, 'register');
}

function requireSignIn(ctx) {
  if (api.signedIn()) return true;
  ctx.navigate(loginHref(), { replace: true });
  return false;
}

// -- my orders ------------------------------------------------------------------------------

export async function orders(ctx) {
  ctx.title(t('orders.title'));
  if (!requireSignIn(ctx)) return;
  const page = Math.max(1, Number.parseInt(ctx.query.get('page') || '1', 10) || 1);
  let found;
  try {
    found = await api.get(`/api/v1/orders${api.query({ page, page_size: 10 })}`, {
      auth: 'required',
    });
  } catch (error) {
    failed(ctx, error, () => orders(ctx));
    return;
  }
  const zones = await venueZones(found.orders.map((o) => o.show_id));
  if (!ctx.alive()) return;
  const items = found.orders.map((order) =>
    h(
      'li',
      { class: 'card order-card' },
      h(
        'article',
        {},
        h('p', { class: 'kicker' }, t('orders.order_no', { id: order.order_id })),
        h(
          'h2',
          {},
          h('a', { href: `/orders/${encodeURIComponent(order.order_id)}` }, order.show_title),
        ),
        h(
          'p',
          { class: 'venue' },
          order.venue,
          ' · ',
          sessionTime(order.session_starts_at, zones.get(order.show_id)),
        ),
        h(
          'p',
          {},
          order.items.map((item) => `${item.area_name} × ${item.quantity}`).join(', '),
          ' · ',
          money(order.total_amount, order.currency),
        ),
        statusBadge(order.status),
      ),
    ),
  );
  ctx.main.replaceChildren(
    h(
      'section',
      {},
      h('h1', {}, t('orders.title')),
      items.length
        ? h('ul', { class: 'cards orders' }, items)
        : h(
            'p',
            { class: 'empty' },
            t('orders.none'),
            ' ',
            h('a', { href: '/' }, t('orders.browse')),
          ),
      pager(found.page, found.page_size, found.total, (n) => `/orders${api.query({ page: n })}`),
    ),
  );
}

// -- one order: pay, cancel, tickets, refund ------------------------------------------------

export async function order(ctx, orderId) {
  ctx.title(t('order.title'));
  if (!requireSignIn(ctx)) return;
  const path = `/api/v1/orders/${encodeURIComponent(orderId)}`;
  let data;
  try {
    data = await api.get(path, { auth: 'required' });
  } catch (error) {
    failed(ctx, error, () => order(ctx, orderId));
    return;
  }
  const zone = (await venueZones([data.show_id])).get(data.show_id);
  if (!ctx.alive()) return;
  const notice = messageBox();
  const reload = async (message) => {
    try {
      const fresh = await api.get(path, { auth: 'required' });
      if (!ctx.alive()) return;
      draw(fresh, message);
    } catch (error) {
      notice.error(error);
    }
  };

  const draw = (o, message = null) => {
    ctx.title(`${t('order.title')} · ${o.show_title}`);
    const item = o.items[0] || { area_name: '', quantity: o.quantity, unit_price: o.total_amount };
    const section = h(
      'section',
      { class: 'order' },
      h('nav', { class: 'crumbs' }, h('a', { href: '/orders' }, t('order.back'))),
      h('h1', {}, o.show_title),
      h('p', { class: 'kicker' }, t('orders.order_no', { id: o.order_id })),
      h('p', { class: 'order-status' }, statusBadge(o.status)),
      notice,
      details([
        [t('order.venue'), o.venue],
        [t('order.session'), sessionTime(o.session_starts_at, zone)],
        [t('order.area'), item.area_name],
        [t('order.quantity'), String(o.quantity)],
        [t('order.unit_price'), money(item.unit_price, o.currency)],
        [t('order.total'), money(o.total_amount, o.currency)],
        [t('order.created_at'), dateTime(o.created_at)],
        [t('order.paid_at'), dateTime(o.paid_at)],
        [t('order.cancelled_at'), cancelledText(o)],
        [t('order.refunded_at'), dateTime(o.refunded_at)],
      ]),
      o.status === 'pending_payment' ? payment(o) : null,
      o.tickets && o.tickets.length ? tickets(o) : null,
      refund(o),
      history(o),
    );
    ctx.main.replaceChildren(section);
    if (message) notice.show('ok', message);
  };

  const payment = (o) => {
    const method = h(
      'select',
      { name: 'payment_method' },
      ['alipay', 'wechat_pay', 'card'].map((m) =>
        h('option', { value: m }, t(`order.method.${m}`)),
      ),
    );
    const token = h('input', {
      type: 'text',
      name: 'payment_token',
      value: SANDBOX_TOKEN('alipay'),
      autocomplete: 'off',
      spellcheck: 'false',
      required: true,
      maxlength: 512,
    });
    method.addEventListener('change', () => {
      // Follow the method with the demo token unless the buyer typed their own.
      if (/_token_demo$/.test(token.value)) token.value = SANDBOX_TOKEN(method.value);
    });
    const pay = h(
      'button',
      { type: 'submit', class: 'primary' },
      t('order.pay', { amount: money(o.total_amount, o.currency) }),
    );
    const cancel = h('button', { type: 'button', class: 'secondary' }, t('order.cancel'));
    const confirm = h('div', { class: 'confirm', hidden: true });
    const box = messageBox();
    const countdown = h('p', { class: 'countdown', role: 'timer', 'aria-live': 'off' });
    const deadline = Date.parse(o.expires_at);
    let ticking = null;
    const tick = () => {
      const left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
      if (left <= 0) {
        clearInterval(ticking);
        countdown.textContent = t('order.expired');
        countdown.classList.add('expired');
        pay.disabled = true;
        // The server's sweeper cancels it shortly; show the outcome when it has.
        setTimeout(() => reload(), 3000);
        return;
      }
      const mm = String(Math.floor(left / 60)).padStart(2, '0');
      const ss = String(left % 60).padStart(2, '0');
      countdown.textContent = t('order.countdown', { time: `${mm}:${ss}` });
    };
    ticking = setInterval(tick, 1000);
    onLeave(() => clearInterval(ticking));
    tick();

    cancel.addEventListener('click', () => {
      confirm.hidden = false;
      confirm.querySelector('button').focus();
    });
    confirm.append(
      h('p', {}, t('order.cancel_confirm')),
      h(
        'button',
        {
          type: 'button',
          class: 'danger',
          onclick: async (event) => {
            const restore = busy(event.currentTarget, t('auth.working'));
            try {
              await api.post(`${path}/cancel`, undefined, { auth: 'required' });
              clearInterval(ticking);
              await reload(t('order.cancelled_notice'));
            } catch (error) {
              restore();
              box.error(error);
            }
          },
        },
        t('order.cancel_yes'),
      ),
      h(
        'button',
        {
          type: 'button',
          class: 'secondary',
          onclick: () => {
            confirm.hidden = true;
            cancel.focus();
          },
        },
        t('order.cancel_no'),
      ),
    );

    return h(
      'form',
      {
        class: 'pay panel',
        'aria-labelledby': 'pay-heading',
        onsubmit: async (event) => {
          event.preventDefault();
          box.clear();
          const restore = busy(pay, t('order.paying'));
          try {
            await api.post(
              `${path}/pay`,
              { payment_method: method.value, payment_token: token.value.trim() },
              { auth: 'required' },
            );
            clearInterval(ticking);
            await reload(t('order.paid_notice'));
          } catch (error) {
            restore();
            box.error(error, { disable: [pay] });
            if (error.code === 'invalid_state_transition') reload();
          }
        },
      },
      h('h2', { id: 'pay-heading' }, t('order.pay_title')),
      countdown,
      field(t('order.method'), method),
      field(t('order.token'), token, t('order.token_hint')),
      h('div', { class: 'actions' }, pay, cancel),
      confirm,
      box,
    );
  };

  const tickets = (o) =>
    h(
      'section',
      { class: 'tickets', 'aria-labelledby': 'tickets-heading' },
      h('h2', { id: 'tickets-heading' }, t('order.tickets')),
      h(
        'ul',
        { class: 'ticket-list' },
        o.tickets.map((ticket) => {
          const payload = h('code', { class: 'payload' }, ticket.qr_payload);
          const copy = h('button', { type: 'button', class: 'secondary small' }, t('order.copy'));
          copy.addEventListener('click', async () => {
            try {
              await navigator.clipboard.writeText(ticket.qr_payload);
              copy.textContent = t('order.copied');
            } catch {
              // No clipboard permission: select the text so it can be copied by hand.
              const range = document.createRange();
              range.selectNodeContents(payload);
              const selection = window.getSelection();
              selection.removeAllRanges();
              selection.addRange(range);
            }
          });
          let state = tOr(`order.ticket.${ticket.status}`, ticket.status);
          if (ticket.checked_in_at) {
            state = t('order.ticket.checked_in', {
              time: sessionTime(ticket.checked_in_at, zone),
            });
          }
          return h(
            'li',
            { class: `ticket${ticket.status === 'void' ? ' void' : ''}` },
            h('img', {
              // The link is absolute under the configured public URL; the page loads it from its
              // own origin (its Content-Security-Policy allows no other), however it was reached.
              src: sameOrigin(ticket.qr_code),
              alt: t('order.ticket_alt', { n: ticket.seat_number }),
              width: 200,
              height: 200,
              class: 'qr',
            }),
            h(
              'p',
              { class: 'seat' },
              t('order.ticket_seat', { n: ticket.seat_number }),
              ' · ',
              state,
            ),
            h('details', {}, h('summary', {}, t('order.ticket_payload')), payload, copy),
          );
        }),
      ),
    );

  const refund = (o) => {
    const requests = o.refund_requests || [];
    const latest = requests.length ? requests[requests.length - 1] : null;
    const lines = requests.map((r) =>
      h(
        'p',
        { class: `refund-state refund-${r.status}` },
        tOr(`order.refund.${r.status}`, r.status),
        ' · ',
        dateTime(r.decided_at || r.created_at),
        r.note ? ` · ${t('order.refund_note', { note: r.note })}` : '',
      ),
    );
    const open = latest && latest.status !== 'rejected';
    if (o.status !== 'paid' || open) {
      return lines.length
        ? h('section', { class: 'panel' }, h('h2', {}, t('order.refund_title')), lines)
        : null;
    }
    const reason = h('textarea', { name: 'reason', rows: 2, maxlength: 500 });
    const submit = h('button', { type: 'submit', class: 'secondary' }, t('order.refund_request'));
    const box = messageBox();
    return h(
      'form',
      {
        class: 'panel refund',
        'aria-labelledby': 'refund-heading',
        onsubmit: async (event) => {
          event.preventDefault();
          box.clear();
          const restore = busy(submit, t('auth.working'));
          try {
            const text = reason.value.trim();
            await api.post(`${path}/refund-requests`, text ? { reason: text } : {}, {
              auth: 'required',
            });
            await reload(t('order.refund_sent'));
          } catch (error) {
            restore();
            box.error(error, { disable: [submit] });
          }
        },
      },
      h('h2', { id: 'refund-heading' }, t('order.refund_title')),
      lines,
      field(t('order.refund_reason'), reason),
      h('div', { class: 'actions' }, submit),
      box,
    );
  };

  const history = (o) =>
    o.history && o.history.length
      ? h(
          'details',
          { class: 'history' },
          h('summary', {}, t('order.history')),
          h(
            'ol',
            {},
            o.history.map((change) =>
              h(
                'li',
                {},
                dateTime(change.at),
                ' · ',
                tOr(`status.${change.to_status}`, change.to_status),
                ` (${tOr(`cause.${change.cause}`, change.cause)})`,
              ),
            ),
          ),
        )
      : null;

  draw(data);
}
