// The organiser console (admin role): venues, shows, sessions and seat areas; sale status;
// live per-area sales; refund review; ticket check-in. Everything through the public admin API.

import * as api from './api.js';
import { clock, dateTime, money, t, tOr } from './i18n.js';
import { announce, badge, busy, field, h, messageBox, pager, poll } from './ui.js';

const LIVE_SECONDS = 5;
const STATUS_KIND = { on_sale: 'ok', off_sale: 'muted', draft: 'warn' };

function showStatus(status) {
  return badge(STATUS_KIND[status] || 'muted', tOr(`shows.status.${status}`, status));
}

/** The console's frame: heading, section tabs, then `body`. */
function frame(ctx, heading, ...body) {
  const here = location.pathname;
  const tab = (href, text) =>
    h(
      'a',
      {
        href,
        'aria-current':
          here === href || (href === '/console' && here.startsWith('/console/shows'))
            ? 'page'
            : null,
      },
      text,
    );
  ctx.main.replaceChildren(
    h(
      'section',
      { class: 'console' },
      h(
        'nav',
        { class: 'tabs', 'aria-label': t('console.tabs') },
        tab('/console', t('console.shows')),
        tab('/console/refunds', t('console.refunds')),
        tab('/console/checkin', t('console.checkin')),
      ),
      h('h1', {}, heading),
      ...body,
    ),
  );
}

/** True when the visitor is an organiser; otherwise says why not and returns false. */
function organiserOnly(ctx) {
  if (!api.signedIn()) {
    ctx.navigate(`/login?next=${encodeURIComponent(location.pathname + location.search)}`, {
      replace: true,
    });
    return false;
  }
  if (api.isAdmin()) return true;
  ctx.title(t('console.title'));
  ctx.main.replaceChildren(
    h(
      'section',
      { class: 'narrow' },
      h('h1', {}, t('console.title')),
      h('p', { class: 'msg msg-error', role: 'alert' }, t('console.admin_only')),
      h('p', {}, t('console.sign_in_admin')),
    ),
  );
  return false;
}

function failed(ctx, heading, error, retry) {
  const box = messageBox();
  frame(ctx, heading, box);
  box.error(error, { onReady: retry });
}

function table(headers, rows, foot = null) {
  return h(
    'div',
    { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': headers.join(', ') },
    h(
      'table',
      {},
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          headers.map((text) => h('th', { scope: 'col' }, text)),
        ),
      ),
      h('tbody', {}, rows),
      foot,
    ),
  );
}

// -- venue-local times ---------------------------------------------------------------------

function offsetAt(utcMs, timeZone) {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    })
      .formatToParts(new Date(utcMs))
      .map((part) => [part.type, part.value]),
  );
  const wall = Date.UTC(
    +parts.year,
    +parts.month - 1,
    +parts.day,
    +parts.hour,
    +parts.minute,
    +parts.second,
  );
  return wall - utcMs;
}

/** A datetime-local value ("2027-05-01T19:30") read as wall time in `timeZone`, as UTC ISO. */
export function venueTimeToIso(value, timeZone) {
  const [day, time] = value.split('T');
  const [y, m, d] = day.split('-').map(Number);
  const [hh, mm] = time.split(':').map(Number);
  const wall = Date.UTC(y, m - 1, d, hh, mm);
  try {
    // Twice: the offset at the first guess may differ from the offset at the answer (DST).
    let utc = wall - offsetAt(wall, timeZone);
    utc = wall - offsetAt(utc, timeZone);
    return new Date(utc).toISOString();
  } catch {
    return new Date(value).toISOString();
  }
}

// -- shows ---------------------------------------------------------------------------------

