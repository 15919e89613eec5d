/// <reference path="./flowhost-plugin-types.d.ts" />
declare module 'flowhost:plugin/event-handler@0.1.0' {
  /**
   * Handles one event. An error is retried with backoff and, after the subscription's
   * attempts, the event goes to the dead-letter store. Delivery is at least once.
   */
  export function handle(event: Event): void;
  export type Event = import('flowhost:plugin/types@0.1.0').Event;
}
