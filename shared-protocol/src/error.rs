//! The gateway's error shape, with its codes as enums that keep values we do not know yet.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `{code, message, details?, retryable?, retryAfterMs?}` (`ErrorShapeSchema`).
///
/// Branch on [`ErrorShape::code`] and [`ErrorShape::detail_code`]; `message` is prose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorShape {
    /// Top-level code.
    pub code: ErrorCode,
    /// Human-readable text; never branch on it.
    #[serde(default)]
    pub message: String,
    /// Structured details: `details.code` (see [`DetailCode`]), `details.reason`, `missingScope`...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// The gateway says a retry may succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// How long to wait before that retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ErrorShape {
    /// An error with a code and a message and nothing else.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
            retryable: None,
            retry_after_ms: None,
        }
    }

    /// The gateway's `MISSING_SCOPE` answer for a call that needs `scope`.
    pub fn missing_scope(scope: &str) -> Self {
        Self {
            details: Some(serde_json::json!({
                "code": "MISSING_SCOPE", "missingScope": scope, "requiredScopes": [scope]
            })),
            ..Self::new(ErrorCode::Forbidden, format!("missing scope: {scope}"))
        }
    }

    /// A retryable `UNAVAILABLE` with a retry hint and a `details.reason`.
    pub fn unavailable(message: impl Into<String>, reason: &str, retry_after_ms: u64) -> Self {
        Self {
            details: Some(serde_json::json!({ "reason": reason })),
            retryable: Some(true),
            retry_after_ms: Some(retry_after_ms),
            ..Self::new(ErrorCode::Unavailable, message)
        }
    }

    /// `details.code`, parsed.
    pub fn detail_code(&self) -> Option<DetailCode> {
        let code = self.details.as_ref()?.get("code")?.as_str()?;
        Some(DetailCode::from(code))
    }

    /// `details.reason` (e.g. `startup-sidecars`, `chat-request-conflict`).
    pub fn reason(&self) -> Option<&str> {
        self.details.as_ref()?.get("reason")?.as_str()
    }

    /// True when the gateway marked the error retryable.
    pub fn is_retryable(&self) -> bool {
        self.retryable == Some(true)
    }
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
            /// A value this build does not know; kept verbatim.
            Unknown(String),
        }

        impl $name {
            /// The wire spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $wire,)*
                    Self::Unknown(s) => s,
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $($wire => Self::$variant,)*
                    other => Self::Unknown(other.to_string()),
                }
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                Ok(Self::from(s.as_ref()))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use string_enum;

string_enum! {
    /// Top-level error codes (`ErrorCodes`, `gateway-error-details.ts`).
    ErrorCode {
        /// Malformed or refused request, including auth failures at connect.
        InvalidRequest = "INVALID_REQUEST",
        /// Authenticated but not allowed (missing scope).
        Forbidden = "FORBIDDEN",
        /// Try again later; see `retryable` / `retryAfterMs`.
        Unavailable = "UNAVAILABLE",
        /// Device not paired.
        NotPaired = "NOT_PAIRED",
        /// Approval id unknown.
        ApprovalNotFound = "APPROVAL_NOT_FOUND",
        /// Deprecated.
        NotLinked = "NOT_LINKED",
        /// Deprecated.
        AgentTimeout = "AGENT_TIMEOUT",
    }
}

