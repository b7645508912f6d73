#!/usr/bin/env bash
# Resident memory of omni-bridge and gateway-proxy, idle and under a bounded load, measured on the
# real release binaries chained as in the compose stack: mock-gateway <- gateway-proxy (wss,
# self-signed, pinned) <- omni-bridge. Loopback only; the load is bounded in count.
#
#   cargo build --release -p omni-bridge -p gateway-proxy -p mock-gateway
#   deploy/measure-memory.sh [BIN_DIR (default target/release)] [REQUESTS (2000)] [CONCURRENCY (64)]
#
# Prints RSS (ps -o rss) idle, during the load (max of samples) and the kernel's peak (VmHWM).
# The proxy's rate limits are disabled for the run (the load would otherwise measure refusals).
set -euo pipefail
BIN=${1:-target/release}
REQUESTS=${2:-2000}
CONCURRENCY=${3:-64}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

GW_TOKEN=measure-gateway-token
CRED=gwp_demo-bridge-credential-NOT-FOR-PRODUCTION
INBOUND=measure-inbound-token
PATH="$BIN:$PATH" OUT_DIR="$WORK" CONFIG_DIR="$HERE/compose" sh "$HERE/compose/gen-certs.sh" >/dev/null
sed -e 's|mock-gateway:18789|127.0.0.1:38789|' -e "s|/certs|$WORK|g" \
    -e 's|0.0.0.0:8443|127.0.0.1:38443|' -e 's|0.0.0.0:9090|127.0.0.1:39090|' \
    -e 's|^\(handshakes_per_minute_per_ip\|requests_per_second_per_credential\|chat_send_per_minute_per_credential\|chat_send_per_minute_per_session\) = .*|\1 = 0|' \
    "$HERE/compose/proxy.toml" > "$WORK/proxy.toml"
sed -e 's|gateway-proxy:8443|localhost:38443|' -e 's|0.0.0.0:8090|127.0.0.1:38090|' \
    "$WORK/bridge.toml" > "$WORK/bridge-local.toml"

MOCK_GATEWAY_TOKEN=$GW_TOKEN "$BIN/mock-gateway" --listen 127.0.0.1:38789 >"$WORK/mock.log" 2>&1 &
PIDS+=($!)
GATEWAY_PROXY_UPSTREAM_TOKEN=$GW_TOKEN "$BIN/gateway-proxy" serve --config "$WORK/proxy.toml" >"$WORK/proxy.log" 2>&1 &
PROXY=$!; PIDS+=($PROXY)
OMNI_BRIDGE_INBOUND_TOKEN=$INBOUND OMNI_BRIDGE_GATEWAY_TOKEN=$CRED RUST_LOG=warn \
  "$BIN/omni-bridge" serve --config "$WORK/bridge-local.toml" >"$WORK/bridge.log" 2>&1 &
BRIDGE=$!; PIDS+=($BRIDGE)

for _ in $(seq 1 100); do
  curl -sf -o /dev/null http://127.0.0.1:38090/ready && break
  sleep 0.1
done
curl -sf -o /dev/null http://127.0.0.1:38090/ready || { echo "bridge never became ready" >&2; cat "$WORK"/*.log >&2; exit 1; }

rss() { ps -o rss= -p "$1" | tr -d ' '; }
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
idle_b=$(rss $BRIDGE); idle_p=$(rss $PROXY)

max_b=0; max_p=0
sampler() {
  while kill -0 "$1" 2>/dev/null; do
    echo "$(rss $BRIDGE) $(rss $PROXY)"
    sleep 0.2
  done
}
start=$(date +%s.%N)
seq 1 "$REQUESTS" | xargs -P "$CONCURRENCY" -I@@ curl -s -o /dev/null -w '%{http_code}\n' \
  --max-time 60 -H "authorization: Bearer $INBOUND" -H "content-type: application/json" \
  -d "{\"event\":{},\"instance\":{\"id\":\"mem\",\"channelType\":\"whatsapp-baileys\"},\"chat\":{\"id\":\"chat-@@\"},\"sender\":{\"id\":\"u\",\"name\":\"Load\"},\"content\":{\"text\":\"message @@\"},\"traceId\":\"mem-$$-@@\"}" \
  http://127.0.0.1:38090/omni/agents/main/trigger > "$WORK/codes" &
LOAD=$!
sampler $LOAD > "$WORK/samples" &
SAMPLER=$!
wait $LOAD
wait $SAMPLER
end=$(date +%s.%N)
while read -r b p; do
  [ -n "$b" ] && [ "$b" -gt "$max_b" ] && max_b=$b
  [ -n "$p" ] && [ "$p" -gt "$max_p" ] && max_p=$p
done < "$WORK/samples"
ok=$(grep -c "^200$" "$WORK/codes" || true)
echo "status codes: $(sort "$WORK/codes" | uniq -c | tr -s " " | tr "\n" ";")"
after_b=$(rss $BRIDGE); after_p=$(rss $PROXY)

printf 'load: %s triggers, %s concurrent, %s x 200, %.1f s\n\n' "$REQUESTS" "$CONCURRENCY" "$ok" "$(echo "$end - $start" | bc)"
printf '| process | idle RSS | max RSS during load (ps, 0.2 s samples) | peak RSS (VmHWM) | RSS after load |\n|---|---|---|---|---|\n'
printf '| omni-bridge | %s KiB | %s KiB | %s KiB | %s KiB |\n' "$idle_b" "$max_b" "$(hwm $BRIDGE)" "$after_b"
printf '| gateway-proxy | %s KiB | %s KiB | %s KiB | %s KiB |\n' "$idle_p" "$max_p" "$(hwm $PROXY)" "$after_p"
