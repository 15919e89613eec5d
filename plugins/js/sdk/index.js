// @flowhost/sdk: the guest SDK for flowhost plugins written in JavaScript and built into
// components with componentize-js. It gives what the Rust SDK (plugins/sdk) gives:
//
// - `step({ name: { execute, compensate } })` and `handler(fn)`: the exports, with the
//   context parsed in and the result serialised out, and errors mapped to the WIT's
//   `step-error` (retryable or fatal);
// - `Ctx`: the run's context, `ctx.get(key)` failing the step (fatal) on a missing field;
// - `services`: `get/post/put/delete` returning parsed JSON, `request` for the rest, and a
//   `ServiceError` that knows whether it is retryable;
// - `cache` (JSON or bytes, with a TTL), `events.publish`, `config.get`, `log`.
//
// The host's interfaces are imported under their WIT names (`flowhost:plugin/...@0.1.0`);
// componentize-js binds them. jco's conventions apply underneath: records have camelCase
// fields, `option` is `undefined` or the value, `u64` is a BigInt, a `result` error is
// thrown as a `ComponentError` whose `payload` is the variant `{ tag, val }`.

import * as rawCache from 'flowhost:plugin/cache@0.1.0';
import * as rawConfig from 'flowhost:plugin/config@0.1.0';
import * as rawEvents from 'flowhost:plugin/events@0.1.0';
import { log as rawLog } from 'flowhost:plugin/log@0.1.0';
import { call as rawCall } from 'flowhost:plugin/services@0.1.0';

// ---------------------------------------------------------------------------------------
// Errors

/** Why a step failed: `retryable` (the host retries it) or `fatal` (it compensates). */
export class StepError extends Error {
  constructor(kind, message) {
    super(message);
    this.name = 'StepError';
    this.kind = kind;
  }

  /** A transient failure: the host retries the step per its retry policy. */
  static retryable(message) {
    return new StepError('retryable', message);
  }

  /** A permanent failure: no retry; the steps completed before this one are compensated. */
  static fatal(message) {
    return new StepError('fatal', message);
  }

  /** The fatal error for a step this plugin does not serve. */
  static unknownStep(step) {
    return StepError.fatal(`unknown step \`${step}\``);
  }

  get retryable() {
    return this.kind === 'retryable';
  }

  /** The same error with `context: ` before its message. */
  context(context) {
    return new StepError(this.kind, `${context}: ${this.message}`);
  }

  /**
   * What `error`, thrown by a step, tells the host: a `StepError` as it is; an error of this
   * SDK (service, cache, publish) retryable or fatal as it says; anything else fatal, since
   * trying a bug again fails the same way.
   */
  static from(error) {
    if (error instanceof StepError) return error;
    if (error instanceof ServiceError || error instanceof PublishError || error instanceof CacheError) {
      return new StepError(error.retryable ? 'retryable' : 'fatal', error.message);
    }
    if (error instanceof Error) return StepError.fatal(`${error.name}: ${error.message}`);
    return StepError.fatal(String(error));
  }
}

/** Why a service call failed: the WIT `call-error`, plus `decode` for a body that is not JSON. */
export class ServiceError extends Error {
  constructor(kind, message, response) {
    super(message);
    this.name = 'ServiceError';
    /** `denied`, `unknown-service`, `timeout`, `connection`, `http`, `other` or `decode`. */
    this.kind = kind;
    /** The response, for `http`. */
    this.response = response;
  }

  /** The HTTP status, for `http`. */
  get status() {
    return this.response?.status;
  }

  /** Whether the service answered 404. */
  get notFound() {
    return this.status === 404;
  }

  /** Whether trying again later may succeed: timeouts, connection failures, 408, 429, 5xx. */
  get retryable() {
    if (this.kind === 'timeout' || this.kind === 'connection') return true;
    if (this.kind !== 'http') return false;
    return this.status === 408 || this.status === 429 || (this.status >= 500 && this.status <= 599);
  }
}

/** Why the cache refused a value: `invalid-key` or `too-large`. Fatal in a step. */
export class CacheError extends Error {
  constructor(kind, message) {
    super(`${kind === 'invalid-key' ? 'invalid cache key' : 'cache value too large'}: ${message}`);
    this.name = 'CacheError';
    this.kind = kind;
  }

  get retryable() {
    return false;
  }
}

/** Why an event was not accepted; only `unavailable` is retryable. */
export class PublishError extends Error {
  constructor(kind, message) {
    super(`event not published (${kind}): ${message}`);
    this.name = 'PublishError';
    /** `denied`, `invalid-topic`, `invalid-data` or `unavailable`. */
    this.kind = kind;
  }

  get retryable() {
    return this.kind === 'unavailable';
  }
}

/** The `{ tag, val }` a failed import threw (jco's `ComponentError.payload`), or undefined. */
function variantOf(error) {
  const payload = error?.payload ?? error;
  return payload && typeof payload.tag === 'string' ? payload : undefined;
}

// ---------------------------------------------------------------------------------------
// The context

