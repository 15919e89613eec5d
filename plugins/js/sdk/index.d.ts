// Types of @flowhost/sdk. The host's own interfaces (`flowhost:plugin/...@0.1.0`) are typed
// by the declarations in `wit/`, generated from the repository's WIT by jco
// (`npm run types` in plugins/js); this file types the SDK over them.

/// <reference path="./wit/step-plugin.d.ts" />
/// <reference path="./wit/handler-plugin.d.ts" />

import type { StepInfo as WitStepInfo } from 'flowhost:plugin/types@0.1.0';
import type { Method } from 'flowhost:plugin/services@0.1.0';

/** Who is calling a step, and why (the WIT `step-info`). */
export type StepInfo = WitStepInfo;

/** What a step returns: an object merged into the run's context; nothing means `{}`. */
export type StepOutput = Record<string, unknown> | void | undefined | null;

export class StepError extends Error {
  readonly kind: 'retryable' | 'fatal';
  constructor(kind: 'retryable' | 'fatal', message: string);
  /** A transient failure: the host retries the step per its retry policy. */
  static retryable(message: string): StepError;
  /** A permanent failure: no retry; the steps completed before this one are compensated. */
  static fatal(message: string): StepError;
  /** The fatal error for a step this plugin does not serve. */
  static unknownStep(step: string): StepError;
  /** What a thrown value tells the host (SDK errors as they say, anything else fatal). */
  static from(error: unknown): StepError;
  readonly retryable: boolean;
  /** The same error with `context: ` before its message. */
  context(context: string): StepError;
}

export type ServiceErrorKind =
  | 'denied'
  | 'unknown-service'
  | 'timeout'
  | 'connection'
  | 'http'
  | 'other'
  | 'decode';

export class ServiceError extends Error {
  readonly kind: ServiceErrorKind;
  /** The response, for `http`. */
  readonly response?: Response;
  /** The HTTP status, for `http`. */
  readonly status?: number;
  readonly notFound: boolean;
  /** Timeouts, connection failures, 408, 429 and 5xx. */
  readonly retryable: boolean;
}

export class CacheError extends Error {
  readonly kind: 'invalid-key' | 'too-large';
  readonly retryable: false;
}

export class PublishError extends Error {
  readonly kind: 'denied' | 'invalid-topic' | 'invalid-data' | 'unavailable';
  readonly retryable: boolean;
}

/** The run's context; `T` describes its fields. */
export class Ctx<T extends Record<string, unknown> = Record<string, any>> {
  /** The context as the host sent it. */
  readonly raw: string;
  /** The whole context, parsed. */
  readonly data: T;
  /** Field `key`; a missing (or null) field fails the step (fatal). */
  get<K extends keyof T & string>(key: K): NonNullable<T[K]>;
  /** Field `key`, or `fallback` when it is missing or null. */
  opt<K extends keyof T & string>(key: K): T[K] | undefined;
  opt<K extends keyof T & string>(key: K, fallback: NonNullable<T[K]>): NonNullable<T[K]>;
  has(key: string): boolean;
}

/** One step's functions. They run synchronously: a Promise (an `async` step) fails it. */
export interface StepFns<T extends Record<string, unknown> = Record<string, any>> {
  execute(ctx: Ctx<T>, info: StepInfo): StepOutput;
  /** Undoes `execute`; none means nothing to undo. */
  compensate?(ctx: Ctx<T>, info: StepInfo): StepOutput;
}

/** The `saga-step` export: `export const sagaStep = step({ name: { execute, compensate } })`. */
export function step(
  steps: Record<string, StepFns<any>>,
): typeof import('flowhost:plugin/saga-step@0.1.0');

/** An event as a handler receives it, `data` parsed. */
export interface Event<D = any> {
  id: string;
  topic: string;
  source: string;
  time: Date;
  correlationId?: string;
  data: D;
}

/** The `event-handler` export: `export const eventHandler = handler(fn)`. `fn` runs to its
 * end synchronously: a Promise (an `async` handler) fails the delivery. */
export function handler<D = any>(
  fn: (event: Event<D>) => void,
): typeof import('flowhost:plugin/event-handler@0.1.0');

/** Percent-encodes `segment` for use as one path segment. */
export function encodeSegment(segment: string): string;

export interface Response {
  readonly status: number;
  readonly headers: Array<[string, string]>;
  readonly body: Uint8Array;
  header(name: string): string | undefined;
  text(): string;
  /** The body as JSON; an empty body is null. Throws a `decode` `ServiceError`. */
  json<R = any>(): R;
}

export interface CallOptions {
  headers?: Record<string, string | number>;
  /** Keeps several calls of one step apart: the host sends `<step key>/<this>`. */
  idempotencyKey?: string;
  timeoutMs?: number;
}

export interface RequestOptions extends CallOptions {
  method?: Method;
  /** A body sent as JSON. */
  json?: unknown;
  /** A body sent as it is. */
  body?: Uint8Array | string;
}

export const services: {
  request(service: string, path: string, options?: RequestOptions): Response;
  get<R = any>(service: string, path: string, options?: CallOptions): R;
  post<R = any>(service: string, path: string, json: unknown, options?: CallOptions): R;
  put<R = any>(service: string, path: string, json: unknown, options?: CallOptions): R;
  delete<R = any>(service: string, path: string, options?: CallOptions): R;
};

export const cache: {
  get<V = any>(key: string): V | undefined;
  set(key: string, value: unknown, options?: { ttlMs?: number }): void;
  getBytes(key: string): Uint8Array | undefined;
  setBytes(key: string, bytes: Uint8Array, options?: { ttlMs?: number }): void;
  delete(key: string): void;
};

export const events: {
  publish(topic: string, data: unknown, key?: string): string;
};

export const config: {
  get(key: string): string | undefined;
  get(key: string, fallback: string): string;
};

export const log: {
  trace(message: unknown): void;
  debug(message: unknown): void;
  info(message: unknown): void;
  warn(message: unknown): void;
  error(message: unknown): void;
};
