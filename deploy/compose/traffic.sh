#!/bin/sh
# Demo traffic so the dashboards have something to show: one Omni-shaped trigger every few
# seconds on a handful of conversations, now and then a SLOW or FAIL500 message.
set -u
n=0
while true; do
  n=$((n + 1))
  chat="demo-chat-$((n % 5))"
  text="hello number $n"
  [ $((n % 17)) -eq 0 ] && text="FAIL500 please"
  [ $((n % 23)) -eq 0 ] && text="SLOW please"
  curl -s -o /dev/null -w "trigger $n: %{http_code} in %{time_total}s\n" \
    -H "authorization: Bearer ${OMNI_BRIDGE_INBOUND_TOKEN}" \
    -H "content-type: application/json" \
    --max-time 150 \
    -d "{\"event\":{},\"instance\":{\"id\":\"demo-instance\",\"channelType\":\"whatsapp-baileys\"},\"chat\":{\"id\":\"$chat\"},\"sender\":{\"id\":\"demo-user\",\"name\":\"Demo\"},\"content\":{\"text\":\"$text\"},\"traceId\":\"demo-$$-$n\"}" \
    http://omni-bridge:8090/omni/agents/main/trigger || true
  sleep "${TRAFFIC_INTERVAL_SECS:-3}"
done
