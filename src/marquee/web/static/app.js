// The storefront's shell: header, language switch, and a small history-API router that
// renders one page at a time into <main>.

import { isAdmin, logout, onSessionChange, signedIn, user } from './api.js';
import { lang, setLang, t } from './i18n.js';
import { announce, h, leavePage } from './ui.js';
import * as shop from './shop.js';
import * as organiser from './console.js';

const ROUTES = [
  [/^\/$/, shop.home],
  [/^\/shows\/?$/, () => navigate('/', { replace: true })],
  [/^\/shows\/([^/]+)$/, shop.show],
  [/^\/login$/, shop.login],
  [/^\/register$/, shop.register],
  [/^\/orders$/, shop.orders],
  [/^\/orders\/([^/]+)$/, shop.order],
  [/^\/console$/, organiser.shows],
  [/^\/console\/shows\/([^/]+)$/, organiser.show],
  [/^\/console\/refunds$/, organiser.refunds],
  [/^\/console\/checkin$/, organiser.checkin],
];

const main = document.getElementById('main');
let rendering = 0;
let renderedUrl = null;

/** Go to `url` (a path with an optional query) inside the app. */
export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  render({ focus: true });
}

function notFound(ctx) {
  ctx.title(t('page.not_found'));
  ctx.main.replaceChildren(
    h(
      'section',
      {},
      h('h1', {}, t('page.not_found')),
      h('p', {}, t('page.not_found_body')),
      h('p', {}, h('a', { href: '/' }, t('page.back_home'))),
    ),
  );
}

async function render({ focus = false } = {}) {
  leavePage();
  rendering += 1;
  const mine = rendering;
  const path = location.pathname;
  renderedUrl = path + location.search;
  let view = notFound;
  let params = [];
  for (const [pattern, handler] of ROUTES) {
    const match = pattern.exec(path);
    if (match) {
      view = handler;
      params = match.slice(1).map(decodeURIComponent);
      break;
    }
  }
  drawHeader();
  main.setAttribute('aria-busy', 'true');
  main.replaceChildren(h('p', { class: 'loading' }, t('app.loading')));
  const ctx = {
    main,
    params,
    query: new URLSearchParams(location.search),
    navigate,
    alive: () => mine === rendering,
    title: (text) => {
      if (mine === rendering) document.title = `${text} · ${t('app.name')}`;
    },
  };
  try {
    await view(ctx, ...params);
  } finally {
    if (mine === rendering) main.removeAttribute('aria-busy');
  }
  const placed = document.activeElement !== main && main.contains(document.activeElement);
  if (focus && mine === rendering && !placed) {
    // Move keyboard and screen-reader focus to the new page's heading, unless the page put
    // it somewhere on purpose (e.g. the check-in box, ready for the next scan).
    const heading = main.querySelector('h1');
    const target = heading || main;
    if (heading) heading.setAttribute('tabindex', '-1');
    target.focus({ preventScroll: true });
    window.scrollTo(0, 0);
  }
  if (focus && mine === rendering) announce(document.title);
}

// -- header --------------------------------------------------------------------------------

function navLink(href, text) {
  const here = location.pathname === href || (href !== '/' && location.pathname.startsWith(href));
  return h('a', { href, 'aria-current': here ? 'page' : null }, text);
}

function drawHeader() {
  document.title = t('app.name');
  document.getElementById('skip').textContent = t('app.skip');
  document.getElementById('brand').setAttribute('aria-label', t('app.name'));
  document.getElementById('footer').textContent = t('app.footer');
  const nav = document.getElementById('nav');
  nav.setAttribute('aria-label', t('nav.label'));
  const items = [navLink('/', t('nav.shows'))];
  if (signedIn()) {
    items.push(navLink('/orders', t('nav.orders')));
    if (isAdmin()) items.push(navLink('/console', t('nav.console')));
    const who = user();
    items.push(
      h(
        'span',
        { class: 'who' },
        who ? t('nav.signed_in_as', { name: who.full_name || who.email }) : '',
      ),
      h(
        'button',
        {
          type: 'button',
          class: 'link',
          onclick: async () => {
            await logout();
            announce(t('auth.signed_out'));
            navigate('/');
          },
        },
        t('nav.logout'),
      ),
    );
  } else {
    const next = encodeURIComponent(location.pathname + location.search);
    const onAuthPage = ['/login', '/register'].includes(location.pathname);
    const suffix = onAuthPage ? location.search : `?next=${next}`;
    items.push(navLink('/login', t('nav.login')), navLink('/register', t('nav.register')));
    items[items.length - 2].setAttribute('href', `/login${suffix}`);
    items[items.length - 1].setAttribute('href', `/register${suffix}`);
  }
  nav.replaceChildren(...items);
  const switcher = document.getElementById('lang');
  switcher.textContent = t('lang.switch');
  switcher.setAttribute('aria-label', t('lang.switch_label'));
  switcher.setAttribute('lang', lang() === 'zh' ? 'en' : 'zh-CN');
}

// -- wiring --------------------------------------------------------------------------------

document.getElementById('lang').addEventListener('click', () => {
  setLang(lang() === 'zh' ? 'en' : 'zh');
  render();
});

// Same-origin links render in place; API links, downloads and new tabs are left alone.
document.addEventListener('click', (event) => {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest('a[href]');
  if (!link || link.target || link.hasAttribute('download')) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin) return;
  if (url.pathname.startsWith('/api/') || url.pathname.startsWith('/docs')) return;
  if (url.hash && url.pathname === location.pathname && url.search === location.search) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
});

window.addEventListener('popstate', () => {
  // A jump to a fragment (the skip link) is not another page.
  if (location.pathname + location.search !== renderedUrl) render({ focus: true });
});
onSessionChange(() => drawHeader());

render();
