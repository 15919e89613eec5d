declare module 'flowhost:plugin/log@0.1.0' {
  /**
   * Writes one log line. A message longer than the host's cap (4 KiB) is cut at a
   * character boundary and marked as truncated; logging never fails.
   */
  export function log(level: Level, message: string): void;
  /**
   * Severity, as in `tracing`.
   * # Variants
   * 
   * ## `"trace"`
   * 
   * ## `"debug"`
   * 
   * ## `"info"`
   * 
   * ## `"warn"`
   * 
   * ## `"error"`
   */
  export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
}
