# Shared by bench/compare.sh and bench/knob_sweep.sh, which source it after defining say().
# Sets load_avg, server_pid and an EXIT trap that stops the server.

# The load average before the run; a warning when other work would distort the timings.
load_avg=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load_avg" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
  say "WARNING: load average $load_avg on $(nproc) CPUs: other work will distort these timings"
fi

# The server being measured (started in the background by the caller), stopped with SIGTERM.
server_pid=""
stop_server() {
  [[ -n $server_pid ]] || return 0
  kill -TERM "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}
trap stop_server EXIT

peak_rss_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# The first lines of machine.txt: what ran, where, and how busy the machine was before.
machine_header() {
  echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); $(date -u +%FT%TZ)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs; load average before: $load_avg"
}
