/// <reference path="./flowhost-plugin-types.d.ts" />
declare module 'flowhost:plugin/events@0.1.0' {
  /**
   * Publishes `data` on `topic` and returns the new event's id. When called from a saga
   * step, the event is held until the step's result is durable and dropped if the attempt
   * fails. `key` orders events: events with the same key are delivered in order.
   */
  export function publish(topic: string, data: Json, key: string | undefined): string;
  export type Json = import('flowhost:plugin/types@0.1.0').Json;
  /**
   * Why an event was not accepted.
   */
  export type PublishError = PublishErrorDenied | PublishErrorInvalidTopic | PublishErrorInvalidData | PublishErrorUnavailable;
  /**
   * This plugin's configuration does not grant it the topic.
   */
  export interface PublishErrorDenied {
    tag: 'denied',
    val: string,
  }
  /**
   * The topic is not dot-separated segments of `[A-Za-z0-9_-]`, e.g. `order.confirmed`.
   */
  export interface PublishErrorInvalidTopic {
    tag: 'invalid-topic',
    val: string,
  }
  /**
   * `data` is not well-formed JSON, or is larger than the host's event cap.
   */
  export interface PublishErrorInvalidData {
    tag: 'invalid-data',
    val: string,
  }
  /**
   * The host could not accept the event now; publishing again may succeed.
   */
  export interface PublishErrorUnavailable {
    tag: 'unavailable',
    val: string,
  }
}
