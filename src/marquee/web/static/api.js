// The public API through the gateway (same origin), the signed-in session, and quiet token
// refresh. Every failure becomes an ApiError carrying the problem's `code`, so the pages can
// say in plain words what happened instead of showing a response body.

const SESSION_KEY = 'marquee.session';
// Refresh a little before the access token expires, so a request never leaves with a dead one.
const REFRESH_MARGIN_MS = 20_000;

/** An API failure: HTTP `status` (0 when the server was not reached), problem `code`, the
 * problem body (`problem`, may be null) and `retryAfter` in seconds when the server gave one. */
export class ApiError extends Error {
  constructor(status, code, problem = null, retryAfter = null) {
    super(code);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.problem = problem || {};
    this.retryAfter = retryAfter;
  }
}

const STATUS_CODES = {
  400: 'bad_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  409: 'conflict',
  413: 'payload_too_large',
  422: 'validation_error',
  429: 'rate_limited',
  502: 'upstream_unavailable',
  503: 'overloaded',
  504: 'upstream_timeout',
};

function retryAfterSeconds(header) {
  if (!header) return null;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(1, Math.ceil(seconds));
  const at = Date.parse(header);
  if (Number.isNaN(at)) return null;
  return Math.max(1, Math.ceil((at - Date.now()) / 1000));
}

// -- the session ---------------------------------------------------------------------------

function readSession() {
  try {
    const raw = localStorage.getItem(SESSION_KEY);
    const parsed = raw ? JSON.parse(raw) : null;
    return parsed && parsed.access_token && parsed.refresh_token ? parsed : null;
  } catch {
    return null;
  }
}

let session = readSession();
const listeners = new Set();

function changed() {
  for (const listener of listeners) listener(session);
}

function writeSession(next) {
  session = next;
  try {
    if (next) localStorage.setItem(SESSION_KEY, JSON.stringify(next));
    else localStorage.removeItem(SESSION_KEY);
  } catch {
    // No storage: the session lives in memory for this page.
  }
  changed();
}

// Another tab logged in, out, or refreshed the tokens: follow it.
window.addEventListener('storage', (event) => {
  if (event.key !== SESSION_KEY) return;
  session = readSession();
  changed();
});

/** Call `listener(session)` whenever the session changes (log in, out, refresh). */
export function onSessionChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** The signed-in user's profile ({user_id, email, full_name, role}), or null. */
export function user() {
  return session ? session.profile || null : null;
}

export function signedIn() {
  return session !== null;
}

export function isAdmin() {
  return Boolean(session && session.profile && session.profile.role === 'admin');
}

function withTokens(base, tokens) {
  return {
    ...base,
    user_id: tokens.user_id,
    access_token: tokens.access_token,
    refresh_token: tokens.refresh_token,
    access_expires_at: Date.now() + Number(tokens.expires_in || 900) * 1000,
  };
}

// -- requests ------------------------------------------------------------------------------

async function send(method, path, { body, token, headers } = {}) {
  const init = { method, headers: { Accept: 'application/json', ...headers } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  if (token) init.headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'network');
  }
  const text = response.status === 204 ? '' : await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const code =
      data && typeof data.code === 'string'
        ? data.code
        : STATUS_CODES[response.status] || `http_${response.status}`;
    const retry =
      retryAfterSeconds(response.headers.get('Retry-After')) ??
      (data && Number.isFinite(data.retry_after) ? data.retry_after : null);
    throw new ApiError(response.status, code, data, retry);
  }
  return data;
}

let refreshing = null;

async function refreshOnce(staleToken) {
  const latest = readSession() || session;
  if (!latest) throw new ApiError(401, 'unauthorized');
  // Another tab (or an earlier call here) refreshed already: use its tokens.
  if (
    latest.access_token !== staleToken &&
    latest.access_expires_at - Date.now() > REFRESH_MARGIN_MS
  ) {
    session = latest;
    return;
  }
  try {
    const tokens = await send('POST', '/api/v1/auth/refresh', {
      body: { refresh_token: latest.refresh_token },
    });
    writeSession(withTokens(latest, tokens));
  } catch (error) {
    // A refused refresh token means the session is over; a busy server does not.
    if (error.status === 401) writeSession(null);
    throw error;
  }
}

/** Get a fresh access token, once even when many requests (or tabs) ask at the same time.
 * Refresh tokens rotate and a reused one revokes the family, so tabs take turns (Web Locks
 * where the browser has them). */
function refresh(staleToken) {
  if (!refreshing) {
    const run = () => refreshOnce(staleToken);
    const locked =
      navigator.locks && navigator.locks.request
        ? navigator.locks.request('marquee-token-refresh', run)
        : run();
    refreshing = Promise.resolve(locked).finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

/**
 * Call the API. `auth`: "optional" (send the token when signed in), "required" (ApiError
 * 401 `unauthorized` without a session) or "none". An expired access token is refreshed
 * quietly, before the call when it is about to expire, or after a 401, and the call retried
 * once.
 */
export async function api(method, path, { body, auth = 'optional', headers } = {}) {
  if (auth === 'none' || (!session && auth === 'optional')) {
    return send(method, path, { body, headers });
  }
  if (!session) throw new ApiError(401, 'unauthorized');
  if (session.access_expires_at - Date.now() < REFRESH_MARGIN_MS) {
    try {
      await refresh(session.access_token);
    } catch (error) {
      if (!session) throw error;
      // Could not refresh ahead of time (e.g. rate limited): the token may still be valid.
    }
    if (!session) throw new ApiError(401, 'unauthorized');
  }
  const token = session.access_token;
  try {
    return await send(method, path, { body, headers, token });
  } catch (error) {
    if (error.status !== 401 || error.code !== 'unauthorized' || !session) throw error;
    await refresh(token);
    if (!session) throw error;
    return send(method, path, { body, headers, token: session.access_token });
  }
}

export const get = (path, options) => api('GET', path, options);
export const post = (path, body, options = {}) => api('POST', path, { ...options, body });
export const patch = (path, body, options = {}) => api('PATCH', path, { ...options, body });

/** Build a query string from the non-empty values of `params`. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

// -- signing in and out --------------------------------------------------------------------

async function start(tokens) {
  const base = withTokens({}, tokens);
  const profile = await send('GET', '/api/v1/users/me', { token: base.access_token });
  writeSession({
    ...base,
    profile: {
      user_id: profile.user_id,
      email: profile.email,
      full_name: profile.full_name,
      role: profile.role,
    },
  });
  return session.profile;
}

export async function login(email, password) {
  return start(await send('POST', '/api/v1/auth/login', { body: { email, password } }));
}

export async function register(email, password, fullName) {
  const body = { email, password, full_name: fullName };
  return start(await send('POST', '/api/v1/auth/register', { body }));
}

/** Revoke the refresh token (best effort) and forget the session. */
export async function logout() {
  const current = session;
  writeSession(null);
  if (!current) return;
  try {
    await send('POST', '/api/v1/auth/logout', { body: { refresh_token: current.refresh_token } });
  } catch {
    // The tokens are forgotten here either way; the refresh token expires on its own.
  }
}

/** A fresh random key for Idempotency-Key headers. */
export function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
