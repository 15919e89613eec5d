/// <reference path="./flowhost-plugin-types.d.ts" />
declare module 'flowhost:plugin/saga-step@0.1.0' {
  /**
   * Runs the step. `ctx` is the run's context: the JSON object the run started with,
   * merged with the objects returned by the steps that completed before this one. The
   * returned JSON object is merged into the context (its top-level keys replace the
   * context's); return `{}` to change nothing.
   * 
   * May run more than once for the same step (at-least-once): use
   * `info.idempotency-key` to make repeats harmless.
   */
  export function execute(info: StepInfo, ctx: Json): Json;
  /**
   * Undoes a completed `execute`, when a later step failed. Receives the context as it
   * was after this step's `execute`. Must be idempotent too; a `retryable` error is
   * retried with backoff, and a compensation that keeps failing stops the run in
   * `compensation_failed` until an operator retries it.
   */
  export function compensate(info: StepInfo, ctx: Json): Json;
  export type Json = import('flowhost:plugin/types@0.1.0').Json;
  export type StepInfo = import('flowhost:plugin/types@0.1.0').StepInfo;
  export type StepError = import('flowhost:plugin/types@0.1.0').StepError;
}
