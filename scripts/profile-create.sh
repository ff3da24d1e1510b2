#!/usr/bin/env bash
# Profiles `switchboard up` while bench-api creates sessions (two rounds of 200 concurrent single-item
# creates, then 10,000 in requests of 100; its describeSessions phases run for 0 s), and prints where the
# broker's CPU time goes: by the Switchboard crate innermost on each sampled stack, and by layer (HTTP/2 and
# gRPC transport, TLS, protobuf, JSON, the tokio runtime ...). BENCHMARKS.md ("Where a create's time goes")
# quotes its output. Needs `perf` (linux-perf) and python3; the release build carries debug info, so
# `--call-graph dwarf` resolves the stacks.
#
#   cargo build --release --workspace --bins
#   scripts/profile-create.sh [perf.data path]
set -euo pipefail
OUT=${1:-$(mktemp -d)/create.perf}
BIN=target/release
[ -x "$BIN/bench-api" ] || { echo "build first: cargo build --release --workspace --bins" >&2; exit 1; }
LOG=$(mktemp)
trap 'rm -f "$LOG" "$LOG.script"' EXIT

"$BIN/bench-api" --concurrent 200 --bulk 10000 --seconds 0 >"$LOG" 2>&1 &
BENCH=$!
PID=
for _ in $(seq 400); do
  PID=$(pgrep -f "$BIN/switchboard up --data-dir" | head -1 || true)
  [ -n "$PID" ] && break
  sleep 0.05
done
[ -n "$PID" ] || { echo "switchboard up did not start"; cat "$LOG"; exit 1; }
# Ends by itself when bench-api stops `switchboard up` (before its two-replica phase).
perf record -F 499 --call-graph dwarf,16384 -o "$OUT" -p "$PID" >/dev/null 2>&1
wait "$BENCH"
grep -E "create→READY|bulk" "$LOG"
perf script -i "$OUT" -F comm,tid,ip,sym 2>/dev/null >"$LOG.script"

python3 - "$LOG.script" <<'PY'
import collections, re, sys

samples, current = [], []
for line in open(sys.argv[1]):
    if line.strip():
        current.append(line.strip())
    elif current:
        samples.append(current[1:])
        current = []
if current:
    samples.append(current[1:])

CRATES = [("switchboard_gateway", "gateway"), ("switchboard_placement", "placement"),
          ("switchboard_session_store", "session-store"), ("switchboard_store::", "store backend"),
          ("switchboard_auth", "auth"), ("switchboard_agent", "simulated hosts (agent)")]
LAYERS = [(r"rustls|ring::|aws_lc", "TLS"),
          (r"\bh2::|hyper::|hyper_util|tonic::transport|tonic::codec|tower::buffer", "HTTP/2 + gRPC transport"),
          (r"prost::|ProstCodec|encode_raw|merge_field", "protobuf"), (r"serde_json|serde::", "JSON"),
          (r"curve25519|ed25519|jsonwebtoken", "token verification"),
          (r"tokio::runtime|tokio::time|tokio::sync|futex", "tokio runtime"),
          (r"entry_SYSCALL|do_syscall|tcp_|sock_|__x64_sys", "kernel (syscalls)")]

def owner(frames):
    for frame in frames:
        for key, name in CRATES:
            if key in frame:
                return name
    if any("switchboard_common" in frame for frame in frames):
        return "gRPC server glue (common)"
    return "connections (no Switchboard frame)"

def layer(frames):
    for frame in frames[:12]:
        for pattern, name in LAYERS:
            if re.search(pattern, frame):
                return name
    return "other (allocation, copying, application code)"

total = len(samples)
print(f"\n{total} samples at 499 Hz = {total / 499:.1f} s of CPU")
for title, classify in [("by the innermost Switchboard crate on the stack", owner),
                        ("by layer (the first recognised frame from the leaf)", layer)]:
    print(f"\n{title}:")
    for name, count in collections.Counter(classify(s) for s in samples).most_common():
        print(f"  {100 * count / total:5.1f} %  {name}")
PY
echo "perf data: $OUT (perf report -i $OUT --children --sort sym)"
