//! `serve` logs at start-up, and `check-gateway` prints, where each secret came from — the flag,
//! the environment variable or the config file — and never a secret's value.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use clap::Parser;
use omni_bridge::cli::check_gateway::secret_report;
use omni_bridge::cli::config_args::ConfigArgs;
use omni_bridge::cli::serve::log_secret_sources;
use shared_protocol::log_filter::LogCapture;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    config: ConfigArgs,
}

#[test]
fn serve_and_check_gateway_say_where_each_secret_came_from_without_its_value() {
    let file =
        std::env::temp_dir().join(format!("omni-bridge-secrets-{}.toml", std::process::id()));
    std::fs::write(
        &file,
        "session_key_secret = \"file-session-secret-0123456789\"\n[gateways.default]\nurl = \"ws://127.0.0.1:1\"\ntoken = \"file-gateway-token\"\n[agents.main]\n",
    )
    .unwrap();
    let args = Args::try_parse_from([
        "t",
        "--config",
        file.to_str().unwrap(),
        "--gateway-token",
        "flag-gateway-token",
    ])
    .unwrap();
    let env = vec![(
        "OMNI_BRIDGE_INBOUND_TOKEN".to_string(),
        "env-inbound-token".to_string(),
    )];
    let config = args.config.merged(&env).unwrap();
    config.validate().unwrap();
    assert_eq!(
        config.gateways["default"].token.expose(),
        "flag-gateway-token"
    );

    let capture = LogCapture::new();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(capture.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || log_secret_sources(&config));
    let logged = capture.contents();
    let printed = secret_report(&config);
    for text in [&logged, &printed] {
        assert!(
            text.contains("gateways.default.token: from the command-line flag --gateway-token"),
            "{text}"
        );
        assert!(
            text.contains("inbound_token: from the environment variable OMNI_BRIDGE_INBOUND_TOKEN"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "session_key_secret: from the config file {}",
                file.display()
            )),
            "{text}"
        );
        for secret in [
            "flag-gateway-token",
            "file-gateway-token",
            "env-inbound-token",
            "file-session-secret",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
    let _ = std::fs::remove_file(&file);
}