/** The run's context: the JSON object the run started with, merged with earlier outputs. */
export class Ctx {
  constructor(raw) {
    this.raw = raw;
    let data;
    try {
      data = JSON.parse(raw);
    } catch (error) {
      throw StepError.fatal(`malformed context: ${error.message}`);
    }
    if (data === null || typeof data !== 'object' || Array.isArray(data)) {
      throw StepError.fatal('the context is not a JSON object');
    }
    /** The whole context, parsed. */
    this.data = data;
  }

  /** Field `key`; a missing (or null) field fails the step (fatal). */
  get(key) {
    const value = this.opt(key);
    if (value === undefined) {
      throw StepError.fatal(`the context has no \`${key}\``);
    }
    return value;
  }

  /** Field `key`, or `fallback` (default undefined) when it is missing or null. */
  opt(key, fallback = undefined) {
    // Own fields only: `constructor` is no field of a context.
    return (Object.hasOwn(this.data, key) ? this.data[key] : undefined) ?? fallback;
  }

  /** Whether the context has field `key`. */
  has(key) {
    return Object.hasOwn(this.data, key);
  }
}

// ---------------------------------------------------------------------------------------
// Exports

/**
 * Refuses a Promise: componentize-js runs an export to its end synchronously, so what an
 * `async` step or handler awaits would never happen, and its failure would be lost.
 */
function synchronous(value, what) {
  if (value !== null && typeof value?.then === 'function') {
    throw StepError.fatal(`${what} returned a Promise: async steps and handlers are not supported`);
  }
  return value;
}

/** The output of a step call as the WIT wants it: a JSON object, `{}` for nothing. */
function output(value) {
  synchronous(value, 'the step');
  if (value === undefined || value === null) return '{}';
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw StepError.fatal(`a step returns an object, not ${JSON.stringify(value)}`);
  }
  return JSON.stringify(value);
}

/** `info` as steps see it: the WIT's `step-info`. */
function stepInfo(info) {
  return {
    runId: info.runId,
    workflow: info.workflow,
    step: info.step,
    attempt: info.attempt,
    idempotencyKey: info.idempotencyKey,
  };
}

/** Calls `fn` and turns anything it throws into the WIT `step-error` (thrown). */
function asStep(fn, info, raw) {
  try {
    return output(fn(new Ctx(raw), stepInfo(info)));
  } catch (error) {
    const failure = StepError.from(error);
    throw { tag: failure.kind, val: failure.message };
  }
}

/**
 * The `saga-step` export of a step plugin, serving the steps named in `steps`:
 *
 * ```js
 * export const sagaStep = step({
 *   process_payment: { execute(ctx, info) { ... }, compensate(ctx, info) { ... } },
 * });
 * ```
 *
 * `execute` and `compensate` get the context and the step's info and return an object to
 * merge into the context (nothing means `{}`); they throw a `StepError`, or any error (see
 * `StepError.from`). A step without `compensate` has nothing to undo. A step not named fails
 * fatally.
 */
export function step(steps) {
  const find = (info) => {
    const found = Object.hasOwn(steps, info.step) ? steps[info.step] : undefined;
    if (!found) throw { tag: 'fatal', val: `unknown step \`${info.step}\`` };
    return found;
  };
  return {
    execute(info, ctx) {
      return asStep(find(info).execute, info, ctx);
    },
    compensate(info, ctx) {
      const compensate = find(info).compensate ?? (() => ({}));
      return asStep(compensate, info, ctx);
    },
  };
}

/**
 * The `event-handler` export of a handler plugin: `export const eventHandler = handler(fn)`.
 * `fn` gets the event with `data` parsed; anything it throws fails the delivery, which the
 * host retries and then dead-letters.
 */
export function handler(fn) {
  return {
    handle(event) {
      try {
        const handled = fn({
          id: event.id,
          topic: event.topic,
          source: event.source,
          time: new Date(Number(event.timeMs)),
          correlationId: event.correlationId,
          data: JSON.parse(event.data),
        });
        synchronous(handled, 'the handler');
      } catch (error) {
        throw error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      }
    },
  };
}

// ---------------------------------------------------------------------------------------
// Capabilities

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** How much of a response body an error message shows, as the Rust SDK does. */
const BODY_IN_MESSAGE = 512;

