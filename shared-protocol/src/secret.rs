//! A secret that never prints: gateway tokens, client credentials, device keys.

use std::fmt;

/// A value whose `Debug` and `Display` print `***`, so it cannot reach a log line by accident.
///
/// Read it with [`Secret::expose`] at the one place that needs the value (a connect frame, a
/// constant-time comparison).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T = String>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The value itself. Call sites are easy to audit: grep for `expose(`.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl Secret<String> {
    /// True when no secret was configured (an empty string).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Secret<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(Self)
    }
}

/// serde `serialize_with` for the one place a secret must reach the wire (a connect frame).
///
/// # Errors
/// Whatever the serializer returns.
pub fn serialize_exposed<S: serde::Serializer>(
    value: &Option<Secret>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.serialize_str(v.expose()),
        None => s.serialize_none(),
    }
}

/// serde `serialize_with` for a required secret field.
///
/// # Errors
/// Whatever the serializer returns.
pub fn serialize_exposed_str<S: serde::Serializer>(
    value: &Secret,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(value.expose())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            token: Secret,
        }
        assert!(!format!("{:?}", Holder { token: s }).contains("hunter2"));
    }
}