export async function shows(ctx) {
  ctx.title(t('console.shows'));
  if (!organiserOnly(ctx)) return;
  const status = ctx.query.get('status') || '';
  const page = Math.max(1, Number.parseInt(ctx.query.get('page') || '1', 10) || 1);
  let found;
  let venues;
  try {
    [found, venues] = await Promise.all([
      api.get(`/api/v1/admin/shows${api.query({ status, page, page_size: 20 })}`, {
        auth: 'required',
      }),
      api.get('/api/v1/admin/venues?page_size=100', { auth: 'required' }),
    ]);
  } catch (error) {
    failed(ctx, t('console.shows'), error, () => shows(ctx));
    return;
  }
  if (!ctx.alive()) return;
  const notice = messageBox();

  const filter = h(
    'select',
    {
      name: 'status',
      onchange: (event) => ctx.navigate(`/console${api.query({ status: event.target.value })}`),
    },
    h('option', { value: '' }, t('console.all_statuses')),
    ['draft', 'on_sale', 'off_sale'].map((s) =>
      h('option', { value: s, selected: s === status }, t(`shows.status.${s}`)),
    ),
  );

  const rows = found.shows.map((item) => {
    const state = h('td', {}, showStatus(item.status));
    const actions = h('td', { class: 'row-actions' });
    const drawActions = (current) => {
      actions.replaceChildren(
        h('a', { href: `/console/shows/${encodeURIComponent(item.show_id)}` }, t('console.manage')),
        ...statusButtons(
          item,
          current,
          (next) => {
            item.status = next;
            state.replaceChildren(showStatus(next));
            drawActions(next);
          },
          notice,
        ),
      );
    };
    drawActions(item.status);
    return h(
      'tr',
      { 'data-show': item.show_id },
      h('th', { scope: 'row' }, item.title),
      h('td', {}, item.city),
      h('td', {}, item.venue),
      h('td', {}, item.category),
      h('td', {}, item.date || '—'),
      state,
      actions,
    );
  });

  frame(
    ctx,
    t('console.shows'),
    h('div', { class: 'filters' }, field(t('console.status'), filter)),
    notice,
    rows.length
      ? table(
          [
            t('console.show'),
            t('console.city'),
            t('console.venue'),
            t('console.category'),
            t('console.date'),
            t('console.status'),
            t('console.actions'),
          ],
          rows,
        )
      : h('p', { class: 'empty' }, t('console.no_shows')),
    pager(
      found.page,
      found.page_size,
      found.total,
      (n) => `/console${api.query({ status, page: n })}`,
    ),
    h(
      'div',
      { class: 'two-columns' },
      newShowForm(ctx, venues.venues, found.shows),
      newVenueForm(ctx),
    ),
  );
}

/** Buttons moving a show between draft / on sale / off sale. */
function statusButtons(item, current, onChanged, notice) {
  const targets = {
    draft: ['on_sale'],
    on_sale: ['off_sale'],
    off_sale: ['on_sale', 'draft'],
  }[current] || ['on_sale'];
  const labels = {
    on_sale: t('console.put_on_sale'),
    off_sale: t('console.take_off_sale'),
    draft: t('console.to_draft'),
  };
  return targets.map((next) =>
    h(
      'button',
      {
        type: 'button',
        class: next === 'on_sale' ? 'primary small' : 'secondary small',
        onclick: async (event) => {
          notice.clear();
          const restore = busy(event.currentTarget, t('auth.working'));
          try {
            const saved = await api.patch(
              `/api/v1/admin/shows/${encodeURIComponent(item.show_id)}`,
              { status: next },
              { auth: 'required' },
            );
            onChanged(saved.status);
            notice.show(
              'ok',
              t('console.status_changed', {
                title: saved.title,
                status: tOr(`shows.status.${saved.status}`, saved.status),
              }),
            );
          } catch (error) {
            restore();
            notice.error(error);
          }
        },
      },
      labels[next],
    ),
  );
}