string_enum! {
    /// `details.code` values: gateway detail codes and connect-time codes.
    DetailCode {
        /// The socket lacks the scope the method needs.
        MissingScope = "MISSING_SCOPE",
        /// The agent id is not configured.
        UnknownAgentId = "UNKNOWN_AGENT_ID",
        /// Auth required.
        AuthRequired = "AUTH_REQUIRED",
        /// Auth refused.
        AuthUnauthorized = "AUTH_UNAUTHORIZED",
        /// No token sent.
        AuthTokenMissing = "AUTH_TOKEN_MISSING",
        /// Wrong token.
        AuthTokenMismatch = "AUTH_TOKEN_MISMATCH",
        /// The gateway has no token configured.
        AuthTokenNotConfigured = "AUTH_TOKEN_NOT_CONFIGURED",
        /// No password sent.
        AuthPasswordMissing = "AUTH_PASSWORD_MISSING",
        /// Wrong password.
        AuthPasswordMismatch = "AUTH_PASSWORD_MISMATCH",
        /// Device token no longer valid.
        AuthDeviceTokenMismatch = "AUTH_DEVICE_TOKEN_MISMATCH",
        /// Requested scopes exceed the device's.
        AuthScopeMismatch = "AUTH_SCOPE_MISMATCH",
        /// Too many auth attempts.
        AuthRateLimited = "AUTH_RATE_LIMITED",
        /// Protocol range does not include the server's.
        ProtocolMismatch = "PROTOCOL_MISMATCH",
        /// A browser origin that is not allowed.
        ControlUiOriginNotAllowed = "CONTROL_UI_ORIGIN_NOT_ALLOWED",
        /// A device identity is required on this link.
        DeviceIdentityRequired = "DEVICE_IDENTITY_REQUIRED",
        /// Device proof invalid.
        DeviceAuthInvalid = "DEVICE_AUTH_INVALID",
        /// Device id is not the hash of the public key.
        DeviceAuthDeviceIdMismatch = "DEVICE_AUTH_DEVICE_ID_MISMATCH",
        /// signedAt too far from now.
        DeviceAuthSignatureExpired = "DEVICE_AUTH_SIGNATURE_EXPIRED",
        /// No nonce.
        DeviceAuthNonceRequired = "DEVICE_AUTH_NONCE_REQUIRED",
        /// Nonce is not the challenge's.
        DeviceAuthNonceMismatch = "DEVICE_AUTH_NONCE_MISMATCH",
        /// Signature does not verify.
        DeviceAuthSignatureInvalid = "DEVICE_AUTH_SIGNATURE_INVALID",
        /// Public key unreadable.
        DeviceAuthPublicKeyInvalid = "DEVICE_AUTH_PUBLIC_KEY_INVALID",
        /// Device must be paired first.
        PairingRequired = "PAIRING_REQUIRED",
        /// Client version not accepted.
        ClientVersionMismatch = "CLIENT_VERSION_MISMATCH",
        /// A rate limit applied (gateway-proxy).
        RateLimited = "RATE_LIMITED",
        /// The method is refused by policy (gateway-proxy).
        MethodNotAllowed = "METHOD_NOT_ALLOWED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_observed_missing_scope_error_and_keeps_unknown_codes() {
        let raw = r#"{"code":"FORBIDDEN","message":"missing scope: operator.admin",
            "details":{"code":"MISSING_SCOPE","missingScope":"operator.admin","requiredScopes":["operator.admin"]}}"#;
        let e: ErrorShape = serde_json::from_str(raw).unwrap();
        assert_eq!(e.code, ErrorCode::Forbidden);
        assert_eq!(e.detail_code(), Some(DetailCode::MissingScope));
        assert_eq!(e, ErrorShape::missing_scope("operator.admin"));

        let e: ErrorShape = serde_json::from_str(
            r#"{"code":"BRAND_NEW","message":"x","details":{"code":"NEW_DETAIL"}}"#,
        )
        .unwrap();
        assert_eq!(e.code, ErrorCode::Unknown("BRAND_NEW".into()));
        assert_eq!(
            e.detail_code(),
            Some(DetailCode::Unknown("NEW_DETAIL".into()))
        );
        assert_eq!(serde_json::to_value(&e).unwrap()["code"], "BRAND_NEW");
    }

    #[test]
    fn startup_unavailable_is_retryable_with_a_hint() {
        let raw = r#"{"code":"UNAVAILABLE","message":"gateway starting; retry shortly","retryable":true,"retryAfterMs":500,"details":{"reason":"startup-sidecars"}}"#;
        let e: ErrorShape = serde_json::from_str(raw).unwrap();
        assert!(e.is_retryable());
        assert_eq!(e.retry_after_ms, Some(500));
        assert_eq!(e.reason(), Some("startup-sidecars"));
        assert_eq!(
            e,
            ErrorShape::unavailable("gateway starting; retry shortly", "startup-sidecars", 500)
        );
    }
}
