declare module 'flowhost:plugin/config@0.1.0' {
  /**
   * The value of `key`, or none if the configuration does not set it.
   */
  export function get(key: string): string | undefined;
}
