//! Bearer tokens: the admin token in front of the plugin routes, the optional trigger
//! token in front of the routes that start runs and publish events.
//!
//! Tokens are compared in constant time (as SHA-256 digests, so that not even the length
//! shows), and never logged: the configuration holds them as [`Secret`]s.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Problem;
use crate::model::Secret;

/// What a group of routes requires.
#[derive(Clone)]
pub enum Guard {
    /// Anyone may call them.
    Open,
    /// Requests must carry this token.
    Token {
        /// SHA-256 of the token.
        digest: [u8; 32],
    },
    /// The routes are off; the detail says how to turn them on.
    Off(&'static str),
}

impl Guard {
    /// Requires `token` if there is one; otherwise the routes are open.
    pub fn optional(token: Option<&Secret>) -> Self {
        token.map_or(Guard::Open, Self::token)
    }

    /// Requires `token`; without one the routes are off, `how` saying how to enable them.
    pub fn required(token: Option<&Secret>, how: &'static str) -> Self {
        token.map_or(Guard::Off(how), Self::token)
    }

    fn token(token: &Secret) -> Self {
        Guard::Token {
            digest: Sha256::digest(token.expose().as_bytes()).into(),
        }
    }
}

/// Middleware: lets the request through if `guard` allows it; 401 without a bearer token,
/// 403 with a wrong one or when the routes are off.
pub async fn require(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let expected = match &guard {
        Guard::Open => return next.run(request).await,
        Guard::Off(how) => return Problem::new(StatusCode::FORBIDDEN, *how).into_response(),
        Guard::Token { digest } => digest,
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let Some(presented) = presented else {
        let mut response = Problem::new(
            StatusCode::UNAUTHORIZED,
            "this route needs `Authorization: Bearer <token>`",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    };
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    if bool::from(digest.ct_eq(expected)) {
        next.run(request).await
    } else {
        Problem::new(
            StatusCode::FORBIDDEN,
            "the bearer token is not valid for this route",
        )
        .into_response()
    }
}