function newVenueForm(ctx) {
  const name = h('input', { type: 'text', name: 'name', required: true, maxlength: 200 });
  const city = h('input', { type: 'text', name: 'city', required: true, maxlength: 64 });
  const address = h('input', { type: 'text', name: 'address', maxlength: 500 });
  const timezone = h('input', {
    type: 'text',
    name: 'timezone',
    value: 'Asia/Shanghai',
    required: true,
    maxlength: 64,
  });
  const submit = h('button', { type: 'submit' }, t('console.create_venue'));
  const box = messageBox();
  return h(
    'form',
    {
      class: 'panel',
      'aria-labelledby': 'new-venue',
      onsubmit: async (event) => {
        event.preventDefault();
        box.clear();
        const restore = busy(submit, t('auth.working'));
        try {
          const venue = await api.post(
            '/api/v1/admin/venues',
            {
              name: name.value.trim(),
              city: city.value.trim(),
              address: address.value.trim(),
              timezone: timezone.value.trim(),
            },
            { auth: 'required' },
          );
          announce(t('console.venue_created', { name: venue.name }));
          ctx.navigate(location.pathname + location.search, { replace: true });
        } catch (error) {
          restore();
          box.error(error, { disable: [submit] });
        }
      },
    },
    h('h2', { id: 'new-venue' }, t('console.new_venue')),
    field(t('console.venue_name'), name),
    field(t('console.city'), city),
    field(t('console.address'), address),
    field(t('console.timezone'), timezone),
    h('div', { class: 'actions' }, submit),
    box,
  );
}

function newShowForm(ctx, venues, knownShows) {
  const title = h('input', { type: 'text', name: 'title', required: true, maxlength: 200 });
  const categories = [...new Set(knownShows.map((s) => s.category))].sort();
  const category = h('input', {
    type: 'text',
    name: 'category',
    required: true,
    maxlength: 32,
    list: 'category-choices',
  });
  const choices = h(
    'datalist',
    { id: 'category-choices' },
    categories.map((c) => h('option', { value: c })),
  );
  const venue = h(
    'select',
    { name: 'venue_id', required: true },
    h('option', { value: '' }, t('console.choose_venue')),
    venues.map((v) => h('option', { value: v.venue_id }, `${v.name} · ${v.city}`)),
  );
  const description = h('textarea', { name: 'description', rows: 3, maxlength: 20000 });
  const status = h(
    'select',
    { name: 'status' },
    ['draft', 'on_sale'].map((s) => h('option', { value: s }, t(`shows.status.${s}`))),
  );
  const submit = h('button', { type: 'submit', class: 'primary' }, t('console.create_show'));
  const box = messageBox();
  return h(
    'form',
    {
      class: 'panel',
      'aria-labelledby': 'new-show',
      onsubmit: async (event) => {
        event.preventDefault();
        box.clear();
        const restore = busy(submit, t('auth.working'));
        try {
          const created = await api.post(
            '/api/v1/admin/shows',
            {
              title: title.value.trim(),
              category: category.value.trim(),
              venue_id: venue.value,
              description: description.value.trim(),
              status: status.value,
            },
            { auth: 'required' },
          );
          announce(t('console.show_created', { title: created.title }));
          ctx.navigate(`/console/shows/${encodeURIComponent(created.show_id)}`);
        } catch (error) {
          restore();
          box.error(error, { disable: [submit] });
        }
      },
    },
    h('h2', { id: 'new-show' }, t('console.new_show')),
    field(t('console.title_field'), title),
    field(t('console.category'), category),
    choices,
    field(t('console.venue'), venue),
    field(t('console.description'), description),
    field(t('console.initial_status'), status),
    h('div', { class: 'actions' }, submit),
    box,
  );
}

// -- one show: sessions, seat areas, live sales ---------------------------------------------

function cents(price) {
  return Math.round(Number(price) * 100);
}

