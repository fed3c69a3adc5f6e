#!/usr/bin/env bash
# Mesh vs embedded store: put and get of one file through the CLI, in one run.
#
#   cargo build --release && benches/mesh_loopback.sh [SIZE_MIB]     (default 1024)
#
# Starts `datamesh bootstrap` and six `datamesh service` nodes on 127.0.0.1 (each in
# its own repository under a scratch dir in /var/tmp), writes SIZE_MIB of random data
# (nothing to deduplicate), then times, one after the other:
#   embedded put / get  — a repository with no peers (the local shard store)
#   mesh put / get      — a second repository joined with --bootstrap
# For each step it reports wall time, throughput, the CPU seconds of every datamesh
# process involved (the client from wait4, the seven nodes from /proc/PID/stat) per
# GiB, and for the mesh steps the bytes that crossed the loopback interface
# (/proc/net/dev `lo`, so TCP/IP, Noise and Yamux framing and DHT chatter included),
# as a multiple of the file size. All processes share this machine's cores, so the
# mesh figures include the storage nodes' hashing and fsyncs.
#
# Before each step it syncs (so the previous step's writeback is not billed to it) and
# faults in and frees PRETOUCH_MB of memory: on a VM whose host takes freed guest pages
# back (virtio-balloon free page reporting) fresh page-cache pages otherwise fault in at
# ~3 s/GiB and that, not datamesh, dominates whichever step allocates first.
#
# Env: DATAMESH_BIN (default target/release/datamesh), KEEP=1 keeps the scratch dir,
# PARALLEL_CHUNKS=N sets storage.parallel_chunks of both client repositories,
# PRETOUCH_MB (default 6144; 0 = off).
set -euo pipefail

BIN=${DATAMESH_BIN:-target/release/datamesh}
SIZE_MIB=${1:-1024}
[[ -x $BIN ]] || { echo "no $BIN: run cargo build --release first" >&2; exit 2; }
BIN=$(realpath "$BIN")
W=$(mktemp -d /var/tmp/dm-meshbench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ ${KEEP:-0} == 1 ]] || rm -rf "$W"
}
trap cleanup EXIT HUP INT TERM
export DATAMESH_PASSWORD=meshbench RUST_LOG=error
TICK=$(getconf CLK_TCK)

dm() { "$BIN" --repo "$@"; }
# A cheap KDF: unlocking is not what is measured.
init() { dm "$1" init -q --kdf-memory-mib 8 --kdf-iterations 1; }

# start NAME ARGS... : runs a node in the background, waits for its ready line,
# sets ADDR to its first listen address.
start() {
    local name=$1; shift
    init "$W/$name"
    "$BIN" --repo "$W/$name" "$@" >"$W/$name.out" 2>"$W/$name.err" &
    PIDS+=($!)
    for _ in $(seq 300); do
        if grep -q '^ready ' "$W/$name.out" 2>/dev/null; then
            ADDR=$(sed -n 's/^ready //p' "$W/$name.out" | head -1 |
                python3 -c 'import json,sys; print(json.load(sys.stdin)["addrs"][0])')
            return
        fi
        sleep 0.1
    done
    echo "node $name did not start:" >&2; cat "$W/$name.err" >&2; exit 1
}

nodes_cpu() { # CPU seconds of the node processes so far
    local t=0
    for p in "${PIDS[@]}"; do
        read -r -a f <"/proc/$p/stat"
        t=$((t + f[13] + f[14]))
    done
    echo "scale=2; $t / $TICK" | bc
}
lo_bytes() { awk '/^ *lo:/ {print $2}' /proc/net/dev; }

# step LABEL MESH(0|1) CMD... : times one client command, prints one row.
step() {
    local label=$1 mesh=$2; shift 2
    local cpu0 lo0 t0 t1 out
    sync
    if (( ${PRETOUCH_MB:-6144} > 0 )); then
        dd if=/dev/zero of=/dev/shm/dm-meshbench-pretouch bs=1M count="${PRETOUCH_MB:-6144}" status=none
        rm -f /dev/shm/dm-meshbench-pretouch
    fi
    cpu0=$(nodes_cpu); lo0=$(lo_bytes); t0=$(date +%s.%N)
    /usr/bin/time -o "$W/step.time" -f '%U %S' "$@" >/dev/null 2>"$W/step.err" || {
        echo "$label failed:" >&2; cat "$W/step.err" >&2; exit 1; }
    out=$(cat "$W/step.time")
    t1=$(date +%s.%N)
    local wall client_cpu nodes lo
    wall=$(echo "$t1 - $t0" | bc)
    client_cpu=$(echo "$out" | tail -1 | awk '{print $1 + $2}')
    nodes=$(echo "$(nodes_cpu) - $cpu0" | bc)
    lo=$(( $(lo_bytes) - lo0 ))
    local gib mibs cpu_gib wire
    gib=$(echo "scale=6; $SIZE_MIB / 1024" | bc)
    mibs=$(echo "scale=1; $SIZE_MIB / $wall" | bc)
    cpu_gib=$(echo "scale=2; ($client_cpu + $nodes) / $gib" | bc)
    if [[ $mesh == 1 ]]; then
        wire=$(echo "scale=3; $lo / ($SIZE_MIB * 1048576)" | bc)
    else
        wire="-"
    fi
    printf '%-14s %8.2f s %9s MiB/s %9s CPU-s/GiB (client %s s, nodes %s s) %8s x file\n' \
        "$label" "$wall" "$mibs" "$cpu_gib" "$client_cpu" "$nodes" "$wire"
}

start boot bootstrap --listen /ip4/127.0.0.1/tcp/0
BOOT=$ADDR
for i in 1 2 3 4 5 6; do
    start "s$i" service --listen /ip4/127.0.0.1/tcp/0 --bootstrap "$BOOT"
done
head -c "$((SIZE_MIB << 20))" /dev/urandom >"$W/data.bin"
init "$W/embedded"
init "$W/client"
if [[ -n ${PARALLEL_CHUNKS:-} ]]; then
    sed -i "s/^parallel_chunks = .*/parallel_chunks = $PARALLEL_CHUNKS/" "$W/client/config.toml" "$W/embedded/config.toml"
fi

echo "datamesh $("$BIN" --version | awk '{print $2}'), $SIZE_MIB MiB random, $(nproc) cores, $(date -u +%F)"
echo "step           wall          throughput   CPU (all processes)  loopback bytes"
step "embedded put" 0 "$BIN" --repo "$W/embedded" -q put "$W/data.bin" --name data.bin
step "embedded get" 0 "$BIN" --repo "$W/embedded" -q get data.bin "$W/out-embedded.bin"
step "mesh put" 1 "$BIN" --repo "$W/client" -q --bootstrap "$BOOT" put "$W/data.bin" --name data.bin
step "mesh get" 1 "$BIN" --repo "$W/client" -q --bootstrap "$BOOT" get data.bin "$W/out-mesh.bin"
cmp "$W/data.bin" "$W/out-embedded.bin"
cmp "$W/data.bin" "$W/out-mesh.bin"
echo "both gets returned the exact bytes"
dm "$W/client" -q --bootstrap "$BOOT" distribution --file-key data.bin --json |
    python3 -c '
import json, sys
c = json.load(sys.stdin)
holders = sorted(set(x["distinct_holders"] for x in c))
print(len(c), "chunks; distinct holders per chunk:", holders, "; all at full strength:", all(x["full_strength"] for x in c))'
