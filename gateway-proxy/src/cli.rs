//! The command line: `serve`, `credential new`, `fingerprint`, `self-signed`, `check-config`.
//!
//! Each command is a function returning a typed error, so `main` stays a dispatcher and the
//! commands are testable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use shared_protocol::Secret;

use crate::config::{Config, scope_set};
use crate::credential::{TokenHash, generate_token};
use crate::error::ProxyError;
use crate::pin::Pin;
use crate::server::{Listeners, Proxy, Shutdown};

/// TLS, identity, scopes, redaction and rate limits in front of an OpenClaw gateway.
///
/// Run it beside the gateway (which should then listen on loopback only) and point clients
/// (omni-bridge, the OpenClaw CLI, control UIs) at the proxy. Quick start:
///
///   gateway-proxy self-signed --host proxy.example.com --out-dir /etc/gateway-proxy
///   gateway-proxy credential new --name bridge --scopes operator.read,operator.write >> proxy.toml
///   GATEWAY_PROXY_UPSTREAM_TOKEN=... gateway-proxy serve --config proxy.toml
///
/// Signals: SIGHUP reloads the TLS certificate, SIGTERM drains (stop accepting, let connections
/// finish within listen.drain_grace_ms, then close 1012), SIGINT closes at once.
/// Logs: RUST_LOG (default "info"), --log-format json|text.
#[derive(Debug, Parser)]
#[command(name = "gateway-proxy", version, verbatim_doc_comment)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Serve(ServeArgs),
    /// Manage client credentials.
    #[command(subcommand)]
    Credential(CredentialCommand),
    /// Print the pins of a PEM certificate, in the format omni-bridge's --gateway-pin accepts.
    Fingerprint(FingerprintArgs),
    /// Generate a self-signed certificate (cert.pem, key.pem, mode 0600) and print its pins.
    SelfSigned(SelfSignedArgs),
    /// Load and validate a config file (and its TLS files) without serving; takes the same
    /// overrides (flags and env) as `serve`.
    CheckConfig(ServeArgs),
}

/// `--config`.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Config file (TOML); every key is documented in gateway-proxy/proxy.example.toml. Unknown
    /// keys are errors.
    #[arg(long, short, env = "GATEWAY_PROXY_CONFIG")]
    pub config: PathBuf,
}

/// `serve` flags; each overrides the config file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Config file.
    #[command(flatten)]
    pub config: ConfigArg,
    /// Override listen.tls (wss://).
    #[arg(long, env = "GATEWAY_PROXY_LISTEN_TLS")]
    pub listen_tls: Option<SocketAddr>,
    /// Override listen.plain (ws://, loopback unless allow_insecure_listener).
    #[arg(long, env = "GATEWAY_PROXY_LISTEN_PLAIN")]
    pub listen_plain: Option<SocketAddr>,
    /// Override listen.admin (/metrics, /healthz, /readyz).
    #[arg(long, env = "GATEWAY_PROXY_ADMIN")]
    pub admin: Option<SocketAddr>,
    /// Override upstream.url (ws:// or wss://).
    #[arg(long, env = "GATEWAY_PROXY_UPSTREAM_URL")]
    pub upstream_url: Option<String>,
    /// The gateway's token (never logged; prefer the env var over the flag, which shows in ps).
    #[arg(long, env = "GATEWAY_PROXY_UPSTREAM_TOKEN", hide_env_values = true)]
    pub upstream_token: Option<String>,
}

/// `credential` subcommands.
#[derive(Debug, Subcommand)]
pub enum CredentialCommand {
    /// Create a credential: prints the secret token once (give it to the client) and a TOML
    /// snippet with its hash (append it to the config; the proxy never stores the token).
    New(NewCredentialArgs),
}

/// `credential new` flags.
#[derive(Debug, Args)]
pub struct NewCredentialArgs {
    /// Credential id (shows in logs and the audit log).
    #[arg(long)]
    pub name: String,
    /// Comma-separated scopes to grant, e.g. operator.read,operator.write.
    #[arg(long, value_delimiter = ',', required = true)]
    pub scopes: Vec<String>,
    /// Comma-separated methods to refuse even if the scopes allow them.
    #[arg(long, value_delimiter = ',')]
    pub deny_methods: Vec<String>,
}

