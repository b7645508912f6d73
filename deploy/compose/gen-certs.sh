#!/bin/sh
# One-shot step of the compose demo (service `certs`): a self-signed certificate for the proxy
# and the bridge config pinned to it. Idempotent: an existing certificate is kept, so restarts
# do not break the pin. Runs in the gateway-proxy `tools` image as uid 65532.
set -eu
out=${OUT_DIR:-/generated}
config=${CONFIG_DIR:-/config}
if [ ! -s "$out/cert.pem" ] || [ ! -s "$out/key.pem" ]; then
  gateway-proxy self-signed --host gateway-proxy --host localhost --out-dir "$out"
fi
pin=$(gateway-proxy fingerprint --cert "$out/cert.pem" | grep '^sha256/spki:')
sed "s|@PROXY_PIN@|$pin|" "$config/bridge.toml.in" > "$out/bridge.toml.tmp"
mv "$out/bridge.toml.tmp" "$out/bridge.toml"
echo "proxy certificate pin: $pin"