function areaRows(areas) {
  return areas.map((area) =>
    h(
      'tr',
      { 'data-area': area.area_id },
      h('th', { scope: 'row' }, area.name),
      h('td', { class: 'num' }, money(area.price, area.currency)),
      h('td', { class: 'num' }, String(area.capacity)),
      h('td', { class: 'num' }, String(area.reserved)),
      h('td', { class: 'num' }, String(area.sold)),
      h('td', { class: 'num' }, String(area.available)),
      h(
        'td',
        { class: 'num revenue' },
        money((cents(area.price) * area.sold) / 100, area.currency),
      ),
    ),
  );
}

function areaTotals(areas) {
  const sum = (key) => areas.reduce((total, area) => total + area[key], 0);
  const revenue = new Map();
  for (const area of areas) {
    revenue.set(area.currency, (revenue.get(area.currency) || 0) + cents(area.price) * area.sold);
  }
  const revenueText = [...revenue].map(([currency, c]) => money(c / 100, currency)).join(' + ');
  return h(
    'tfoot',
    {},
    h(
      'tr',
      {},
      h('th', { scope: 'row' }, t('console.total')),
      h('td', {}),
      h('td', { class: 'num' }, String(sum('capacity'))),
      h('td', { class: 'num' }, String(sum('reserved'))),
      h('td', { class: 'num' }, String(sum('sold'))),
      h('td', { class: 'num' }, String(sum('available'))),
      h('td', { class: 'num revenue' }, revenueText || '—'),
    ),
  );
}

const AREA_HEADERS = () => [
  t('console.area'),
  t('console.price'),
  t('console.capacity'),
  t('console.reserved'),
  t('console.sold'),
  t('console.available'),
  t('console.revenue'),
];

