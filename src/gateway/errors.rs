//! Failures of a gateway request and their HTTP form. [`status`] is THE mapping from
//! [`DomainError`] to an HTTP status; nothing else in the gateway picks a status for a
//! domain failure.
//!
//! Bodies are `{"error": "<condition>", "message": "<text>"}`. Internal errors are
//! logged with their details and answered with a generic message.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::domain::error::FailureKind;
use crate::domain::DomainError;

/// What `WWW-Authenticate` says on a 401 (RFC 6750).
const BEARER_CHALLENGE: &str = "Bearer realm=\"pubsubd\"";
/// `Retry-After` on a 429: token buckets refill continuously, so a second is enough
/// for a well-behaved client to get a token back.
const RETRY_AFTER_SECS: &str = "1";
/// `Retry-After` on a 503 (the database is unavailable): the store gives up on a
/// connection after 5 s, and a restarting database is usually back within a few
/// seconds, so asking again sooner would only add load.
const STORE_RETRY_AFTER_SECS: &str = "5";

/// Why a gateway request failed.
#[derive(Debug)]
pub enum ApiError {
    /// A pubsub command refused or failed. `anonymous` is whether the request carried
    /// no token: then a permission refusal is a 401 (a token might help), not a 403.
    Domain { error: DomainError, anonymous: bool },
    /// No token, on a request that needs one, or a token that is not configured.
    Unauthorized(&'static str),
    /// The body's Content-Type is not one the route takes.
    UnsupportedMediaType(String),
}

impl ApiError {
    /// A domain failure of an authenticated request (or one whose anonymity does not
    /// change the answer).
    pub fn domain(error: DomainError, anonymous: bool) -> ApiError {
        ApiError::Domain { error, anonymous }
    }

    /// A malformed request.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::Domain {
            error: DomainError::BadRequest(message.into()),
            anonymous: false,
        }
    }
}

/// The HTTP status for a domain failure. `anonymous`: the requester sent no token.
pub fn status(error: &DomainError, anonymous: bool) -> StatusCode {
    use DomainError as E;
    let refused = if anonymous {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::FORBIDDEN
    };
    // Exhaustive on purpose: a new DomainError must be given a status here.
    match error {
        E::NodeNotFound | E::ItemNotFound => StatusCode::NOT_FOUND,
        E::Forbidden | E::NotAuthorized { .. } | E::ClosedNode => refused,
        E::MaxNodesExceeded
        | E::TooManySubscriptions
        | E::PolicyViolation(_)
        | E::NotAllowed(_) => refused,
        E::NodeExists
        | E::LastOwner
        | E::PendingSubscription
        | E::NodeFull
        | E::MaxItemsExceeded
        | E::InvalidLink(_)
        | E::UnsupportedFeature(_)
        | E::UnsupportedAccessModel { .. } => StatusCode::CONFLICT,
        E::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
        E::PayloadTooBig => StatusCode::PAYLOAD_TOO_LARGE,
        E::NotSubscribed
        | E::InvalidJid
        | E::JidRequired
        | E::InvalidSubId
        | E::SubIdRequired
        | E::NodeIdRequired
        | E::InstantNodesUnsupported
        | E::ItemRequired
        | E::PayloadRequired
        | E::ItemForbidden
        | E::InvalidPayload
        | E::PreconditionNotMet { .. }
        | E::InvalidOptions(_)
        | E::BadRequest(_)
        | E::NotAcceptable(_) => StatusCode::BAD_REQUEST,
        // Rate limits (and other "try again later" refusals).
        E::ResourceConstraint => StatusCode::TOO_MANY_REQUESTS,
        E::RosterUnreadable => StatusCode::SERVICE_UNAVAILABLE,
        // The database is down: try again later (with `Retry-After`). A concurrent
        // change took a unique key first: a conflict. Anything else: a fault of ours.
        E::Internal {
            kind: FailureKind::Unavailable,
            ..
        } => StatusCode::SERVICE_UNAVAILABLE,
        E::Internal {
            kind: FailureKind::Conflict,
            ..
        } => StatusCode::CONFLICT,
        E::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A short machine-readable name for the failure.
fn condition(error: &DomainError) -> &'static str {
    use DomainError as E;
    match error {
        E::NodeNotFound => "node-not-found",
        E::ItemNotFound => "item-not-found",
        E::NodeExists => "node-exists",
        E::Forbidden => "forbidden",
        E::NotAuthorized { .. } => "not-authorized",
        E::ClosedNode => "closed-node",
        E::PayloadTooBig => "payload-too-big",
        E::Internal {
            kind: FailureKind::Unavailable,
            ..
        } => "unavailable",
        E::Internal { .. } => "internal",
        E::ResourceConstraint => "rate-limited",
        E::RosterUnreadable => "unavailable",
        E::LastOwner => "last-owner",
        E::UnsupportedFeature(_) | E::UnsupportedAccessModel { .. } => "unsupported",
        E::NotImplemented(_) => "not-implemented",
        E::NodeFull | E::MaxItemsExceeded => "node-full",
        E::MaxNodesExceeded | E::TooManySubscriptions | E::PolicyViolation(_) => "policy-violation",
        E::NotAllowed(_) => "not-allowed",
        E::InvalidLink(_) => "invalid-link",
        _ => "bad-request",
    }
}

fn body(status: StatusCode, error: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": error, "message": message })),
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Domain { error, anonymous } => {
                let status = status(&error, anonymous);
                let message = match &error {
                    DomainError::Internal { details, .. } => {
                        tracing::warn!(error = %details, "gateway request failed");
                        "the service cannot answer right now; try again later".to_string()
                    }
                    other => other.to_string(),
                };
                let mut response = body(status, condition(&error), &message);
                if status == StatusCode::UNAUTHORIZED {
                    challenge(&mut response);
                }
                let retry_after = match status {
                    StatusCode::TOO_MANY_REQUESTS => Some(RETRY_AFTER_SECS),
                    StatusCode::SERVICE_UNAVAILABLE => Some(STORE_RETRY_AFTER_SECS),
                    _ => None,
                };
                if let Some(secs) = retry_after {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static(secs));
                }
                response
            }
            ApiError::Unauthorized(why) => {
                let mut response = body(StatusCode::UNAUTHORIZED, "unauthorized", why);
                challenge(&mut response);
                response
            }
            ApiError::UnsupportedMediaType(message) => body(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                &message,
            ),
        }
    }
}

fn challenge(response: &mut Response) {
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(BEARER_CHALLENGE),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::NotAuthorizedReason;

    #[test]
    fn refusals_are_401_for_anonymous_and_403_with_a_token() {
        for e in [
            DomainError::Forbidden,
            DomainError::ClosedNode,
            DomainError::NotAuthorized {
                reason: NotAuthorizedReason::NotSubscribed,
            },
        ] {
            assert_eq!(status(&e, true), StatusCode::UNAUTHORIZED, "{e:?}");
            assert_eq!(status(&e, false), StatusCode::FORBIDDEN, "{e:?}");
        }
    }

    #[test]
    fn the_listed_statuses_are_used() {
        assert_eq!(
            status(&DomainError::NodeNotFound, false),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(&DomainError::ItemNotFound, true),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(&DomainError::NodeExists, false),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status(&DomainError::PayloadTooBig, false),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            status(&DomainError::BadRequest("x".into()), false),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(
                &DomainError::Internal {
                    kind: FailureKind::Unavailable,
                    details: "db down".into()
                },
                false
            ),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status(&DomainError::internal("bug"), false),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            status(&DomainError::ResourceConstraint, false),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            status(&DomainError::RosterUnreadable, false),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
