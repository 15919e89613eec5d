//! The web console at `/ui`: plain HTML, CSS and ES modules from `host/console/`, embedded
//! in the binary at compile time. It uses the public API only, from the browser; nothing
//! here knows what the pages show. `server.console-dir` serves the files from a directory
//! instead, for working on them without a rebuild.

use std::borrow::Cow;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::extract::Path;
use super::{AppState, Problem, ProblemDetails};

/// The tag of these routes in the OpenAPI document.
pub const TAG: &str = "console";

/// The console's files.
#[derive(rust_embed::Embed)]
#[folder = "console/"]
struct Assets;

/// The console: its pages are routed in the browser (`/ui#/runs/<id>`).
#[utoipa::path(
    get,
    operation_id = "console",
    path = "/ui",
    tag = TAG,
    responses((status = 200, description = "The console's page.", body = String, content_type = "text/html; charset=utf-8"))
)]
pub async fn index(State(app): State<AppState>) -> Result<Response, Problem> {
    asset(&app, "index.html")
}

/// One of the console's files: its scripts, styles and icons.
#[utoipa::path(
    get,
    operation_id = "console_file",
    path = "/ui/{file}",
    tag = TAG,
    params(("file" = String, Path, description = "A file of the console, such as `app.js`.")),
    responses(
        (status = 200, description = "The file.", body = String),
        (status = 404, description = "No such file.", body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub async fn file(
    State(app): State<AppState>,
    Path(file): Path<String>,
) -> Result<Response, Problem> {
    asset(&app, &file)
}

/// The root: the console.
#[utoipa::path(
    get,
    operation_id = "root",
    path = "/",
    tag = TAG,
    responses((status = 307, description = "To the console.", headers(("Location" = String, description = "`/ui`"))))
)]
pub async fn root() -> Response {
    (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, "/ui")]).into_response()
}

/// `name`'s bytes with its content type; pages are never cached, so that a new build's
/// console is the one a browser shows.
fn asset(app: &AppState, name: &str) -> Result<Response, Problem> {
    let unknown = || {
        Problem::new(
            StatusCode::NOT_FOUND,
            format!("the console has no `{name}`"),
        )
    };
    // Files of one flat directory: no path can climb out of it.
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(unknown());
    }
    let bytes: Cow<'static, [u8]> = match &app.console_dir {
        Some(dir) => Cow::Owned(std::fs::read(dir.join(name)).map_err(|_| unknown())?),
        None => Assets::get(name).ok_or_else(unknown)?.data,
    };
    let kind = match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    };
    let mut response = (StatusCode::OK, bytes.into_owned()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The console talks to this host only, and runs only its own scripts.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'",
        ),
    );
    Ok(response)
}
