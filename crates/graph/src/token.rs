use std::fmt;

/// An access token. `Debug` and `Display` print `AccessToken(***)` so a token cannot reach a log
/// line, an error message or a trace by accident; [`AccessToken::expose`] is the one way out.
#[derive(Clone, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(transparent)]
pub struct AccessToken(String);

/// Serialization is for output only (`igrelay config`): it shows `<redacted>`, never the token.
impl serde::Serialize for AccessToken {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

impl AccessToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The raw token, for the `Authorization` header and `appsecret_proof` only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(***)")
    }
}

impl fmt::Display for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for AccessToken {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for AccessToken {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_token() {
        let t = AccessToken::new("IGQVJ-secret-token");
        assert!(!format!("{t:?} {t} {:?}", Some(&t)).contains("secret"));
        assert_eq!(t.expose(), "IGQVJ-secret-token");
        assert!(!serde_json::to_string(&t).unwrap().contains("secret"));
    }
}
