// The console's only way to the host: fetch on the same origin, the public v1 API.
//
// Tokens live in localStorage. The admin token goes on /v1/plugins* and /v1/workflows*;
// the trigger token (when set; never the admin token in its place) on the POST routes that
// make plugins run: start, retry, cancel and signal runs, publish events, redeliver dead
// letters. Reads are open. Errors are `application/problem+json`: an ApiError carries the
// status and the problem's `detail`, and says it in one line.

const KEYS = { admin: 'flowhost.console.adminToken', trigger: 'flowhost.console.triggerToken' };

function read(key) {
  try {
    return localStorage.getItem(key) || '';
  } catch {
    return '';
  }
}

function write(key, value) {
  try {
    if (value) localStorage.setItem(key, value);
    else localStorage.removeItem(key);
  } catch {
    // storage off (private mode): the token lasts for this page only
  }
}

/** The tokens the operator set in Settings. */
export const tokens = {
  get admin() {
    return read(KEYS.admin);
  },
  get trigger() {
    return read(KEYS.trigger);
  },
  /** Stores both (an empty string removes one) and tells the page. */
  set({ admin, trigger }) {
    if (admin !== undefined) write(KEYS.admin, admin.trim());
    if (trigger !== undefined) write(KEYS.trigger, trigger.trim());
    window.dispatchEvent(new CustomEvent('flowhost:tokens'));
  },
};

/** A refused or failed request: `status` 0 when the host could not be reached. */
export class ApiError extends Error {
  constructor({ status, title, detail, method, path, auth }) {
    super(detail || title || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.title = title || '';
    this.detail = detail || '';
    this.method = method;
    this.path = path;
    this.auth = auth;
  }

  /** A hint for the operator, when the answer says a token is missing or wrong. */
  get hint() {
    if (this.status !== 401 && this.status !== 403) return '';
    if (this.auth === 'admin') {
      return tokens.admin
        ? 'check the admin token in Settings'
        : 'set the admin token in Settings';
    }
    if (this.auth === 'trigger') {
      return tokens.trigger
        ? 'check the trigger token in Settings'
        : 'set the trigger token in Settings';
    }
    return '';
  }

  /** One line: `403 Forbidden: <detail> — set the admin token in Settings`. */
  get line() {
    const head = this.status ? `${this.status}${this.title ? ` ${this.title}` : ''}` : 'Network error';
    const body = this.detail && this.detail !== this.title ? `: ${this.detail}` : '';
    const hint = this.hint ? ` — ${this.hint}` : '';
    return `${head}${body}${hint}`.replace(/\s+/g, ' ');
  }
}

/** The text of any error, in one line. */
export function errorLine(error) {
  if (error instanceof ApiError) return error.line;
  if (error && error.message) return String(error.message).replace(/\s+/g, ' ');
  return String(error);
}

/** A path segment, escaped. */
export const seg = (value) => encodeURIComponent(String(value));

/**
 * One request. `auth`: 'admin', 'trigger' or none. `body`: an object (sent as JSON), a
 * string (sent as is, `contentType` or JSON) or a Blob/ArrayBuffer (`contentType`).
 * Resolves to `{status, data, headers}`; rejects with an ApiError for any answer >= 400.
 */
export async function request(method, path, { body, auth, contentType, query, headers: extra } = {}) {
  const headers = { accept: 'application/json, application/problem+json;q=0.9, */*;q=0.1', ...extra };
  const token = auth === 'admin' ? tokens.admin : auth === 'trigger' ? tokens.trigger : '';
  if (token) headers.authorization = `Bearer ${token}`;
  let payload;
  if (body !== undefined && body !== null) {
    if (body instanceof Blob || body instanceof ArrayBuffer) {
      payload = body;
      headers['content-type'] = contentType || 'application/octet-stream';
    } else if (typeof body === 'string') {
      payload = body;
      headers['content-type'] = contentType || 'application/json';
    } else {
      payload = JSON.stringify(body);
      headers['content-type'] = 'application/json';
    }
  }
  let url = path;
  if (query) {
    const search = query instanceof URLSearchParams ? query : toParams(query);
    const text = search.toString();
    if (text) url += `?${text}`;
  }
  let response;
  try {
    response = await fetch(url, { method, headers, body: payload, cache: 'no-store', credentials: 'same-origin' });
  } catch (error) {
    throw new ApiError({ status: 0, title: 'Network error', detail: `could not reach the host (${error.message})`, method, path, auth });
  }
  const text = await response.text().catch(() => '');
  const type = response.headers.get('content-type') || '';
  let data = text;
  if (text && type.includes('json')) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    const problem = data && typeof data === 'object' ? data : {};
    throw new ApiError({
      status: response.status,
      title: problem.title || response.statusText,
      detail: problem.detail || (typeof data === 'string' ? data.slice(0, 300) : ''),
      method,
      path,
      auth,
    });
  }
  return { status: response.status, data, headers: response.headers };
}