/// `fingerprint` flags.
#[derive(Debug, Args)]
pub struct FingerprintArgs {
    /// PEM certificate (the leaf is the first block).
    #[arg(long)]
    pub cert: PathBuf,
}

/// `self-signed` flags.
#[derive(Debug, Args)]
pub struct SelfSignedArgs {
    /// DNS name or IP the certificate is for (repeat for several).
    #[arg(long = "host", required = true)]
    pub hosts: Vec<String>,
    /// Where to write cert.pem and key.pem.
    #[arg(long, default_value = ".")]
    pub out_dir: PathBuf,
}

/// Loads the config and applies flag/env overrides, then validates.
///
/// # Errors
/// [`ProxyError`] for an unreadable or invalid config.
pub fn load_config(args: &ServeArgs) -> Result<Config, ProxyError> {
    let mut c = Config::load(&args.config.config)?;
    if let Some(a) = args.listen_tls {
        c.listen.tls = Some(a);
    }
    if let Some(a) = args.listen_plain {
        c.listen.plain = Some(a);
    }
    if let Some(a) = args.admin {
        c.listen.admin = Some(a);
    }
    if let Some(u) = &args.upstream_url {
        c.upstream.url = u.clone();
    }
    if let Some(t) = &args.upstream_token {
        c.upstream.token = Some(Secret::new(t.clone()));
    }
    c.validate()?;
    Ok(c)
}

/// `serve`: binds, runs, and maps signals (SIGHUP reload, SIGTERM drain, SIGINT now).
///
/// # Errors
/// [`ProxyError`] for setup failures.
pub async fn serve(args: &ServeArgs) -> Result<(), ProxyError> {
    let config = load_config(args)?;
    let listeners = Listeners::bind(&config).await?;
    let proxy = Proxy::new(config, prometheus::Registry::new())?;
    let shutdown = Shutdown::new();
    let signals = tokio::spawn(handle_signals(proxy.clone(), shutdown.clone()));
    let result = proxy.run(listeners, shutdown).await;
    signals.abort();
    result
}

#[cfg(unix)]
async fn handle_signals(proxy: Proxy, shutdown: Shutdown) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => match proxy.reload_tls() {
                Ok(()) => tracing::info!("TLS certificate reloaded"),
                Err(e) => tracing::error!(error = %e, "TLS reload failed; keeping the old certificate"),
            },
            _ = term.recv() => {
                tracing::info!("SIGTERM: draining");
                shutdown.drain();
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: closing now");
                shutdown.now();
            }
        }
    }
}

#[cfg(not(unix))]
async fn handle_signals(_proxy: Proxy, shutdown: Shutdown) {
    if tokio::signal::ctrl_c().await.is_ok() {
        shutdown.now();
    }
}

/// `credential new`: returns the text to print (secret first, then the TOML snippet).
///
/// # Errors
/// [`ProxyError::Config`] for an unknown scope or an empty name.
pub fn new_credential(args: &NewCredentialArgs) -> Result<String, ProxyError> {
    if args.name.trim().is_empty() {
        return Err(ProxyError::Config("--name must not be empty".into()));
    }
    let scopes = scope_set(&args.scopes).map_err(ProxyError::Config)?;
    let token = generate_token()?;
    let hash = TokenHash::of(token.expose()).to_hex();
    let quote = |v: &[&str]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let deny: Vec<&str> = args.deny_methods.iter().map(String::as_str).collect();
    Ok(format!(
        "# Secret for client {name:?} (shown once; the proxy keeps only its hash).\n\
         # Give it to the client as its gateway token (connect auth.token).\n\
         # token = {secret}\n\n\
         [[credentials]]\n\
         id = {name:?}\n\
         token_sha256 = \"{hash}\"\n\
         scopes = [{scopes}]\n\
         deny_methods = [{deny}]\n",
        name = args.name,
        secret = token.expose(),
        scopes = quote(&scopes.names()),
        deny = quote(&deny),
    ))
}

