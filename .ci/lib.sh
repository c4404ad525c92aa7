# Shared by the CI scripts that run the real binaries: the built bankconnect, and the
# simulator started in the background with its base URL read off its first line.
TARGET="${CARGO_TARGET_DIR:-target}"
BIN="$TARGET/debug/bankconnect"

# Starts `bankconnect sim` writing to $WORK/sim.out; sets SIM_PID and BASE.
start_sim() {
    "$BIN" sim --addr 127.0.0.1:0 >"$WORK/sim.out" 2>/dev/null &
    SIM_PID=$!
    for _ in $(seq 50); do [ -s "$WORK/sim.out" ] && break; sleep 0.1; done
    BASE=$(head -1 "$WORK/sim.out" | sed 's/^listening on //')
}
