declare module 'flowhost:plugin/cache@0.1.0' {
  /**
   * The value stored under `key`, or none if it was never set, has expired or was evicted.
   */
  export function get(key: string): Uint8Array | undefined;
  /**
   * Stores `value` under `key`, replacing any earlier value. It expires after `ttl-ms`
   * milliseconds, or after the host's default TTL when none is given.
   */
  export function set(key: string, value: Uint8Array, ttlMs: bigint | undefined): void;
  /**
   * Removes `key`; removing a missing key is not an error.
   */
  export { _delete as delete };
  function _delete(key: string): void;
  /**
   * Why a `set` was refused.
   */
  export type CacheError = CacheErrorInvalidKey | CacheErrorTooLarge;
  /**
   * The key is empty or longer than the host's key cap (256 bytes).
   */
  export interface CacheErrorInvalidKey {
    tag: 'invalid-key',
    val: string,
  }
  /**
   * The value is larger than the host's value cap (1 MiB by default).
   */
  export interface CacheErrorTooLarge {
    tag: 'too-large',
    val: string,
  }
}
