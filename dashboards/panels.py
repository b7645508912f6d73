"""The panels of both dashboards, as compact rows for `generate.py`.

Every expression here is checked by `tests/tests/dashboards.rs` against the `/metrics` output of
the real services: a metric or label that is renamed in the code fails the test, not the 3 a.m.
dashboard. `instance` and `job` are added by Prometheus, `$instance`/`$gateway` are dashboard
variables.
"""

# Label matcher shared by every bridge / proxy expression.
B = 'instance=~"$instance"'
BG = 'instance=~"$instance", gateway=~"$gateway"'
P = 'instance=~"$instance"'

# Trigger outcomes that mean "the user did not get the agent's answer" (see
# omni-bridge/src/service/outcome.rs: a failed run is labelled with its error kind,
# omni-bridge/src/error.rs). `invalid`/`unauthorized` are caller mistakes, not errors.
BRIDGE_FAILED = "timeout|ws_error|tls|auth|circuit_open|accumulation_cap|backpressure|rejected|agent_error|unavailable|rate_limited|closed|config|reset_failed"

CONNECTION_STATES = {"0": "closed", "1": "connecting", "2": "connected", "3": "backoff"}
BREAKER_STATES = {"0": "closed", "1": "open", "2": "half-open"}


def bridge_rows():
    return [
        [
            {"title": "Triggers / s by outcome", "unit": "reqps", "w": 12,
             "description": "Omni webhook calls answered, by outcome (omni_bridge_triggers_total).",
             "exprs": [(f'sum by (outcome) (rate(omni_bridge_triggers_total{{{B}}}[$__rate_interval]))',
                        "{{outcome}}")]},
            {"title": "Failed triggers (ratio)", "unit": "percentunit", "w": 6, "kind": "stat",
             "description": "Share of triggers that did not get the agent's answer (alert: "
                            "OmniBridgeErrorRatio).",
             "exprs": [(f'sum(rate(omni_bridge_triggers_total{{{B}, outcome=~"{BRIDGE_FAILED}"}}[5m]))'
                        f' / clamp_min(sum(rate(omni_bridge_triggers_total{{{B}}}[5m])), 1e-9)',
                        "failed")]},
            {"title": "Runs in flight (service)", "w": 6, "kind": "stat",
             "description": "Agent runs started by the HTTP service and not finished.",
             "exprs": [(f'sum(omni_bridge_runs_in_flight{{{B}}})', "in flight")]},
        ],
        [
            {"title": "Trigger latency (request to response)", "unit": "s",
             "description": "Quantiles of omni_bridge_trigger_duration_seconds, all outcomes.",
             "exprs": [
                 (f'histogram_quantile(0.5, sum by (le) (rate(omni_bridge_trigger_duration_seconds_bucket{{{B}}}[$__rate_interval])))', "p50"),
                 (f'histogram_quantile(0.9, sum by (le) (rate(omni_bridge_trigger_duration_seconds_bucket{{{B}}}[$__rate_interval])))', "p90"),
                 (f'histogram_quantile(0.99, sum by (le) (rate(omni_bridge_trigger_duration_seconds_bucket{{{B}}}[$__rate_interval])))', "p99"),
             ]},
            {"title": "Latency p90 by outcome", "unit": "s",
             "description": "Trigger: request to response at the HTTP service, by trigger outcome. "
                            "Run: run() to reply or error in the connection layer, by outcome "
                            "(completed, aborted or an error kind).",
             "exprs": [(f'histogram_quantile(0.9, sum by (le, outcome) (rate(omni_bridge_trigger_duration_seconds_bucket{{{B}}}[$__rate_interval])))',
                        "trigger {{outcome}}"),
                       (f'histogram_quantile(0.9, sum by (le, outcome) (rate(omni_bridge_gateway_run_duration_seconds_bucket{{{BG}}}[$__rate_interval])))',
                        "run {{outcome}}")]},
        ],
        [
            {"title": "Time to first delta", "unit": "s",
             "description": "From chat.send to the first text delta: what the agent/LLM costs "
                            "before anything streams.",
             "exprs": [
                 (f'histogram_quantile(0.5, sum by (le, gateway) (rate(omni_bridge_gateway_time_to_first_delta_seconds_bucket{{{BG}}}[$__rate_interval])))', "p50 {{gateway}}"),
                 (f'histogram_quantile(0.99, sum by (le, gateway) (rate(omni_bridge_gateway_time_to_first_delta_seconds_bucket{{{BG}}}[$__rate_interval])))', "p99 {{gateway}}"),
             ]},
            {"title": "Runs / s by outcome (connection layer)", "unit": "ops",
             "exprs": [(f'sum by (outcome) (rate(omni_bridge_gateway_run_duration_seconds_count{{{BG}}}[$__rate_interval]))',
                        "{{outcome}}")]},
        ],
        [
            {"title": "Connection state per gateway", "kind": "state-timeline", "w": 12,
             "mappings": CONNECTION_STATES,
             "description": "0 closed, 1 connecting, 2 connected, 3 backoff; one WebSocket per "
                            "gateway per replica (alert: OmniBridgeGatewayDown).",
             "exprs": [(f'max by (instance, gateway) (omni_bridge_gateway_connection_state{{{BG}}})',
                        "{{instance}} {{gateway}}")]},
            {"title": "Circuit breaker per gateway", "kind": "state-timeline", "w": 12,
             "mappings": BREAKER_STATES,
             "description": "0 closed, 1 open, 2 half-open (alert: OmniBridgeBreakerOpen).",
             "exprs": [(f'max by (instance, gateway) (omni_bridge_gateway_breaker_state{{{BG}}})',
                        "{{instance}} {{gateway}}")]},
        ],
        [
            {"title": "Reconnects", "unit": "short",
             "description": "Connection attempts after the first, per gateway.",
             "exprs": [(f'sum by (gateway) (increase(omni_bridge_gateway_reconnects_total{{{BG}}}[$__rate_interval]))',
                        "{{gateway}}")]},
            {"title": "Breaker transitions", "unit": "short",
             "exprs": [(f'sum by (gateway, to) (increase(omni_bridge_gateway_breaker_transitions_total{{{BG}}}[$__rate_interval]))',
                        "{{gateway}} -> {{to}}")]},
        ],
        [
            {"title": "In-flight and queued runs per gateway",
             "description": "Runs on the connection (bounded by max_in_flight, default 50) and "
                            "messages waiting behind their session's active run.",
             "exprs": [
                 (f'sum by (gateway) (omni_bridge_gateway_runs_in_flight{{{BG}}})', "in flight {{gateway}}"),
                 (f'sum by (gateway) (omni_bridge_gateway_queued_messages{{{BG}}})', "queued {{gateway}}"),
             ]},
            {"title": "Errors by kind", "unit": "short",
             "description": "Connection-layer errors returned to callers, by kind "
                            "(timeout, circuit_open, backpressure, agent_error, ...).",
             "exprs": [(f'sum by (kind) (increase(omni_bridge_gateway_errors_total{{{BG}}}[$__rate_interval]))',
                        "{{kind}}")]},
        ],
        [
            {"title": "Omni retries by how they were served", "unit": "short",
             "description": "Deliveries of a traceId already seen on this replica: joined the "
                            "run in flight or answered from the reply cache (never a second run).",
             "exprs": [(f'sum by (served) (increase(omni_bridge_retries_total{{{B}}}[$__rate_interval]))',
                        "{{served}}")]},
            {"title": "Session resets", "unit": "short",
             "exprs": [(f'sum by (result) (increase(omni_bridge_session_resets_total{{{B}}}[$__rate_interval]))',
                        "{{result}}")]},
            {"title": "Unmatched chat events dropped", "unit": "short",
             "description": "Chat events for runs this replica does not know (other replicas' "
                            "runs on the same gateway, or late events).",
             "exprs": [(f'sum by (gateway) (increase(omni_bridge_gateway_unmatched_events_dropped_total{{{BG}}}[$__rate_interval]))',
                        "{{gateway}}")]},
        ],
    ]


