declare module 'flowhost:plugin/types@0.1.0' {
  /**
   * A JSON document, UTF-8 encoded. Wherever the contract says `json`, the host sends
   * well-formed JSON and expects well-formed JSON back; a step that returns text that does
   * not parse as JSON fails with a fatal error.
   */
  export type Json = string;
  /**
   * Who is calling a step, and why.
   */
  export interface StepInfo {
    /**
     * The run this call belongs to. Stable across attempts and host restarts.
     */
    runId: string,
    /**
     * The workflow the run executes.
     */
    workflow: string,
    /**
     * The step's name in the workflow. One plugin may serve several steps: dispatch on it.
     */
    step: string,
    /**
     * 1 for the first attempt of this step in this direction, 2 for the first retry, ...
     */
    attempt: number,
    /**
     * Stable for one run, step and direction (execute or compensate) across attempts and
     * host restarts. The host sends it as the `Idempotency-Key` header on every service
     * call the step makes; pass it on to anything else that deduplicates.
     */
    idempotencyKey: string,
  }
  /**
   * Why a step failed, which decides what the host does next.
   */
  export type StepError = StepErrorRetryable | StepErrorFatal;
  /**
   * A transient failure (a service is down, a lock is busy): the host retries the step
   * per its retry policy, and compensates once the retries are exhausted.
   */
  export interface StepErrorRetryable {
    tag: 'retryable',
    val: string,
  }
  /**
   * A permanent failure (invalid input, a declined payment): no retry; the host
   * compensates the steps that completed before this one.
   */
  export interface StepErrorFatal {
    tag: 'fatal',
    val: string,
  }
  /**
   * An event, as handlers receive it (CloudEvents 1.0 attributes).
   */
  export interface Event {
    /**
     * Unique per event; a handler may see the same id more than once (at-least-once
     * delivery) and should treat a repeat as done.
     */
    id: string,
    /**
     * Dot-separated topic, e.g. `order.confirmed` (the CloudEvents `type`).
     */
    topic: string,
    /**
     * Who published it: `plugin/<name>` for a plugin, or the publisher's own source.
     */
    source: string,
    /**
     * Publication time, milliseconds since the Unix epoch.
     */
    timeMs: bigint,
    /**
     * The run that caused this event, if a run did.
     */
    correlationId?: string,
    /**
     * The payload.
     */
    data: Json,
  }
}
