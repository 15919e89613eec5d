//! WASI for plugins: linked so that standard toolchains' components instantiate, with
//! nothing granted.
//!
//! No preopened directories, no environment variables or arguments, no sockets or name
//! lookups, stdin empty and stdout/stderr discarded; `wasi:http` outgoing requests are all
//! denied. JS (componentize-js) and Python (componentize-py) components import `wasi:http`
//! whether or not they use it, so it must be linked for them to instantiate at all. Clocks
//! and randomness are the host's real ones.

use wasmtime_wasi::WasiCtx;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

/// A WASI context that grants nothing.
pub fn sandboxed_wasi_ctx() -> WasiCtx {
    WasiCtx::builder()
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

/// `wasi:http` hooks that refuse every outgoing request: plugins call services through
/// `flowhost:plugin/services`, where the host applies grants, credentials and retries.
pub struct DenyOutgoingHttp;

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for DenyOutgoingHttp {
    fn send_request(
        &mut self,
        _request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        Box::new(async { Err(ErrorCode::HttpRequestDenied.into()) })
    }
}