def proxy_rows():
    return [
        [
            {"title": "Open connections", "w": 6, "kind": "stat",
             "exprs": [(f'sum(gateway_proxy_connections_open{{{P}}})', "open")]},
            {"title": "Upstream reachable", "w": 6, "kind": "stat",
             "mappings": {"0": "down", "1": "up"},
             "description": "Last TCP probe of the gateway (alert: GatewayProxyUpstreamDown).",
             "exprs": [(f'min(gateway_proxy_upstream_up{{{P}}})', "upstream")]},
            {"title": "Connection attempts / s by outcome", "unit": "ops", "w": 12,
             "exprs": [(f'sum by (outcome) (rate(gateway_proxy_connections_total{{{P}}}[$__rate_interval]))',
                        "{{outcome}}")]},
        ],
        [
            {"title": "Frames / s by direction and verdict", "unit": "ops",
             "exprs": [(f'sum by (direction, verdict) (rate(gateway_proxy_frames_total{{{P}}}[$__rate_interval]))',
                        "{{direction}} {{verdict}}")]},
            {"title": "Denials / s by reason", "unit": "ops",
             "description": "Requests refused by policy: missing_scope, deny_list, "
                            "not_allow_listed, node_role, unknown_method (alert: "
                            "GatewayProxyDenialsSpike).",
             "exprs": [(f'sum by (reason) (rate(gateway_proxy_denials_total{{{P}}}[$__rate_interval]))',
                        "{{reason}}")]},
        ],
        [
            {"title": "Rate-limit hits / s by limit", "unit": "ops",
             "description": "Per replica: the effective limit is replicas x configured.",
             "exprs": [(f'sum by (limit) (rate(gateway_proxy_rate_limited_total{{{P}}}[$__rate_interval]))',
                        "{{limit}}")]},
            {"title": "Handshake latency (accept to hello-ok)", "unit": "s",
             "exprs": [
                 (f'histogram_quantile(0.5, sum by (le) (rate(gateway_proxy_handshake_seconds_bucket{{{P}}}[$__rate_interval])))', "p50"),
                 (f'histogram_quantile(0.99, sum by (le) (rate(gateway_proxy_handshake_seconds_bucket{{{P}}}[$__rate_interval])))', "p99"),
             ]},
        ],
        [
            {"title": "Upstream errors by kind", "unit": "short",
             "exprs": [(f'sum by (kind) (increase(gateway_proxy_upstream_errors_total{{{P}}}[$__rate_interval]))',
                        "{{kind}}")]},
            {"title": "Slow-consumer closes and TLS reloads", "unit": "short",
             "exprs": [
                 (f'sum(increase(gateway_proxy_slow_consumer_closes_total{{{P}}}[$__rate_interval]))', "slow consumer closes"),
                 (f'sum by (result) (increase(gateway_proxy_tls_reloads_total{{{P}}}[$__rate_interval]))', "tls reload {{result}}"),
             ]},
        ],
    ]


def boards(dashboard):
    bridge = dashboard(
        "omni-bridge", "omni-bridge",
        "Omni webhook provider: triggers, runs, the pooled gateway connections, breaker. "
        "Runbook: docs/runbook.md",
        bridge_rows(),
        extra_vars=[("instance", "label_values(omni_bridge_triggers_total, instance)"),
                    ("gateway", "label_values(omni_bridge_gateway_connection_state, gateway)")],
    )
    proxy = dashboard(
        "gateway-proxy", "gateway-proxy",
        "The door in front of the OpenClaw gateway: connections, frames, denials, rate limits, "
        "handshakes, upstream. Runbook: docs/runbook.md",
        proxy_rows(),
        extra_vars=[("instance", "label_values(gateway_proxy_connections_open, instance)")],
    )
    return {"omni-bridge.json": bridge, "gateway-proxy.json": proxy}
