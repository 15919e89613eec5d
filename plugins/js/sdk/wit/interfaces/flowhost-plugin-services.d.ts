declare module 'flowhost:plugin/services@0.1.0' {
  /**
   * Makes the call, with retries. Blocks the calling step until it is done.
   */
  export function call(request: Request): Response;
  /**
   * The HTTP method of a call.
   * # Variants
   * 
   * ## `"get"`
   * 
   * ## `"head"`
   * 
   * ## `"post"`
   * 
   * ## `"put"`
   * 
   * ## `"patch"`
   * 
   * ## `"delete"`
   */
  export type Method = 'get' | 'head' | 'post' | 'put' | 'patch' | 'delete';
  /**
   * One call to a named service.
   */
  export interface Request {
    /**
     * The service's name in the host configuration, e.g. `payments`.
     */
    service: string,
    method: Method,
    /**
     * Path and query relative to the service's base URL, e.g. `/users/42?full=true`.
     * Must start with `/`.
     */
    path: string,
    /**
     * Extra headers. `Authorization`, `X-Request-ID` and `Host` are set by the host and
     * cannot be overridden. The host sends the step's idempotency key as
     * `Idempotency-Key`; a step that makes several calls of the same kind passes its own
     * `idempotency-key` header (say, an item id), and the host sends
     * `<step key>/<that value>` instead, so each call stays distinct and stable.
     */
    headers: Array<[string, string]>,
    /**
     * The request body, if any. A JSON body should come with a
     * `content-type: application/json` header.
     */
    body?: Uint8Array,
    /**
     * A timeout per attempt in milliseconds, at most the service's configured timeout;
     * none means the configured timeout.
     */
    timeoutMs?: number,
  }
  /**
   * A service's answer.
   */
  export interface Response {
    /**
     * The HTTP status code.
     */
    status: number,
    /**
     * Response headers, names in lower case.
     */
    headers: Array<[string, string]>,
    /**
     * The body, at most the host's configured response cap (4 MiB by default).
     */
    body: Uint8Array,
  }
  /**
   * Why a call did not produce a successful (2xx or 3xx) response.
   */
  export type CallError = CallErrorDenied | CallErrorUnknownService | CallErrorTimeout | CallErrorConnection | CallErrorHttp | CallErrorOther;
  /**
   * This plugin's configuration does not grant it the service. Not retried.
   */
  export interface CallErrorDenied {
    tag: 'denied',
    val: string,
  }
  /**
   * No service of that name is configured. Not retried.
   */
  export interface CallErrorUnknownService {
    tag: 'unknown-service',
    val: string,
  }
  /**
   * Every attempt timed out.
   */
  export interface CallErrorTimeout {
    tag: 'timeout',
    val: string,
  }
  /**
   * Every attempt failed to connect (refused, reset, DNS).
   */
  export interface CallErrorConnection {
    tag: 'connection',
    val: string,
  }
  /**
   * The service answered with a 4xx, or with a 429 or 5xx after the retries ran out.
   */
  export interface CallErrorHttp {
    tag: 'http',
    val: Response,
  }
  /**
   * Anything else: an invalid request (bad path or header), or a response body over
   * the host's cap.
   */
  export interface CallErrorOther {
    tag: 'other',
    val: string,
  }
}