export async function show(ctx, showId) {
  ctx.title(t('console.shows'));
  if (!organiserOnly(ctx)) return;
  const id = encodeURIComponent(showId);
  let item;
  let sessions;
  try {
    [item, sessions] = await Promise.all([
      api.get(`/api/v1/admin/shows/${id}`, { auth: 'required' }),
      api.get(`/api/v1/admin/shows/${id}/sessions`, { auth: 'required' }),
    ]);
  } catch (error) {
    failed(ctx, t('console.shows'), error, () => show(ctx, showId));
    return;
  }
  let timezone = 'Asia/Shanghai';
  try {
    const venue = await api.get(`/api/v1/admin/venues/${encodeURIComponent(item.venue_id)}`, {
      auth: 'required',
    });
    timezone = venue.timezone;
  } catch {
    // Keep the default zone; the form says which zone it uses.
  }
  if (!ctx.alive()) return;
  ctx.title(item.title);
  const notice = messageBox();
  const state = h('span', {}, showStatus(item.status));
  const actions = h('div', { class: 'row-actions' });
  let liveUpdates = null;
  const drawActions = () => {
    actions.replaceChildren(
      ...statusButtons(
        item,
        item.status,
        (next) => {
          item.status = next;
          state.replaceChildren(showStatus(next));
          drawActions();
          if (liveUpdates) liveUpdates.now();
        },
        notice,
      ),
      h('a', { href: `/shows/${id}` }, t('console.public_page')),
    );
  };
  drawActions();

  const live = h('p', { class: 'live' });
  const tables = new Map();
  const saleBadge = (onSale) =>
    badge(
      onSale ? 'ok' : 'muted',
      onSale ? t('console.session_on_sale') : t('console.session_not_on_sale'),
    );
  const blocks = sessions.sessions.map((session) => {
    const holder = h('div', { class: 'area-table' });
    const onSale = h('span', {}, saleBadge(session.on_sale));
    tables.set(session.session_id, { holder, onSale });
    return h(
      'section',
      { class: 'panel session', 'data-session': session.session_id },
      // The venue's clock, as the API gives it, and the zone it is in.
      h('h3', {}, session.date, ` (${timezone}) `, onSale),
      h('p', { class: 'hint' }, t('console.per_user_limit'), ': ', String(session.per_user_limit)),
      holder,
      newAreaForm(ctx, session),
    );
  });

  const drawTable = (sessionId, areas) => {
    const entry = tables.get(sessionId);
    if (!areas.length) {
      entry.holder.replaceChildren(h('p', { class: 'empty' }, t('console.no_areas')));
      return;
    }
    entry.holder.replaceChildren(table(AREA_HEADERS(), areaRows(areas), areaTotals(areas)));
  };

  // Sales and whether each session is on sale (it follows the show's status and the sale
  // window), refreshed together.
  liveUpdates = poll(LIVE_SECONDS, async () => {
    try {
      const [fresh, ...answers] = await Promise.all([
        api.get(`/api/v1/admin/shows/${id}/sessions`, { auth: 'required' }),
        ...sessions.sessions.map((s) =>
          api.get(`/api/v1/admin/sessions/${encodeURIComponent(s.session_id)}/seat-areas`, {
            auth: 'required',
          }),
        ),
      ]);
      if (!ctx.alive()) return undefined;
      sessions.sessions.forEach((s, i) => drawTable(s.session_id, answers[i].seat_areas));
      for (const s of fresh.sessions) {
        const entry = tables.get(s.session_id);
        if (entry) entry.onSale.replaceChildren(saleBadge(s.on_sale));
      }
      live.textContent = t('console.live', { n: LIVE_SECONDS, time: clock() });
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

  frame(
    ctx,
    item.title,
    h('p', { class: 'kicker' }, item.category, ' · ', item.venue, ' · ', item.city, ' · ', state),
    actions,
    notice,
    h('h2', {}, t('console.sessions')),
    live,
    blocks.length ? blocks : h('p', { class: 'empty' }, t('console.no_sessions')),
    newSessionForm(ctx, showId, timezone),
  );
}

function newSessionForm(ctx, showId, timezone) {
  const zone = t('console.local_time', { tz: timezone });
  const starts = h('input', { type: 'datetime-local', name: 'starts_at', required: true });
  const ends = h('input', { type: 'datetime-local', name: 'ends_at', required: true });
  const saleStarts = h('input', { type: 'datetime-local', name: 'sale_starts_at' });
  const limit = h('input', {
    type: 'number',
    name: 'per_user_limit',
    min: 1,
    max: 100,
    value: 4,
    required: true,
  });
  const submit = h('button', { type: 'submit', class: 'primary' }, t('console.create_session'));
  const box = messageBox();
  return h(
    'form',
    {
      class: 'panel',
      'aria-labelledby': 'new-session',
      onsubmit: async (event) => {
        event.preventDefault();
        box.clear();
        const restore = busy(submit, t('auth.working'));
        try {
          const body = {
            starts_at: venueTimeToIso(starts.value, timezone),
            ends_at: venueTimeToIso(ends.value, timezone),
            per_user_limit: Number.parseInt(limit.value, 10),
          };
          if (saleStarts.value) body.sale_starts_at = venueTimeToIso(saleStarts.value, timezone);
          const created = await api.post(
            `/api/v1/admin/shows/${encodeURIComponent(showId)}/sessions`,
            body,
            { auth: 'required' },
          );
          announce(t('console.session_created', { date: created.date }));
          ctx.navigate(location.pathname, { replace: true });
        } catch (error) {
          restore();
          box.error(error, { disable: [submit] });
        }
      },
    },
    h('h2', { id: 'new-session' }, t('console.new_session')),
    field(t('console.starts_at'), starts, zone),
    field(t('console.ends_at'), ends, zone),
    field(t('console.sale_starts_at'), saleStarts, zone),
    field(t('console.per_user_limit'), limit),
    h('div', { class: 'actions' }, submit),
    box,
  );
}

function newAreaForm(ctx, session) {
  const name = h('input', { type: 'text', name: 'name', required: true, maxlength: 100 });
  const price = h('input', {
    type: 'number',
    name: 'price',
    min: 0,
    step: '0.01',
    required: true,
    inputmode: 'decimal',
  });
  const capacity = h('input', {
    type: 'number',
    name: 'capacity',
    min: 0,
    max: 1000000,
    required: true,
    inputmode: 'numeric',
  });
  const submit = h('button', { type: 'submit' }, t('console.create_area'));
  const box = messageBox();
  const headingId = `new-area-${session.session_id}`;
  return h(
    'form',
    {
      class: 'inline-form',
      'aria-labelledby': headingId,
      onsubmit: async (event) => {
        event.preventDefault();
        box.clear();
        const restore = busy(submit, t('auth.working'));
        try {
          // Money is a JSON number (two decimals at most, exact in a double at any price).
          const area = await api.post(
            `/api/v1/admin/sessions/${encodeURIComponent(session.session_id)}/seat-areas`,
            {
              name: name.value.trim(),
              price: Number(price.value),
              capacity: Number.parseInt(capacity.value, 10),
            },
            { auth: 'required' },
          );
          announce(t('console.area_created', { name: area.name }));
          ctx.navigate(location.pathname, { replace: true });
        } catch (error) {
          restore();
          box.error(error, { disable: [submit] });
        }
      },
    },
    h('h4', { id: headingId }, t('console.new_area')),
    h(
      'div',
      { class: 'row' },
      field(t('console.area_name'), name),
      field(t('console.price'), price),
      field(t('console.capacity'), capacity),
      h('div', { class: 'actions' }, submit),
    ),
    box,
  );
}

// -- refund requests -----------------------------------------------------------------------

export async function refunds(ctx) {
  ctx.title(t('console.refunds'));
  if (!organiserOnly(ctx)) return;
  const status = ctx.query.has('status') ? ctx.query.get('status') : 'pending';
  const page = Math.max(1, Number.parseInt(ctx.query.get('page') || '1', 10) || 1);
  let found;
  try {
    found = await api.get(
      `/api/v1/admin/refund-requests${api.query({ status, page, page_size: 20 })}`,
      { auth: 'required' },
    );
  } catch (error) {
    failed(ctx, t('console.refunds'), error, () => refunds(ctx));
    return;
  }
  if (!ctx.alive()) return;
  const filter = h(
    'select',
    {
      name: 'status',
      onchange: (event) =>
        ctx.navigate(`/console/refunds?status=${encodeURIComponent(event.target.value)}`),
    },
    h('option', { value: '', selected: status === '' }, t('console.all_statuses')),
    ['pending', 'approved', 'rejected'].map((s) =>
      h('option', { value: s, selected: s === status }, t(`console.refund.${s}`)),
    ),
  );
  const rows = found.refund_requests.map((request) => refundRow(request));
  frame(
    ctx,
    t('console.refunds'),
    h('div', { class: 'filters' }, field(t('console.refund_status'), filter)),
    rows.length
      ? table(
          [
            t('console.order'),
            t('console.amount'),
            t('console.reason'),
            t('console.requested_at'),
            t('console.refund_status'),
            t('console.actions'),
          ],
          rows,
        )
      : h('p', { class: 'empty' }, t('console.no_refunds')),
    pager(
      found.page,
      found.page_size,
      found.total,
      (n) => `/console/refunds${api.query({ status, page: n })}`,
    ),
  );
}

function refundRow(request) {
  const state = h('td', {}, tOr(`console.refund.${request.status}`, request.status));
  const actions = h('td', { class: 'row-actions' });
  const box = messageBox();
  const base = `/api/v1/admin/refund-requests/${encodeURIComponent(request.refund_request_id)}`;
  if (request.status === 'pending') {
    const note = h('input', { type: 'text', name: 'note', maxlength: 500 });
    const approve = h('button', { type: 'button', class: 'primary small' }, t('console.approve'));
    const reject = h('button', { type: 'button', class: 'danger small' }, t('console.reject'));
    const decide = async (button, path, body, done) => {
      box.clear();
      const restore = busy(button, t('auth.working'));
      try {
        const answer = await api.post(`${base}/${path}`, body, { auth: 'required' });
        state.textContent = tOr(`console.refund.${answer.status}`, answer.status);
        actions.replaceChildren(box);
        box.show('ok', done(answer));
      } catch (error) {
        restore();
        box.error(error, { disable: [approve, reject] });
        if (error.code === 'tickets_used') {
          // Used tickets are refunded only when the organiser says so, with the seats going
          // back on sale: one more, explicit click.
          const anyway = h(
            'button',
            { type: 'button', class: 'danger small' },
            t('console.refund_anyway'),
          );
          anyway.addEventListener('click', () => {
            anyway.remove();
            decide(approve, 'approve', { refund_used_tickets: true }, approved);
          });
          box.append(anyway);
        }
      }
    };
    const approved = (answer) =>
      answer.refund_completed ? t('console.approved_done') : t('console.approved_pending');
    approve.addEventListener('click', () => decide(approve, 'approve', undefined, approved));
    reject.addEventListener('click', () => {
      const text = note.value.trim();
      decide(reject, 'reject', text ? { note: text } : {}, () => t('console.rejected_done'));
    });
    actions.append(
      h('div', { class: 'row' }, approve, reject),
      field(t('console.reject_note'), note),
      box,
    );
  } else {
    actions.append(request.note ? request.note : '—');
  }
  return h(
    'tr',
    { 'data-refund': request.refund_request_id },
    h(
      'th',
      { scope: 'row' },
      h('a', { href: `/orders/${encodeURIComponent(request.order_id)}` }, request.order_id),
    ),
    h('td', { class: 'num' }, money(request.amount, request.currency)),
    h('td', {}, request.reason || '—'),
    h('td', {}, dateTime(request.created_at)),
    state,
    actions,
  );
}

// -- check-in ------------------------------------------------------------------------------

export function checkin(ctx) {
  ctx.title(t('console.checkin'));
  if (!organiserOnly(ctx)) return;
  const payload = h('textarea', {
    name: 'payload',
    rows: 3,
    required: true,
    maxlength: 4096,
    spellcheck: 'false',
    autocomplete: 'off',
  });
  const submit = h('button', { type: 'submit', class: 'primary' }, t('console.checkin_submit'));
  const result = h('div', {
    class: 'checkin-result',
    'aria-live': 'assertive',
    'aria-atomic': 'true',
  });
  const box = messageBox();
  const form = h(
    'form',
    {
      class: 'panel checkin',
      onsubmit: async (event) => {
        event.preventDefault();
        box.clear();
        const text = payload.value.trim();
        if (!text) return;
        const restore = busy(submit, t('auth.working'));
        try {
          const answer = await api.post(
            '/api/v1/admin/checkins',
            { payload: text },
            { auth: 'required' },
          );
          restore();
          const kind = { valid: 'ok', already_used: 'warn' }[answer.result] || 'bad';
          result.className = `checkin-result result-${kind}`;
          result.replaceChildren(
            h(
              'p',
              { class: 'verdict' },
              t(`console.checkin.${answer.result}`, { time: dateTime(answer.checked_in_at) }),
            ),
            answer.ticket_id
              ? h(
                  'p',
                  {},
                  t('console.checkin_ticket', { id: answer.ticket_id, n: answer.seat_number }),
                )
              : null,
          );
          // Ready for the next ticket.
          payload.value = '';
          payload.focus();
        } catch (error) {
          restore();
          result.replaceChildren();
          box.error(error, { disable: [submit] });
        }
      },
    },
    field(t('console.checkin_payload'), payload, t('console.checkin_hint')),
    h('div', { class: 'actions' }, submit),
    box,
  );
  // A scanner types the payload and presses Enter: submit on Enter, Shift+Enter for a newline.
  payload.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  frame(ctx, t('console.checkin'), form, result);
  payload.focus();
}
