#!/usr/bin/env bash
# Issue 12's cluster number: three `phx-server serve --fixture` nodes (release) on one Redis of
# our own (a free port), N subscribers on each node (near its 20,000-descriptor limit by
# default), one loadgen process per node; the loadgen on node 1 publishes ROUNDS shouts, the
# other two only listen. Per round, time to the LAST delivery on all three nodes; server CPU
# per delivery over the three servers; Redis PUBLISHes per broadcast (INFO commandstats).
# Then the same N subscribers on a single node, for the single-node figure in the same run.
#
#   benches/cluster_fanout.sh                 # N=19000 per node, 20 rounds, 1 s apart
#   N=5000 ROUNDS=10 benches/cluster_fanout.sh
#
# Writes benches/results/cluster/<stamp>.jsonl (the loadgens' JSON lines plus one summary
# line per phase) and prints the summary table. Only 127.0.0.0/8; everything started here is
# stopped on exit.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
N="${N:-19000}"
ROUNDS="${ROUNDS:-20}"
INTERVAL_MS="${INTERVAL_MS:-1000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target-bench}"
BIN="$CARGO_TARGET_DIR/release"
OUT="$ROOT/benches/results/cluster"
mkdir -p "$OUT"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
RAW="$OUT/$STAMP.jsonl"
LOG="$OUT/run-$STAMP.log"
TMP="$(mktemp -d)"
: >"$RAW"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release --locked --bin phx-server -p loadgen >>"$LOG" 2>&1
free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
publishes() { redis-cli -p "$REDIS_PORT" INFO commandstats | sed -n 's/^cmdstat_publish:calls=\([0-9]*\).*/\1/p' | tr -d '\r' | grep . || echo 0; }

REDIS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >>"$LOG" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

start_node() { # name -> sets NODE_PORT, NODE_PID
  NODE_PORT="$(free_port)"
  RUST_LOG=warn HOST=127.0.0.1 PORT="$NODE_PORT" PUBSUB_ADAPTER=redis REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
    NODE_NAME="$1" PUBSUB_NAME=Bench.PubSub "$BIN/phx-server" serve --fixture >>"$LOG" 2>&1 &
  NODE_PID=$!
  PIDS+=("$NODE_PID")
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$NODE_PORT/readyz" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "node $1 not ready" >&2; exit 1
}

TOPIC="room:cluster-fanout-$STAMP"
declare -a PORTS SPIDS
for i in 1 2 3; do start_node "bench-$i"; PORTS[$i]=$NODE_PORT; SPIDS[$i]=$NODE_PID; done
echo "3 nodes up (redis :$REDIS_PORT); joining $N subscribers on each" | tee -a "$LOG"
LISTENERS=()
for i in 2 3; do
  "$BIN/loadgen" --port "${PORTS[$i]}" --server-pid "${SPIDS[$i]}" --label "cluster-listen-node$i" \
    fanout --subscribers "$N" --rounds "$ROUNDS" --topic "$TOPIC" --listen-only \
    --listen-secs $((ROUNDS * INTERVAL_MS / 1000 + 120)) --ready-file "$TMP/ready-$i" >>"$RAW" 2>>"$LOG" &
  LISTENERS+=($!)
done
for _ in $(seq 1 1200); do [ -f "$TMP/ready-2" ] && [ -f "$TMP/ready-3" ] && break; sleep 0.1; done
[ -f "$TMP/ready-2" ] && [ -f "$TMP/ready-3" ] || { echo "listeners did not join" >&2; exit 1; }
P0="$(publishes)"
"$BIN/loadgen" --port "${PORTS[1]}" --server-pid "${SPIDS[1]}" --label "cluster-publish-node1" \
  fanout --subscribers "$N" --rounds "$ROUNDS" --interval-ms "$INTERVAL_MS" --topic "$TOPIC" --drain-secs 10 >>"$RAW" 2>>"$LOG"
for p in "${LISTENERS[@]}"; do wait "$p" || true; done
P1="$(publishes)"
python3 - "$RAW" "$ROUNDS" "$((P1 - P0))" cluster >>"$RAW" <<'PY'
import json, sys
raw, rounds, publishes, label = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rows = [json.loads(l) for l in open(raw) if l.startswith("{")]
rows = [r for r in rows if r.get("result") in ("fanout", "fanout-listen") and str(r.get("label", "")).startswith(label)]
last = {}
for r in rows:
    for pr in r["per_round"]:
        if pr["last_ms"] is not None:
            last[pr["seq"]] = max(last.get(pr["seq"], 0), pr["last_ms"])
vals = sorted(last.values())
q = lambda p: vals[min(len(vals) - 1, int(p * len(vals)))] if vals else None
delivered = sum(r["delivered"] for r in rows)
expected = sum(r["expected"] for r in rows)
cpu = sum((r["publish_phase"].get("server_cpu_s") or 0) for r in rows)
print(json.dumps({"result": "cluster-fanout-summary", "label": label, "nodes": len(rows),
  "subscribers": sum(r["subscribers"] for r in rows), "rounds": rounds, "delivered": delivered, "expected": expected,
  "time_to_last_ms": {"p50": q(0.5), "p99": q(0.99), "max": vals[-1] if vals else None},
  "server_cpu_per_delivery_us": round(cpu / max(delivered, 1) * 1e6, 3),
  "redis_publishes_per_broadcast": round(publishes / rounds, 3)}))
PY
for p in "${SPIDS[@]}"; do kill "$p" 2>/dev/null || true; done
sleep 2

# The single-node figure, same run: N subscribers on one node without a cluster.
PORT="$(free_port)"
RUST_LOG=warn HOST=127.0.0.1 PORT="$PORT" "$BIN/phx-server" serve --fixture >>"$LOG" 2>&1 &
SINGLE=$!
PIDS+=("$SINGLE")
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
"$BIN/loadgen" --port "$PORT" --server-pid "$SINGLE" --label "single-node" \
  fanout --subscribers "$N" --rounds "$ROUNDS" --interval-ms "$INTERVAL_MS" --drain-secs 10 >>"$RAW" 2>>"$LOG"
python3 - "$RAW" "$ROUNDS" 0 single-node >>"$RAW" <<'PY'
import json, sys
raw, rounds = sys.argv[1], int(sys.argv[2])
rows = [json.loads(l) for l in open(raw) if l.startswith("{")]
r = [x for x in rows if x.get("result") == "fanout" and x.get("label") == "single-node"][-1]
print(json.dumps({"result": "cluster-fanout-summary", "label": "single-node", "nodes": 1, "subscribers": r["subscribers"],
  "rounds": rounds, "delivered": r["delivered"], "expected": r["expected"], "time_to_last_ms": r["time_to_last_ms"],
  "server_cpu_per_delivery_us": r["server_cpu_per_delivery_us"], "redis_publishes_per_broadcast": 0}))
PY
grep '"cluster-fanout-summary"' "$RAW"
echo "raw: $RAW  log: $LOG"
