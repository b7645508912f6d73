//! wss:// with certificate pinning against a TLS-terminating test gateway (rcgen +
//! tokio-rustls): both pin kinds connect, a wrong pin fails with `PinMismatch`, and an unpinned
//! self-signed certificate fails WebPKI verification with a plain TLS error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gateway_support;

use std::sync::Arc;

use gateway_support::{MiniGateway, TEST_TIMEOUT, config, pool, request};
use omni_bridge::error::{ConnectError, Error, ErrorKind};
use omni_bridge::gateway::CertPin;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    der: CertificateDer<'static>,
}

fn tls() -> Tls {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let der = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    Tls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        der,
    }
}

#[tokio::test]
async fn both_pin_kinds_connect_and_a_wrong_pin_is_refused() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let tls = tls();
        let gw = MiniGateway::start(Some(tls.acceptor.clone()), 30_000, false).await;
        let url = format!("wss://localhost:{}", gw.addr.port());
        let (pool, _registry) = pool();
        let pins = [
            ("cert", CertPin::of_certificate(&tls.der)),
            ("spki", CertPin::of_public_key(&tls.der).unwrap()),
        ];
        for (name, pin) in pins {
            let mut c = config(&url);
            c.pins = vec![pin];
            pool.upsert(name, c);
            let check = pool.get(name).unwrap().check().await.unwrap();
            assert_eq!(check.server_version, "mini-1", "{name}");
            assert_eq!(check.agents, vec!["main".to_string()]);
            assert_eq!(
                check.granted_scopes,
                vec!["operator.read".to_string(), "operator.write".to_string()]
            );
        }

        let mut wrong = config(&url);
        wrong.pins = vec![
            "sha256/cert:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
                .parse()
                .unwrap(),
        ];
        pool.upsert("wrong", wrong);
        let handle = pool.get("wrong").unwrap();
        let err = handle.check().await.unwrap_err();
        assert_eq!(err, Error::Connect(ConnectError::PinMismatch));
        assert_eq!(err.kind(), ErrorKind::Tls);
        assert!(!err.is_retryable());
        // A run fails at once with the same precise error instead of waiting out its budget.
        let started = tokio::time::Instant::now();
        let err = handle.run(request("pin", "hi", "pin-1")).await.unwrap_err();
        assert_eq!(err, Error::Connect(ConnectError::PinMismatch));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));

        // No pins: normal WebPKI verification rejects the self-signed certificate.
        pool.upsert("webpki", config(&url));
        let err = pool.get("webpki").unwrap().check().await.unwrap_err();
        assert!(
            matches!(err, Error::Connect(ConnectError::Tls(_))),
            "{err:?}"
        );
        pool.close().await;
    })
    .await
    .unwrap();
}
