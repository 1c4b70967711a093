//! The `[http]` table: where the gateway listens and which bearer tokens act as which
//! JID. Tokens are configured as SHA-256 digests (`printf %s "$TOKEN" | sha256sum`), so
//! the file never holds a usable secret; digests are not printed by `Debug` either.

use std::net::SocketAddr;

use serde::Deserialize;
use xmpp_parsers::jid::BareJid;

/// `[http]` as written in the file.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    /// `IP:PORT` to serve the gateway on; the gateway is off without it.
    pub listen: Option<String>,
    /// `[[http.token]]` entries.
    #[serde(default)]
    pub token: Vec<TokenFile>,
}

impl std::fmt::Debug for HttpFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpFile")
            .field("listen", &self.listen)
            .field("tokens", &self.token.len())
            .finish()
    }
}

/// One `[[http.token]]`: requests bearing a token whose SHA-256 is `sha256` act as `jid`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    pub jid: String,
    pub sha256: String,
}

/// The validated gateway settings.
#[derive(Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    pub tokens: Vec<TokenEntry>,
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("listen", &self.listen)
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

/// A token digest and the JID it stands for.
#[derive(Clone)]
pub struct TokenEntry {
    pub jid: BareJid,
    pub sha256: [u8; 32],
}

impl HttpFile {
    /// Validates the table; `Ok(None)` when no `listen` address is given and no tokens
    /// either (the gateway is off). Errors carry the key they are about.
    pub fn validate(self) -> Result<Option<HttpConfig>, (&'static str, String)> {
        let Some(listen) = self.listen else {
            if self.token.is_empty() {
                return Ok(None);
            }
            return Err((
                "http.listen",
                "tokens are configured but no listen address; add listen = \"IP:PORT\"".into(),
            ));
        };
        let listen: SocketAddr = listen.parse().map_err(|e| {
            (
                "http.listen",
                format!("expected IP:PORT, got `{listen}`: {e}"),
            )
        })?;
        let mut tokens = Vec::with_capacity(self.token.len());
        for (n, t) in self.token.into_iter().enumerate() {
            let jid: BareJid = t.jid.parse().map_err(|e| {
                (
                    "http.token",
                    format!("entry {}: `{}` is not a bare JID: {e}", n + 1, t.jid),
                )
            })?;
            let sha256 = parse_digest(&t.sha256).ok_or_else(|| {
                (
                    "http.token",
                    format!(
                        "entry {} ({jid}): sha256 must be 64 hexadecimal digits (the SHA-256 of the token, not the token)",
                        n + 1
                    ),
                )
            })?;
            if tokens.iter().any(|e: &TokenEntry| e.sha256 == sha256) {
                return Err((
                    "http.token",
                    format!(
                        "entry {} ({jid}): the same token is configured twice",
                        n + 1
                    ),
                ));
            }
            tokens.push(TokenEntry { jid, sha256 });
        }
        Ok(Some(HttpConfig { listen, tokens }))
    }
}

fn parse_digest(hex_digits: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(hex_digits.trim()).ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> HttpFile {
        toml::from_str(text).expect("valid toml")
    }

    #[test]
    fn no_listen_and_no_tokens_means_off() {
        assert!(file("").validate().unwrap().is_none());
    }

    #[test]
    fn tokens_without_listen_name_the_key() {
        let e = file("[[token]]\njid = 'a@b'\nsha256 = '00'")
            .validate()
            .unwrap_err();
        assert_eq!(e.0, "http.listen");
    }

    #[test]
    fn a_plain_token_instead_of_its_digest_is_refused() {
        let e = file("listen = '127.0.0.1:8080'\n[[token]]\njid = 'a@b'\nsha256 = 'hunter2'")
            .validate()
            .unwrap_err();
        assert_eq!(e.0, "http.token");
        assert!(!e.1.contains("hunter2"), "{}", e.1);
    }

    #[test]
    fn valid_table_is_read() {
        let digest = "a".repeat(64);
        let c = file(&format!(
            "listen = '127.0.0.1:8080'\n[[token]]\njid = 'bot@example.org'\nsha256 = '{digest}'"
        ))
        .validate()
        .unwrap()
        .unwrap();
        assert_eq!(c.tokens.len(), 1);
        assert_eq!(c.tokens[0].jid.to_string(), "bot@example.org");
    }
}