/// `fingerprint`: both pins of the leaf certificate.
///
/// # Errors
/// [`ProxyError::Tls`] for an unreadable certificate.
pub fn fingerprint(cert: &Path) -> Result<String, ProxyError> {
    let certs = crate::tls::load_certs(cert)?;
    let leaf = &certs[0];
    let spki = Pin::spki_of(leaf).map_err(|e| ProxyError::Tls(e.to_string()))?;
    Ok(format!("{}\n{}\n", Pin::cert_of(leaf), spki))
}

/// `self-signed`: writes cert.pem and key.pem (0600) and returns what to print.
///
/// # Errors
/// [`ProxyError`] for a bad host or an unwritable directory.
pub fn self_signed(args: &SelfSignedArgs) -> Result<String, ProxyError> {
    let s = crate::tls::self_signed(&args.hosts)?;
    let cert = args.out_dir.join("cert.pem");
    let key = args.out_dir.join("key.pem");
    crate::tls::write_private(&cert, s.cert_pem.as_bytes())?;
    crate::tls::write_private(&key, s.key_pem.expose().as_bytes())?;
    Ok(format!(
        "wrote {} and {}\npins (omni-bridge --gateway-pin):\n{}\n{}\n\n[tls]\ncert = {:?}\nkey = {:?}\n",
        cert.display(),
        key.display(),
        s.cert_pin,
        s.spki_pin,
        cert.display().to_string(),
        key.display().to_string(),
    ))
}

/// `check-config`: loads, validates, and loads the TLS files and credentials as `serve` would.
///
/// # Errors
/// The first problem found.
pub fn check_config(args: &ServeArgs) -> Result<String, ProxyError> {
    let c = load_config(args)?;
    let path = &args.config.config;
    if let Some(t) = &c.tls {
        crate::tls::load_certified_key(&t.cert, &t.key)?;
    }
    crate::credential::CredentialStore::from_config(&c.credentials)?;
    Ok(format!(
        "{}: ok ({} credential(s), mode {:?}, upstream {})\n",
        path.display(),
        c.credentials.len(),
        c.identity.mode,
        c.upstream.url
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn credential_snippet_parses_and_matches_the_secret() {
        let out = new_credential(&NewCredentialArgs {
            name: "bridge".into(),
            scopes: vec!["operator.read".into(), "operator.write".into()],
            deny_methods: vec!["chat.inject".into()],
        })
        .unwrap();
        let secret = out
            .lines()
            .find_map(|l| l.strip_prefix("# token = "))
            .unwrap()
            .to_string();
        let toml_part: String = out
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        #[derive(serde::Deserialize)]
        struct F {
            credentials: Vec<crate::config::CredentialConfig>,
        }
        let f: F = toml::from_str(&toml_part).unwrap();
        let store = crate::credential::CredentialStore::from_config(&f.credentials).unwrap();
        assert_eq!(store.authenticate(&secret).unwrap().id, "bridge");
        assert!(
            new_credential(&NewCredentialArgs {
                name: "x".into(),
                scopes: vec!["operator.bogus".into()],
                deny_methods: vec![],
            })
            .is_err()
        );
    }

    #[test]
    fn self_signed_then_fingerprint_prints_the_same_pins() {
        let dir = std::env::temp_dir().join(format!("gwp-cli-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = self_signed(&SelfSignedArgs {
            hosts: vec!["localhost".into()],
            out_dir: dir.clone(),
        })
        .unwrap();
        let fp = fingerprint(&dir.join("cert.pem")).unwrap();
        for line in fp.lines() {
            assert!(out.contains(line), "{line} in {out}");
            assert!(Pin::parse(line).is_ok());
        }
        assert!(fp.starts_with("sha256/cert:") && fp.contains("\nsha256/spki:"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
