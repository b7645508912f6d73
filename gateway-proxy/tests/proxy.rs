//! The proxy end to end against a lean gateway stand-in: TLS termination, exchange handshake,
//! policy verdicts on the wire, auth failures, upstream pinning, rate limits, slow consumers,
//! upstream outages, drain, admin endpoints and certificate reload.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use gateway_proxy::pin::Pin;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn exchange_over_tls_clamps_scopes_and_keeps_the_gateway_token_inside() {
    tokio::time::timeout(T, async {
        let gw = stub::start(None).await;
        let p = start_proxy(&gw.url(), true, "").await;
        let url = format!("wss://localhost:{}", p.tls.unwrap().port());
        let mut ws = open(&url, Some(pinned_client(p.cert_pin.unwrap()))).await;
        let (challenge, res) = handshake(
            &mut ws,
            TOKEN,
            &["operator.admin", "operator.read", "operator.write"],
        )
        .await;
        assert_ne!(
            challenge["payload"]["nonce"], "stub-nonce-1",
            "the proxy's own challenge"
        );
        assert_eq!(res["ok"], true, "{res}");
        assert_eq!(res["id"], "c1");
        assert_eq!(
            res["payload"]["auth"]["scopes"],
            serde_json::json!(["operator.read", "operator.write"])
        );
        assert!(!res.to_string().contains("STUB-DEVICE-TOKEN"));
        // Upstream: the gateway token, a loopback backend identity, the clamped scopes, no
        // Origin / X-Forwarded-*.
        let up = gw.seen.connects.lock()[0].clone();
        assert_eq!(up["auth"]["token"], GATEWAY_TOKEN);
        assert_eq!(up["client"]["id"], "gateway-client");
        assert_eq!(up["client"]["mode"], "backend");
        assert_eq!(
            up["scopes"],
            serde_json::json!(["operator.read", "operator.write"])
        );
        let headers = gw.seen.headers.lock()[0].clone();
        assert!(
            headers
                .iter()
                .all(|(k, _)| k != "origin" && !k.starts_with("x-forwarded")),
            "{headers:?}"
        );
        // A request goes through and its answer comes back byte for byte.
        let r = call(&mut ws, "h1", "health", serde_json::json!({})).await;
        assert_eq!(r["ok"], true);
        assert_eq!(r["payload"]["method"], "health");
        p.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn escalation_attempts_are_answered_by_the_proxy_and_never_reach_the_gateway() {
    tokio::time::timeout(T, async {
        let gw = stub::start(None).await;
        let p = start_proxy(&gw.url(), false, "").await;
        let mut ws = connected(
            &p.ws_url(),
            &["operator.admin", "operator.read", "operator.write"],
        )
        .await;
        for (i, (method, params)) in [
            ("sessions.reset", serde_json::json!({"key": "main"})),
            ("config.set", serde_json::json!({"raw": "{}"})),
            ("update.run", serde_json::json!({})),
            (
                "chat.inject",
                serde_json::json!({"sessionKey": "main", "message": "x"}),
            ),
            ("agent", serde_json::json!({"message": "/reset"})),
            ("sessions.delete", serde_json::json!({"key": "main"})),
        ]
        .into_iter()
        .enumerate()
        {
            let r = call(&mut ws, &format!("e{i}"), method, params).await;
            assert_eq!(r["ok"], false, "{method}");
            assert_eq!(r["error"]["code"], "FORBIDDEN", "{method}");
            assert_eq!(r["error"]["details"]["code"], "MISSING_SCOPE", "{method}");
            assert_eq!(r["error"]["details"]["missingScope"], "operator.admin");
        }
        let r = call(&mut ws, "d1", "models.list", serde_json::json!({})).await;
        assert_eq!(r["error"]["details"]["code"], "METHOD_NOT_ALLOWED");
        let r = call(&mut ws, "u1", "myplugin.doThings", serde_json::json!({})).await;
        assert_eq!(r["error"]["details"]["code"], "METHOD_NOT_ALLOWED");
        assert_eq!(r["error"]["details"]["reason"], "unknown-method");
        // Allowed work still flows on the same connection.
        let r = call(
            &mut ws,
            "ok",
            "chat.history",
            serde_json::json!({"sessionKey": "main"}),
        )
        .await;
        assert_eq!(r["ok"], true);
        assert_eq!(*gw.seen.methods.lock(), vec!["chat.history".to_string()]);
        let m = p.metrics();
        assert!(
            m.contains(r#"gateway_proxy_denials_total{reason="missing_scope"} 6"#),
            "{m}"
        );
        let audit = p.audit();
        assert!(
            audit.contains(r#""event":"denied""#) && audit.contains(r#""method":"sessions.reset""#)
        );
        p.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn read_only_grant_cannot_write() {
    tokio::time::timeout(T, async {
        let gw = stub::start(None).await;
        let extra = format!(
            "\n[[credentials]]\nid = \"reader\"\ntoken_sha256 = \"{}\"\nscopes = [\"operator.read\"]\n",
            gateway_proxy::credential::TokenHash::of("reader-token").to_hex()
        );
        let p = start_proxy(&gw.url(), false, &extra).await;
        let mut ws = open(&p.ws_url(), None).await;
        let (_, res) = handshake(&mut ws, "reader-token", &["operator.read", "operator.write"]).await;
        assert_eq!(res["payload"]["auth"]["scopes"], serde_json::json!(["operator.read"]));
        let r = call(
            &mut ws,
            "s1",
            "chat.send",
            serde_json::json!({"sessionKey":"main","message":"hi","idempotencyKey":"k"}),
        )
        .await;
        assert_eq!(r["error"]["details"]["missingScope"], "operator.write");
        assert_eq!(call(&mut ws, "h", "health", serde_json::json!({})).await["ok"], true);
        p.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn auth_failures_are_refused_with_the_gateway_shape_and_audited() {
    tokio::time::timeout(T, async {
        let gw = stub::start(None).await;
        let p = start_proxy(&gw.url(), false, "").await;
        let mut ws = open(&p.ws_url(), None).await;
        let (_, res) = handshake(&mut ws, "gwp_wrong", &["operator.read"]).await;
        assert_eq!(res["error"]["code"], "INVALID_REQUEST");
        assert_eq!(res["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH");
        assert_eq!(close_code(&mut ws).await, Some(1008));

        let mut ws = open(&p.ws_url(), None).await;
        let _ = next_json(&mut ws).await;
        ws.send(Message::text(
            r#"{"type":"req","id":"x","method":"health"}"#,
        ))
        .await
        .unwrap();
        let res = next_json(&mut ws).await;
        assert!(
            res["error"]["message"]
                .as_str()
                .unwrap()
                .contains("first request must be connect")
        );
        assert_eq!(close_code(&mut ws).await, Some(1008));

        let mut ws = open(&p.ws_url(), None).await;
        let _ = next_json(&mut ws).await;
        ws.send(Message::text("x".repeat(70 * 1024))).await.unwrap();
        assert_eq!(close_code(&mut ws).await, Some(1009));

        let mut ws = open(&p.ws_url(), None).await;
        let _ = next_json(&mut ws).await;
        let bad = connect_frame(TOKEN, &[]).replace("\"role\"", "\"foo\":1,\"role\"");
        ws.send(Message::text(bad)).await.unwrap();
        let res = next_json(&mut ws).await;
        assert!(
            res["error"]["message"]
                .as_str()
                .unwrap()
                .contains("invalid connect params")
        );

        assert!(
            gw.seen.connects.lock().is_empty(),
            "nothing reached the gateway"
        );
        assert!(p.audit().contains("AUTH_TOKEN_MISMATCH"));
        p.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn upstream_pin_match_and_mismatch() {
    tokio::time::timeout(T, async {
        let dir = temp_dir();
        let pin = write_cert(&dir);
        let key =
            gateway_proxy::tls::load_certified_key(&dir.join("cert.pem"), &dir.join("key.pem"))
                .unwrap();
        let spki = Pin::spki_of(&key.cert[0]).unwrap();
        let cert = Arc::new(gateway_proxy::tls::ReloadableCert::new(key));
        let sc = gateway_proxy::tls::server_config(cert, None).unwrap();
        let gw = stub::start(Some(sc)).await;
        for (good, pin) in [(true, pin), (true, spki), (false, Pin::Spki([7; 32]))] {
            let extra = format!("pins = [\"{pin}\"]\n");
            let text = config_text(&gw.wss_url(), &temp_dir(), false).replace(
                "connect_timeout_ms = 2000\n",
                &format!("connect_timeout_ms = 2000\n{extra}"),
            );
            let p = start_proxy_with(&text, temp_dir(), None).await;
            let mut ws = open(&p.ws_url(), None).await;
            let (_, res) = handshake(&mut ws, TOKEN, &["operator.read"]).await;
            if good {
                assert_eq!(res["ok"], true, "{pin}: {res}");
            } else {
                assert_eq!(res["error"]["code"], "UNAVAILABLE");
                assert_eq!(res["error"]["retryable"], true);
                assert_eq!(close_code(&mut ws).await, Some(1013));
                assert!(
                    p.metrics()
                        .contains(r#"gateway_proxy_upstream_errors_total{kind="connect"} 1"#)
                );
            }
            p.stop().await;
        }
        std::fs::remove_dir_all(dir).unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn rate_limits_answer_retryable_unavailable_and_keep_the_connection() {
    tokio::time::timeout(T, async {
        let gw = stub::start(None).await;
        let limits = "\n[limits]\nrequests_per_second_per_credential = 1000\nchat_send_per_minute_per_session = 1\n";
        let p = start_proxy(&gw.url(), false, limits).await;
        let mut ws = connected(&p.ws_url(), &["operator.write"]).await;
        let send = |k: &str| serde_json::json!({"sessionKey": k, "message": "m", "idempotencyKey": "i"});
        assert_eq!(call(&mut ws, "a", "chat.send", send("Main-Chat")).await["ok"], true);
        let r = call(&mut ws, "b", "chat.send", send("agent:main:main-chat")).await;
        assert_eq!(r["error"]["code"], "UNAVAILABLE");
        assert_eq!(r["error"]["retryable"], true);
        assert_eq!(r["error"]["details"]["code"], "RATE_LIMITED");
        assert!(r["error"]["retryAfterMs"].as_u64().unwrap() > 0);
        // Same connection, another session: fine.
        assert_eq!(call(&mut ws, "c", "chat.send", send("other")).await["ok"], true);
        assert!(p.metrics().contains(r#"gateway_proxy_rate_limited_total{limit="chat_send_session"} 1"#));
        assert!(p.audit().contains(r#""event":"rate_limited""#));
        p.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn per_credential_connection_limit() {
    tokio::time::timeout(T, async {
        let gw = stub::start(None).await;
        let p = start_proxy(&gw.url(), false, "").await;
        let text = config_text(&gw.url(), &p.dir, false).replace(
            "deny_methods = [\"models.list\"]",
            "deny_methods = []\nmax_connections = 1",
        );
        let p2 = start_proxy_with(&text, temp_dir(), None).await;
        let _first = connected(&p2.ws_url(), &["operator.read"]).await;
        let mut second = open(&p2.ws_url(), None).await;
        let (_, res) = handshake(&mut second, TOKEN, &["operator.read"]).await;
        assert_eq!(res["error"]["details"]["code"], "RATE_LIMITED");
        assert_eq!(res["error"]["details"]["limit"], "connections");
        assert_eq!(close_code(&mut second).await, Some(1013));
        p2.stop().await;
        p.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_as_slow_consumer() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let gw = stub::start(None).await;
        let p = start_proxy(&gw.url(), false, "\n[limits]\nslow_consumer_timeout_ms = 300\n").await;
        let mut ws = connected(&p.ws_url(), &["operator.read"]).await;
        // 64 MiB of events the client never reads: the proxy must give up, not buffer them.
        let req = serde_json::json!({"type":"req","id":"f","method":"status","params":{"flood":1024,"size":65536}});
        ws.send(Message::text(req.to_string())).await.unwrap();
        gw.wait_closed(1).await;
        // The proxy gave up on the client: what it had taken is still delivered, then the
        // connection ends (with a 1008 close frame only if the cut fell between two messages;
        // these 64 KiB events are relayed in smaller reads, so it usually falls inside one).
        let code = close_code(&mut ws).await;
        assert!(matches!(code, None | Some(1008)), "{code:?}");
        let registry = p.registry.clone();
        p.stop().await;
        let m = gateway_proxy::metrics::render(&registry);
        assert!(m.contains("gateway_proxy_slow_consumer_closes_total 1"), "{m}");
        assert!(m.contains("gateway_proxy_connections_open 0"), "{m}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn upstream_down_then_back() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let gw = stub::start(None).await;
        let addr = gw.addr;
        let p = start_proxy(&gw.url(), false, "").await;
        let mut ws = connected(&p.ws_url(), &["operator.read"]).await;
        wait_ready(&p, 200).await;
        gw.stop();
        // The gateway's own close (1012, retryable) reaches the client unchanged.
        assert_eq!(close_code(&mut ws).await, Some(1012));
        wait_ready(&p, 503).await;
        let mut ws = open(&p.ws_url(), None).await;
        let (_, res) = handshake(&mut ws, TOKEN, &["operator.read"]).await;
        assert_eq!(res["error"]["code"], "UNAVAILABLE");
        assert_eq!(res["error"]["retryable"], true);
        assert_eq!(close_code(&mut ws).await, Some(1013));
        let _gw2 = stub::start_on(addr, None).await;
        wait_ready(&p, 200).await;
        let mut ws = connected(&p.ws_url(), &["operator.read"]).await;
        assert_eq!(
            call(&mut ws, "h", "health", serde_json::json!({})).await["ok"],
            true
        );
        p.stop().await;
    })
    .await
    .unwrap();
}

/// Polls /readyz until it answers `status` (the probe runs every 50 ms in tests).
async fn wait_ready(p: &Running, status: u16) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tick.tick().await;
        if admin_get(p.admin, "/readyz").await.0 == status {
            return;
        }
    }
}

#[tokio::test]
async fn admin_endpoints() {
    tokio::time::timeout(T, async {
        let gw = stub::start(None).await;
        let p = start_proxy(&gw.url(), false, "").await;
        assert_eq!(admin_get(p.admin, "/healthz").await.0, 200);
        wait_ready(&p, 200).await;
        let mut ws = connected(&p.ws_url(), &["operator.read"]).await;
        call(&mut ws, "h", "health", serde_json::json!({})).await;
        let (status, body) = admin_get(p.admin, "/metrics").await;
        assert_eq!(status, 200);
        for needle in [
            r#"gateway_proxy_connections_total{outcome="accepted"} 1"#,
            r#"gateway_proxy_frames_total{direction="client_to_upstream",verdict="forwarded"} 1"#,
            "gateway_proxy_handshake_seconds_count 1",
            "gateway_proxy_upstream_up 1",
        ] {
            assert!(body.contains(needle), "{needle} in {body}");
        }
        assert_eq!(admin_get(p.admin, "/nope").await.0, 404);
        p.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn drain_lets_connections_finish_then_closes_1012() {
    tokio::time::timeout(T, async {
        let gw = stub::start(None).await;
        let p = start_proxy(&gw.url(), false, "").await;
        let mut ws = connected(&p.ws_url(), &["operator.read"]).await;
        p.shutdown.drain();
        // Still served during the grace period (200 ms in tests)...
        assert_eq!(
            call(&mut ws, "h", "health", serde_json::json!({})).await["ok"],
            true
        );
        // ...then closed with 1012 "service restart".
        assert_eq!(close_code(&mut ws).await, Some(1012));
        tokio::time::timeout(T, p.task).await.unwrap().unwrap();
        assert!(
            tokio::net::TcpStream::connect(p.plain).await.is_err(),
            "no longer accepting"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn certificate_reload_keeps_open_connections() {
    tokio::time::timeout(T, async {
        let gw = stub::start(None).await;
        let p = start_proxy(&gw.url(), true, "").await;
        let url = format!("wss://localhost:{}", p.tls.unwrap().port());
        let old_pin = p.cert_pin.unwrap();
        let mut old = open(&url, Some(pinned_client(old_pin))).await;
        let (_, res) = handshake(&mut old, TOKEN, &["operator.read"]).await;
        assert_eq!(res["ok"], true);
        let new_pin = write_cert(&p.dir);
        p.proxy.reload_tls().unwrap();
        let mut fresh = open(&url, Some(pinned_client(new_pin))).await;
        let (_, res) = handshake(&mut fresh, TOKEN, &["operator.read"]).await;
        assert_eq!(res["ok"], true);
        assert_eq!(
            call(&mut old, "h", "health", serde_json::json!({})).await["ok"],
            true
        );
        // The old pin no longer matches new handshakes.
        let r = tokio_tungstenite::connect_async_tls_with_config(
            url.as_str(),
            None,
            true,
            Some(tokio_tungstenite::Connector::Rustls(pinned_client(old_pin))),
        )
        .await;
        assert!(r.is_err());
        // A broken key file is refused and the current certificate stays.
        std::fs::write(p.dir.join("key.pem"), "garbage").unwrap();
        assert!(p.proxy.reload_tls().is_err());
        let _still = open(&url, Some(pinned_client(new_pin))).await;
        p.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn mutual_tls_credential_needs_its_client_certificate() {
    tokio::time::timeout(T, async {
        let gw = stub::start(None).await;
        let dir = temp_dir();
        let server_pin = write_cert(&dir);
        let client = gateway_proxy::tls::self_signed(&["client.example".into()]).unwrap();
        std::fs::write(dir.join("client-ca.pem"), &client.cert_pem).unwrap();
        let text = config_text(&gw.url(), &dir, true)
            .replace(
                "[tls]\n",
                &format!("[tls]\nclient_ca = {:?}\n", dir.join("client-ca.pem")),
            )
            .replace(
                "deny_methods = [\"models.list\"]",
                &format!(
                    "deny_methods = []\nclient_cert_pins = [\"{}\"]",
                    client.spki_pin
                ),
            );
        let p = start_proxy_with(&text, dir, Some(server_pin)).await;
        let url = format!("wss://localhost:{}", p.tls.unwrap().port());

        // Without a client certificate: the TLS handshake passes, the credential does not.
        let mut ws = open(&url, Some(pinned_client(server_pin))).await;
        let (_, res) = handshake(&mut ws, TOKEN, &["operator.read"]).await;
        assert_eq!(
            res["error"]["details"]["code"], "AUTH_UNAUTHORIZED",
            "{res}"
        );

        // With it: admitted.
        use rustls::pki_types::pem::PemObject;
        let chain = vec![
            rustls::pki_types::CertificateDer::from_pem_slice(client.cert_pem.as_bytes()).unwrap(),
        ];
        let key =
            rustls::pki_types::PrivateKeyDer::from_pem_slice(client.key_pem.expose().as_bytes())
                .unwrap();
        let prov = gateway_proxy::tls::provider();
        let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::clone(&prov))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(std::sync::Arc::new(
                gateway_proxy::pin::PinnedVerifier::new(vec![server_pin], prov),
            ))
            .with_client_auth_cert(chain, key)
            .unwrap();
        let mut ws = open(&url, Some(std::sync::Arc::new(cfg))).await;
        let (_, res) = handshake(&mut ws, TOKEN, &["operator.read"]).await;
        assert_eq!(res["ok"], true, "{res}");
        p.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn device_identity_mode_signs_the_upstream_connect_with_the_proxys_key() {
    tokio::time::timeout(T, async {
        let gw = stub::start(None).await;
        let dir = temp_dir();
        let key_file = dir.join("device.key");
        let text = config_text(&gw.url(), &dir, false).replace(
            "connect_timeout_ms = 2000\n",
            &format!(
                "connect_timeout_ms = 2000\nidentity = \"device\"\ndevice_key_file = {key_file:?}\n"
            ),
        );
        let p = start_proxy_with(&text, dir, None).await;
        let mut ws = connected(&p.ws_url(), &["operator.read"]).await;
        assert_eq!(
            call(&mut ws, "h", "health", serde_json::json!({})).await["ok"],
            true
        );
        let up = gw.seen.connects.lock()[0].clone();
        // The client's own identity is kept (no loopback substitution) and the proof verifies
        // against the gateway's nonce.
        assert_eq!(up["client"]["id"], "openclaw-tui");
        let params: shared_protocol::connect::ConnectParams = serde_json::from_value(up).unwrap();
        let proof = params.device.clone().unwrap();
        assert_eq!(proof.nonce, "stub-nonce-1");
        shared_protocol::device::verify_proof(&params, &proof, "stub-nonce-1", proof.signed_at)
            .unwrap();
        // The key was created 0600 and is reused: same device id on the next connection.
        let seed = std::fs::read_to_string(&key_file).unwrap();
        assert_eq!(seed.trim().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let _again = connected(&p.ws_url(), &["operator.read"]).await;
        let second = gw.seen.connects.lock()[1].clone();
        assert_eq!(second["device"]["id"], serde_json::json!(proof.id));
        p.stop().await;
    })
    .await
    .unwrap();
}