function toParams(query) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === '') continue;
    params.set(key, String(value));
  }
  return params;
}

// --- runs -------------------------------------------------------------------------------

/** GET /v1/runs: `filters` {workflow, status, created_after, created_before, field, value, limit, cursor}. */
export function listRuns(filters = {}) {
  const params = new URLSearchParams();
  for (const key of ['workflow', 'status', 'created_after', 'created_before', 'limit', 'cursor']) {
    if (filters[key]) params.set(key, filters[key]);
  }
  if (filters.field && filters.value !== undefined && filters.value !== '') {
    params.set(`context[${filters.field}]`, filters.value);
  }
  return request('GET', '/v1/runs', { query: params });
}

export const getRun = (id) => request('GET', `/v1/runs/${seg(id)}`);
export const getJournal = (id) => request('GET', `/v1/runs/${seg(id)}/journal`);

/** POST /v1/workflows/{w}/runs with `input` (an object) and an optional idempotency key. */
export function startRun(workflow, input, idempotencyKey) {
  const headers = idempotencyKey ? { 'idempotency-key': idempotencyKey } : undefined;
  return request('POST', `/v1/workflows/${seg(workflow)}/runs`, { body: input, auth: 'trigger', headers });
}

export const cancelRun = (id) => request('POST', `/v1/runs/${seg(id)}/cancel`, { auth: 'trigger' });
export const retryRun = (id) => request('POST', `/v1/runs/${seg(id)}/retry`, { auth: 'trigger' });

/** POST /v1/runs/{id}/signals/{name}; `dataText` is JSON text (empty: no body). */
export function signalRun(id, name, dataText) {
  return request('POST', `/v1/runs/${seg(id)}/signals/${seg(name)}`, {
    body: dataText && dataText.trim() ? dataText : undefined,
    auth: 'trigger',
  });
}

// --- events -----------------------------------------------------------------------------

export const subscriptions = () => request('GET', '/v1/subscriptions');
export const nodes = () => request('GET', '/v1/nodes');
export const deadLetters = (cursor, limit) => request('GET', '/v1/dead-letters', { query: { cursor, limit } });
export const redeliver = (id) => request('POST', `/v1/dead-letters/${seg(id)}/redeliver`, { auth: 'trigger' });
export const publish = (topic, dataText) =>
  request('POST', `/v1/events/${seg(topic)}`, { body: dataText, auth: 'trigger' });

// --- plugins ----------------------------------------------------------------------------

export const plugins = () => request('GET', '/v1/plugins', { auth: 'admin' });
export const plugin = (name) => request('GET', `/v1/plugins/${seg(name)}`, { auth: 'admin' });
export const pushPlugin = (name, file, label) =>
  request('PUT', `/v1/plugins/${seg(name)}`, {
    body: file,
    contentType: 'application/wasm',
    auth: 'admin',
    query: { version: label },
  });
export const rollbackPlugin = (name, digest) =>
  request('POST', `/v1/plugins/${seg(name)}/rollback`, { body: digest ? { digest } : undefined, auth: 'admin' });

// --- workflows --------------------------------------------------------------------------

export const workflows = () => request('GET', '/v1/workflows', { auth: 'admin' });
export const workflow = (name) => request('GET', `/v1/workflows/${seg(name)}`, { auth: 'admin' });
export const pushWorkflow = (name, definitionText) =>
  request('PUT', `/v1/workflows/${seg(name)}`, { body: definitionText, contentType: 'application/json', auth: 'admin' });
export const rollbackWorkflow = (name, digest) =>
  request('POST', `/v1/workflows/${seg(name)}/rollback`, { body: digest ? { digest } : undefined, auth: 'admin' });

// --- operations -------------------------------------------------------------------------

/** GET /metrics as text. */
export async function metrics() {
  const { data, status } = await request('GET', '/metrics', { headers: { accept: 'text/plain' } });
  return { status, text: typeof data === 'string' ? data : JSON.stringify(data) };
}

export const healthz = () => request('GET', '/healthz');
