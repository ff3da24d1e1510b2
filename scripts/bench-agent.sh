#!/usr/bin/env bash
# Measures switchboard-agent against a local `switchboard up`: idle RSS and CPU per update of one agent
# (simulated driver, real host telemetry, 1 s updates), then how many simulated agents one process holds
# (agent/examples/sim_fleet.rs). Results go to BENCHMARKS.md by hand.
#
#   cargo build --release -p switchboard --bin switchboard
#   cargo build --release -p switchboard-agent --bin switchboard-agent --example sim_fleet
#   scripts/bench-agent.sh [target-dir] [updates] [fleet sizes...]
set -euo pipefail
TARGET=${1:-target}
UPDATES=${2:-120}
shift 2 || true
FLEETS=("${@:-1000 3000}")
BIN=$TARGET/release
[ -x "$BIN/switchboard" ] || BIN_UP=$TARGET/debug/switchboard
BIN_UP=${BIN_UP:-$BIN/switchboard}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

"$BIN_UP" up --data-dir "$WORK/data" --sim-hosts 0 --update-interval 1 \
  --listen 127.0.0.1:18443 --agent-listen 127.0.0.1:18445 >"$WORK/up.log" 2>&1 &
for _ in $(seq 100); do [ -f "$WORK/data/admin.json" ] && break; sleep 0.2; done
sleep 2
# Agents enrol (the broker requires agent credentials): one software statement for all of them.
"$BIN_UP" generate-software-statement --data-dir "$WORK/data" | sed -n 's/^software-statement: //p' >"$WORK/statement"

cat >"$WORK/agent.conf" <<CONF
version = '0.1'
[agent]
broker_host = 'localhost'
broker_port = 18445
ca_file = '$WORK/data/tls/ca.pem'
driver = 'simulated'
hostname = 'bench-host'
software_statement_path = '$WORK/statement'
credentials_path = '$WORK/bench-host.credentials.toml'
[log]
level = 'warn'
CONF
"$BIN/switchboard-agent" --config "$WORK/agent.conf" >"$WORK/agent.log" 2>&1 &
AGENT=$!
sleep 10
ticks() { awk '{print $14 + $15}' "/proc/$AGENT/stat"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$AGENT/status"; }
T0=$(ticks)
sleep "$UPDATES"
T1=$(ticks)
HZ=$(getconf CLK_TCK)
echo "agent: idle RSS $(rss) kB; CPU $(( (T1 - T0) * 1000 / HZ )) ms over $UPDATES updates =" \
  "$(awk -v d=$((T1 - T0)) -v hz="$HZ" -v n="$UPDATES" 'BEGIN { printf "%.3f", d * 1000 / hz / n }') ms per update"
kill "$AGENT"
kill %1; wait %1 2>/dev/null || true

# The fleet: the broker's default 10 s interval (a 1 s interval would measure the broker, not the agents).
"$BIN_UP" up --data-dir "$WORK/data" --sim-hosts 0 --update-interval 10 \
  --listen 127.0.0.1:18443 --agent-listen 127.0.0.1:18445 >"$WORK/up2.log" 2>&1 &
for _ in $(seq 100); do [ -f "$WORK/data/admin.json" ] && break; sleep 0.2; done
sleep 1
for hosts in ${FLEETS[*]}; do
  echo "sim_fleet: $hosts hosts"
  "$BIN/examples/sim_fleet" --broker https://localhost:18445 --ca "$WORK/data/tls/ca.pem" \
    --hosts "$hosts" --sessions 5 --seconds 60 \
    --software-statement "$WORK/statement" --credentials-dir "$WORK/fleet-credentials" | tail -3
done