/** Percent-encodes `segment` for use as one path segment (an id taken from the context). */
export function encodeSegment(segment) {
  return encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** A service's answer, with its body as bytes, text or JSON. */
class Response {
  constructor(raw) {
    this.status = raw.status;
    this.headers = raw.headers;
    this.body = raw.body;
  }

  /** The value of header `name` (lower case), or undefined. */
  header(name) {
    return this.headers.find(([key]) => key === name.toLowerCase())?.[1];
  }

  text() {
    return decoder.decode(this.body);
  }

  /** The body as JSON; an empty body is null. */
  json() {
    if (this.body.length === 0) return null;
    try {
      return JSON.parse(this.text());
    } catch (error) {
      throw new ServiceError('decode', `the response is not JSON: ${error.message}`);
    }
  }
}

/**
 * Calls to the named services of the host configuration. The host adds credentials, the
 * step's `Idempotency-Key` and retries; what reaches the plugin as an error has been retried.
 */
export const services = {
  /**
   * One call. `options`: `method` (default `get`), `headers` (an object), `json` (a body to
   * send as JSON) or `body` (bytes or text), `idempotencyKey` (to keep several calls of one
   * step apart), `timeoutMs`. Returns a response with `status`, `header(name)`, `text()`,
   * `json()`; throws a `ServiceError`.
   */
  request(service, path, options = {}) {
    const headers = Object.entries(options.headers ?? {}).map(([k, v]) => [k, String(v)]);
    let body;
    if (options.json !== undefined) {
      headers.push(['content-type', 'application/json']);
      body = encoder.encode(JSON.stringify(options.json));
    } else if (options.body !== undefined) {
      body = typeof options.body === 'string' ? encoder.encode(options.body) : options.body;
    }
    if (options.idempotencyKey !== undefined) {
      headers.push(['idempotency-key', String(options.idempotencyKey)]);
    }
    try {
      return new Response(
        rawCall({
          service,
          method: options.method ?? 'get',
          path,
          headers,
          body,
          timeoutMs: options.timeoutMs,
        }),
      );
    } catch (error) {
      const failure = variantOf(error);
      if (!failure) throw error;
      if (failure.tag === 'http') {
        const response = new Response(failure.val);
        // Some of the body: a 4 MiB error page does not belong in the run's record.
        const text = response.text();
        const shown = text.length > BODY_IN_MESSAGE ? `${text.slice(0, BODY_IN_MESSAGE)}...` : text;
        throw new ServiceError('http', `${service} answered ${response.status}: ${shown}`, response);
      }
      throw new ServiceError(failure.tag, `${service}: ${failure.tag}: ${failure.val}`);
    }
  },

  /** GET, the body as JSON. */
  get(service, path, options = {}) {
    return services.request(service, path, { ...options, method: 'get' }).json();
  },

  /** POST `json`, the body as JSON. */
  post(service, path, json, options = {}) {
    return services.request(service, path, { ...options, method: 'post', json }).json();
  },

  /** PUT `json`, the body as JSON. */
  put(service, path, json, options = {}) {
    return services.request(service, path, { ...options, method: 'put', json }).json();
  },

  /** DELETE, the body as JSON (null when empty). */
  delete(service, path, options = {}) {
    return services.request(service, path, { ...options, method: 'delete' }).json();
  },
};

/** The host's cache, bounded and with a TTL per entry: a miss is normal. */
export const cache = {
  /** The JSON value under `key`, or undefined (a value that is not JSON counts as a miss). */
  get(key) {
    const bytes = rawCache.get(key);
    if (bytes === undefined) return undefined;
    try {
      return JSON.parse(decoder.decode(bytes));
    } catch {
      return undefined;
    }
  },

  /** Stores `value` as JSON under `key`; `ttlMs` (default: the host's). Throws a `CacheError`. */
  set(key, value, { ttlMs } = {}) {
    cache.setBytes(key, encoder.encode(JSON.stringify(value)), { ttlMs });
  },

  /** The bytes under `key`, or undefined. */
  getBytes(key) {
    return rawCache.get(key);
  },

  /** Stores `bytes` under `key`. */
  setBytes(key, bytes, { ttlMs } = {}) {
    try {
      rawCache.set(key, bytes, ttlMs === undefined ? undefined : BigInt(ttlMs));
    } catch (error) {
      const failure = variantOf(error);
      if (!failure) throw error;
      throw new CacheError(failure.tag, failure.val);
    }
  },

  /** Removes `key`; removing a missing key is not an error. */
  delete(key) {
    rawCache.delete(key);
  },
};

/** Publishing events for handlers and event-triggered workflows. */
export const events = {
  /**
   * Publishes `data` (as JSON) on `topic` and returns the event's id; events with the same
   * `key` are delivered in order. From a step, the event is held until the step's result is
   * durable. Throws a `PublishError`.
   */
  publish(topic, data, key = undefined) {
    try {
      return rawEvents.publish(topic, JSON.stringify(data), key);
    } catch (error) {
      const failure = variantOf(error);
      if (!failure) throw error;
      throw new PublishError(failure.tag, failure.val);
    }
  },
};

/** The plugin's own settings (`[plugins.<name>.config]`). */
export const config = {
  /** The value of `key`, or `fallback` (default undefined) when it is not set. */
  get(key, fallback = undefined) {
    return rawConfig.get(key) ?? fallback;
  },
};

/** Log lines into the host's structured log, tagged with the plugin, run and step. */
export const log = {
  trace: (message) => rawLog('trace', String(message)),
  debug: (message) => rawLog('debug', String(message)),
  info: (message) => rawLog('info', String(message)),
  warn: (message) => rawLog('warn', String(message)),
  error: (message) => rawLog('error', String(message)),
};
