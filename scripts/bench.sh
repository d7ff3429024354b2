#!/usr/bin/env bash
# Side-by-side benchmark of rturn and coturn (Debian's turnserver) on loopback.
# Writes the table to stdout and to BENCHMARKS.md (unless --smoke).
#
#   scripts/bench.sh           full run (about 10 minutes on 2 cores)
#   scripts/bench.sh --smoke   tiny run that only proves the harness works (CI)
#
# Both servers get the same realm, credentials, port range, loopback peers allowed, logging
# off and the same number of data-path threads. Rounds alternate A B A B ...; medians are
# reported. All traffic stays on 127.0.0.1; every run is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0
[ "${1:-}" = "--smoke" ] && smoke=1

need_packages=()
command -v turnutils_uclient >/dev/null 2>&1 || need_packages+=(coturn)
command -v turnserver >/dev/null 2>&1 || need_packages+=(coturn)
command -v redis-server >/dev/null 2>&1 || need_packages+=(redis-server)
if ((${#need_packages[@]})); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        $(printf '%s\n' "${need_packages[@]}" | sort -u) >/dev/null
fi
cargo build --release --locked --quiet --bin rturn --bin rturn-bench
# Both servers and the generators inherit this: 10 000 held allocations and 10 000 signaling
# clients need as many open files on each side, and rturn splits its descriptors at start
# between relay sockets (one per port of the range) and connections, HTTP taking at most
# three quarters of those (src/server/descriptors.rs): raise the hard limit too where allowed.
ulimit -Hn 1048576 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

threads=2
if [ "$smoke" -eq 1 ]; then
    rounds=1; clients=5; messages=20; interval=5; alloc_secs=1; hold=200; bind_secs=1
    many_flows=2; max_rate_args=(--start-rate 1000 --max-probes 2 --probe 300ms --measure 300ms)
    same_rate_secs=1
    signal_clients=20; signal_rooms=2; signal_secs=1
else
    rounds=3; clients=50; messages=1000; interval=5; alloc_secs=5; hold=10000; bind_secs=5
    many_flows=1000; max_rate_args=(--start-rate 20000 --max-probes 12 --probe 1s --measure 3s)
    same_rate_secs=3
    signal_clients=10000; signal_rooms=1000; signal_secs=10
fi

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# N distinct ports free for both TCP and UDP right now (the servers' held relay sockets
# take UDP ports a TCP-only check would hand out).
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
held, ports = [], []
while len(ports) < int(sys.argv[1]):
    t = socket.socket()
    t.bind(("127.0.0.1", 0))
    port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port))
    except OSError:
        t.close()
        continue
    held += [t, u]
    ports.append(port)
print(" ".join(map(str, ports)))
PY
}

rturn_port=$(free_port)
coturn_port=$(free_port)
peer_port=$(free_port)
http_port=$(free_port)

cat >"$work/rturn.toml" <<EOF
realm = "bench"
[server]
workers = $threads
# Every load generator sends from 127.0.0.1: the per-source limits would measure themselves.
unauthenticated-rate = 0
max-tcp-connections-per-ip = 0
max-http-connections-per-ip = 0
[listen]
udp = ["127.0.0.1:$rturn_port"]
tcp = ["127.0.0.1:$rturn_port"]
http = "127.0.0.1:$http_port"
[relay]
relay-ip = "127.0.0.1"
allow-loopback-peers = true
min-port = 20000
max-port = 39999
# Every held allocation comes from 127.0.0.1 too.
max-allocations-per-ip = 0
[auth.users]
bench = "bench"
[signal]
# The defaults would refuse 10 000 clients (10 000 connections, 100 per IP address, 60
# joins a minute per address).
max-connections = $((signal_clients + 1000))
max-connections-per-ip = $((signal_clients + 1000))
joins-per-minute-per-ip = $((signal_clients + 1000))
max-peers-per-room = 64
messages-per-second = 1000
EOF

# start_rturn [CONFIG]: the shared config unless another is given.
start_rturn() {
    target/release/rturn -q -c "${1:-$work/rturn.toml}" 2>"$work/rturn.log" &
    rturn_pid=$!
    pids+=("$rturn_pid")
}
start_coturn() {
    turnserver -n --listening-ip=127.0.0.1 --listening-port="$coturn_port" \
        --relay-ip=127.0.0.1 --min-port=40000 --max-port=59999 --realm=bench \
        --user=bench:bench --lt-cred-mech --allow-loopback-peers --no-cli --no-tls --no-dtls \
        --no-stdout-log --log-file=/dev/null --relay-threads="$threads" \
        --pidfile="$work/turnserver.pid" --no-rfc5780 --no-stun-backward-compatibility \
        >/dev/null 2>&1 &
    coturn_pid=$!
    pids+=("$coturn_pid")
}
wait_udp() { # port: until a STUN binding is answered
    for _ in $(seq 50); do
        if timeout 2 turnutils_stunclient -p "$1" 127.0.0.1 >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "server on port $1 did not come up" >&2
    exit 1
}

wait_tcp() { # port: until it accepts a connection
    for _ in $(seq 50); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "server on TCP port $1 did not come up" >&2
    exit 1
}

# CPU ticks (user + system, all threads) of a process.
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
# CPU microseconds per unit: ticks used, units done.
cpu_per() { awk -v t="$1" -v us="$tick_us" -v n="${2:-0}" 'BEGIN { if (n > 0) printf "%.2f\n", t * us / n; else print "n/a" }'; }
tick_us=$((1000000 / $(getconf CLK_TCK)))
bench_json() { target/release/rturn-bench "$@" | tail -1; }
field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"; }
text_field() { sed -n "s/.*\"$1\":\"\([a-z]*\)\".*/\1/p"; }
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "n/a"; else print a[int((NR + 1) / 2)] }'; }

start_rturn
start_coturn
wait_udp "$rturn_port"
wait_udp "$coturn_port"
turnutils_peer -L 127.0.0.1 -p "$peer_port" >/dev/null 2>&1 &
pids+=("$!")

declare -A result
# ---- 4. memory per allocation (one permission and one channel each), on fresh servers ----
for server in rturn coturn; do
    port_var=${server}_port
    pid_var=${server}_pid
    base=$(rss_kib "${!pid_var}")
    fifo="$work/hold_$server"
    mkfifo "$fifo"
    target/release/rturn-bench hold --server "127.0.0.1:${!port_var}" --user bench --pass bench \
        --count "$hold" --hold 5s >"$fifo" &
    holder=$!
    line=$(head -1 "$fifo")
    sleep 1
    held=$(rss_kib "${!pid_var}")
    wait "$holder" || true
    n=$(echo "$line" | field allocations)
    result[mem_${server}]=$(awk -v a="$base" -v b="$held" -v n="${n:-0}" \
        'BEGIN { if (n > 0) printf "%.0f", (b - a) * 1024 / n; else print "n/a" }')
    result[mem_${server}_n]=${n:-0}
done

# Instructions retired by the server (all threads, user + kernel) while a workload runs:
# unlike CPU time, this does not move with what else the 2 cores are doing. perf where the
# machine has counters; "n/a" elsewhere (not required by the smoke check).
have_perf=0
# A virtual CPU without the counter still exits 0, with "<not supported>" for the count.
perf stat -x, -e instructions true 2>&1 | grep -q '^[0-9]' && have_perf=1
count_start() { # pid: starts counting its instructions
    [ "$have_perf" -eq 1 ] || return 0
    perf stat -e instructions -x, -o "$work/perf.out" -p "$1" >/dev/null 2>&1 &
    perf_pid=$!
    sleep 0.2
}
count_stop() { # packets: prints instructions per packet
    if [ "$have_perf" -eq 0 ]; then echo "n/a"; return; fi
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    awk -F, -v n="$1" '$3 ~ /^instructions/ { i = $1 }
        END { if (n > 0 && i > 0) printf "%.0f\n", i / n; else print "n/a" }' "$work/perf.out"
}

# ---- 1. relay cost at a fixed rate (coturn's uclient and echo peer) ----
relay_round() { # name pid port flags... -> "cpu_us_per_packet loss_percent instructions_per_packet"
    local name=$1 pid=$2 port=$3; shift 3
    local before after out
    count_start "$pid"
    before=$(cpu_ticks "$pid")
    out=$(timeout 120 turnutils_uclient "$@" -u bench -w bench -p "$port" -e 127.0.0.1 \
        -r "$peer_port" -m "$clients" -n "$messages" -l 120 -z "$interval" -c -X 127.0.0.1 2>&1 || true)
    after=$(cpu_ticks "$pid")
    local sent recv
    sent=$(echo "$out" | grep -o 'tot_send_msgs=[0-9]*' | tail -1 | cut -d= -f2)
    recv=$(echo "$out" | grep -o 'tot_recv_msgs=[0-9]*' | tail -1 | cut -d= -f2)
    local loss
    loss=$(echo "$out" | grep -o 'Total lost packets [0-9]* ([0-9.]*%)' | tail -1 | grep -o '([0-9.]*' | tr -d '(')
    if [ -z "$sent" ] || [ "$((sent + recv))" -eq 0 ]; then count_stop 0 >/dev/null; echo "n/a n/a n/a"; return; fi
    local ins
    ins=$(count_stop $((sent + recv)))
    awk -v t=$((after - before)) -v us="$tick_us" -v n=$((sent + recv)) -v l="${loss:-n/a}" \
        -v i="$ins" 'BEGIN { printf "%.2f %s %s\n", t * us / n, l, i }'
}

for mode in channel send tcp; do
    case $mode in
        channel) flags=() ;;
        send) flags=(-s) ;;
        tcp) flags=(-t) ;;
    esac
    for _ in $(seq "$rounds"); do
        relay_round rturn "$rturn_pid" "$rturn_port" "${flags[@]}" >>"$work/relay_${mode}_rturn"
        relay_round coturn "$coturn_pid" "$coturn_port" "${flags[@]}" >>"$work/relay_${mode}_coturn"
    done
    for server in rturn coturn; do
        result[relay_${mode}_${server}_cpu]=$(cut -d' ' -f1 "$work/relay_${mode}_${server}" | median)
        result[relay_${mode}_${server}_loss]=$(cut -d' ' -f2 "$work/relay_${mode}_${server}" | median)
        result[relay_${mode}_${server}_ins]=$(cut -d' ' -f3 "$work/relay_${mode}_${server}" | median)
    done
done

# ---- 2. maximum loss-free relay rate, and latency at half of it (rturn-bench max-rate) ----
# Before the allocation-rate churn, which leaves coturn's relay ports reserved for a while.
for _ in $(seq "$rounds"); do
    for flows in 1 "$many_flows"; do
        for server in rturn coturn; do
            port_var=${server}_port
            bench_json max-rate --server "127.0.0.1:${!port_var}" --user bench --pass bench \
                --flows "$flows" "${max_rate_args[@]}" 2>>"$work/max_rate.log" \
                >>"$work/max_rate_${flows}_$server" || echo '{}' >>"$work/max_rate_${flows}_$server"
        done
    done
done
for flows in 1 "$many_flows"; do
    for server in rturn coturn; do
        f="$work/max_rate_${flows}_$server"
        result[max_${flows}_${server}]=$(field max_rate <"$f" | median)
        for q in p50 p99 p999; do
            result[lat_${flows}_${server}_$q]=$(field "${q}_ms" <"$f" | median)
        done
        # Marked when the generator, not the server, lost most packets in most rounds.
        gen=$(text_field limited_by <"$f" | grep -c generator || true)
        result[max_${flows}_${server}_mark]=""
        if [ "$gen" -gt $((rounds / 2)) ]; then result[max_${flows}_${server}_mark]="*"; fi
    done
done

# The same latency at one rate for both servers (half of coturn's highest), since each
# server's own half-rate puts a different load on it.
for flows in 1 "$many_flows"; do
    common=$(awk -v c="${result[max_${flows}_coturn]}" 'BEGIN { r = int(c / 2); print (r > 0 ? r : 1000) }')
    result[common_${flows}_rate]=$common
    for _ in $(seq "$rounds"); do
        for server in rturn coturn; do
            port_var=${server}_port
            bench_json relay-rate --server "127.0.0.1:${!port_var}" --user bench --pass bench \
                --flows "$flows" --rate "$common" --batch 4 --duration "${same_rate_secs}s" \
                2>>"$work/max_rate.log" >>"$work/same_rate_${flows}_$server" \
                || echo '{}' >>"$work/same_rate_${flows}_$server"
        done
    done
    for server in rturn coturn; do
        for q in p50 p99 p999; do
            result[same_${flows}_${server}_$q]=$(field "${q}_ms" <"$work/same_rate_${flows}_$server" | median)
        done
    done
done

# ---- 3. allocation rate, 5. binding rate ----
for _ in $(seq "$rounds"); do
    for server in rturn coturn; do
        port_var=${server}_port
        pid_var=${server}_pid
        before=$(cpu_ticks "${!pid_var}")
        out=$(bench_json alloc-rate --server "127.0.0.1:${!port_var}" --user bench --pass bench \
            --clients 64 --duration "${alloc_secs}s")
        after=$(cpu_ticks "${!pid_var}")
        echo "$out" >>"$work/alloc_$server"
        cpu_per $((after - before)) "$(echo "$out" | field cycles)" >>"$work/alloc_cpu_$server"
        count_start "${!pid_var}"
        before=$(cpu_ticks "${!pid_var}")
        out=$(bench_json binding-rate --server "127.0.0.1:${!port_var}" --clients 32 \
            --duration "${bind_secs}s")
        after=$(cpu_ticks "${!pid_var}")
        echo "$out" >>"$work/binding_$server"
        n=$(echo "$out" | field requests)
        count_stop "${n:-0}" >>"$work/binding_ins_$server"
        cpu_per $((after - before)) "$n" >>"$work/binding_cpu_$server"
    done
done
for server in rturn coturn; do
    result[alloc_${server}_rate]=$(field per_second <"$work/alloc_$server" | median)
    result[alloc_${server}_p99]=$(field p99_ms <"$work/alloc_$server" | median)
    result[alloc_${server}_cpu]=$(median <"$work/alloc_cpu_$server")
    result[binding_${server}_rate]=$(field per_second <"$work/binding_$server" | median)
    result[binding_${server}_cpu]=$(median <"$work/binding_cpu_$server")
    result[binding_${server}_ins]=$(median <"$work/binding_ins_$server")
done

# ---- 6. signaling: WebSocket clients in rooms (rturn only; coturn has no signaling) ----
# On a fresh rturn: the allocations `hold` left live on (their relay sockets too) until they
# expire, and with 10 000 WebSocket connections they would pass the open-files limit. These
# runs relay nothing, so a 1000-port relay range: rturn keeps descriptors for one relay
# socket per port (src/server/descriptors.rs), and where the hard limit cannot be raised
# (20 000 on some machines) the full range would leave too few for 10 000 WebSockets.
kill "$rturn_pid"
wait "$rturn_pid" 2>/dev/null || true
sed -e "s/^max-port = .*/max-port = 20999/" "$work/rturn.toml" >"$work/signal.toml"
start_rturn "$work/signal.toml"
wait_udp "$rturn_port"
wait_tcp "$http_port"
# name --server … --server-pid …: $rounds signal runs; medians into result[name_*].
signal_rounds() {
    local name=$1
    shift
    for _ in $(seq "$rounds"); do
        bench_json signal "$@" --clients "$signal_clients" --rooms "$signal_rooms" \
            --duration "${signal_secs}s" 2>>"$work/signal.log" >>"$work/$name" ||
            echo '{}' >>"$work/$name"
    done
    for key in p50_ms p99_ms lost errors server_rss_peak_kib; do
        result[${name}_$key]=$(field "$key" <"$work/$name" | median)
    done
    result[${name}_rss_mb]=$(awk -v k="${result[${name}_server_rss_peak_kib]}" \
        'BEGIN { if (k + 0 > 0) printf "%.0f", k / 1024; else print "n/a" }')
}
signal_rounds signal --server "127.0.0.1:$http_port" --server-pid "$rturn_pid"

# ---- 7. signaling across two nodes sharing one Redis ([cluster]) ----
# Each room's members alternate between the nodes, so nearly every message crosses them
# through Redis; the same clients, rooms and rate as above. Fresh processes again.
kill "$rturn_pid"
wait "$rturn_pid" 2>/dev/null || true
read -r redis_port a_udp a_http b_udp b_http <<<"$(free_ports 5)"
node_ports=("$a_udp" "$a_http" "$b_udp" "$b_http")
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    >"$work/redis.log" 2>&1 &
redis_pid=$!
pids+=("$redis_pid")
node_pids=()
node_https=()
for node in a b; do
    node_udp=${node_ports[0]}
    node_http=${node_ports[1]}
    node_ports=("${node_ports[@]:2}")
    sed -e "s/127.0.0.1:$rturn_port/127.0.0.1:$node_udp/g" -e "s/127.0.0.1:$http_port/127.0.0.1:$node_http/" \
        -e "s/^min-port = .*/min-port = $([ $node = a ] && echo 20000 || echo 30000)/" \
        -e "s/^max-port = .*/max-port = $([ $node = a ] && echo 20999 || echo 30999)/" \
        "$work/rturn.toml" >"$work/node_$node.toml"
    printf '[cluster]\nredis = "redis://127.0.0.1:%s"\nnode-id = "%s"\n' "$redis_port" "$node" \
        >>"$work/node_$node.toml"
    target/release/rturn -q -c "$work/node_$node.toml" 2>"$work/node_$node.log" &
    node_pids+=("$!")
    pids+=("$!")
    node_https+=("$node_http")
done
for port in "${node_https[@]}"; do
    if ! (wait_tcp "$port"); then
        cat "$work"/node_*.log >&2
        exit 1
    fi
    for _ in $(seq 50); do # until the node's link to Redis is up
        if curl -s "http://127.0.0.1:$port/healthz" | grep -q '"redis":"up"'; then break; fi
        sleep 0.1
    done
done
signal_rounds cluster --server "127.0.0.1:${node_https[0]}" --server "127.0.0.1:${node_https[1]}" \
    --server-pid "${node_pids[0]}" --server-pid "${node_pids[1]}"
result[cluster_redis_mb]=$(awk -v k="$(rss_kib "$redis_pid")" \
    'BEGIN { if (k + 0 > 0) printf "%.1f", k / 1024; else print "n/a" }')
result[cluster_redis_cpu_s]=$(awk -v t="$(cpu_ticks "$redis_pid")" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%.1f", t / hz }')
result[cluster_relayed]=$(curl -s "http://127.0.0.1:${node_https[0]}/metrics" \
    | awk '$1 == "rturn_cluster_relayed_total{direction=\"out\"}" { print $2 }')

# ---- the table ----
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'; }
row() { # figure unit rturn coturn target
    printf '| %s | %s | %s | %s | %s |\n' "$1" "$2 $3" "$4 $3" "$(ratio "$2" "$4")" "$5"
}
rate_row() { # flows label: the max-rate row, marked where the generator was the limit
    local r="${result[max_$1_rturn]}" c="${result[max_$1_coturn]}"
    printf '| %s | %s | %s | %s | %s |\n' "highest loss-free relay rate, $2 (packets/s each way)" \
        "$r /s${result[max_$1_rturn_mark]}" "$c /s${result[max_$1_coturn_mark]}" "$(ratio "$r" "$c")" "≥ 2"
}
latency_row() { # flows label: p50 / p99 / p99.9 at half the rate found; the ratio is of p99
    local r c
    r="${result[lat_$1_rturn_p50]} / ${result[lat_$1_rturn_p99]} / ${result[lat_$1_rturn_p999]} ms"
    c="${result[lat_$1_coturn_p50]} / ${result[lat_$1_coturn_p99]} / ${result[lat_$1_coturn_p999]} ms"
    printf '| %s | %s | %s | %s | %s |\n' "one-way latency at 50 % of that rate, $2, p50 / p99 / p99.9" \
        "$r" "$c" "$(ratio "${result[lat_$1_rturn_p99]}" "${result[lat_$1_coturn_p99]}")" "p99 ≤ 1"
}
same_row() { # flows label: p50 / p99 / p99.9 of both at one rate; the ratio is of p99
    local r c
    r="${result[same_$1_rturn_p50]} / ${result[same_$1_rturn_p99]} / ${result[same_$1_rturn_p999]} ms"
    c="${result[same_$1_coturn_p50]} / ${result[same_$1_coturn_p99]} / ${result[same_$1_coturn_p999]} ms"
    printf '| %s | %s | %s | %s | %s |\n' \
        "one-way latency, both at ${result[common_$1_rate]}/s (half coturn's highest), $2, p50 / p99 / p99.9" \
        "$r" "$c" "$(ratio "${result[same_$1_rturn_p99]}" "${result[same_$1_coturn_p99]}")" "p99 ≤ 1"
}
only_row() { # figure rturn-cell target: a figure coturn has no counterpart for
    printf '| %s | %s | — | — | %s |\n' "$1" "$2" "$3"
}
table=$(
    echo "| figure | rturn | coturn 4.6 | rturn / coturn | target (ratio) |"
    echo "|---|---|---|---|---|"
    row "server CPU per relayed packet, UDP ChannelData" "${result[relay_channel_rturn_cpu]}" "µs" "${result[relay_channel_coturn_cpu]}" "≤ 0.5"
    row "server CPU per relayed packet, UDP Send indication" "${result[relay_send_rturn_cpu]}" "µs" "${result[relay_send_coturn_cpu]}" "≤ 0.6"
    row "server CPU per relayed packet, TCP" "${result[relay_tcp_rturn_cpu]}" "µs" "${result[relay_tcp_coturn_cpu]}" "—"
    row "server instructions per relayed packet, UDP ChannelData" "${result[relay_channel_rturn_ins]}" "" "${result[relay_channel_coturn_ins]}" "—"
    row "server instructions per relayed packet, UDP Send indication" "${result[relay_send_rturn_ins]}" "" "${result[relay_send_coturn_ins]}" "—"
    row "loss at the fixed rate, UDP ChannelData" "${result[relay_channel_rturn_loss]}" "%" "${result[relay_channel_coturn_loss]}" "0"
    row "allocations per second (64 clients, full cycle)" "${result[alloc_rturn_rate]}" "/s" "${result[alloc_coturn_rate]}" "≥ 5"
    row "server CPU per allocation cycle (4 requests, 1 socket bound and closed)" "${result[alloc_rturn_cpu]}" "µs" "${result[alloc_coturn_cpu]}" "—"
    row "allocation cycle p99" "${result[alloc_rturn_p99]}" "ms" "${result[alloc_coturn_p99]}" "—"
    row "RSS per allocation (${result[mem_rturn_n]} held)" "${result[mem_rturn]}" "B" "${result[mem_coturn]}" "≤ 0.25"
    row "STUN Binding requests per second" "${result[binding_rturn_rate]}" "/s" "${result[binding_coturn_rate]}" "≥ 1.5"
    row "server CPU per Binding request" "${result[binding_rturn_cpu]}" "µs" "${result[binding_coturn_cpu]}" "—"
    row "server instructions per Binding request" "${result[binding_rturn_ins]}" "" "${result[binding_coturn_ins]}" "—"
    rate_row 1 "1 flow"
    rate_row "$many_flows" "$many_flows flows"
    latency_row 1 "1 flow"
    latency_row "$many_flows" "$many_flows flows"
    same_row 1 "1 flow"
    same_row "$many_flows" "$many_flows flows"
    only_row "signaling relay latency p50 / p99 ($signal_clients clients in $signal_rooms rooms)" \
        "${result[signal_p50_ms]} / ${result[signal_p99_ms]} ms" "p99 < 10 ms"
    only_row "server RSS with $signal_clients signaling clients" "${result[signal_rss_mb]} MB" "< 200 MB"
    only_row "signaling messages lost / errors" "${result[signal_lost]} / ${result[signal_errors]}" "0 / 0"
    only_row "signaling relay latency p50 / p99 across 2 nodes through Redis (same load, rooms split)" \
        "${result[cluster_p50_ms]} / ${result[cluster_p99_ms]} ms" "p99 < 10 ms"
    only_row "RSS of the 2 nodes together / of Redis, after the cluster runs" \
        "${result[cluster_rss_mb]} MB / ${result[cluster_redis_mb]} MB" "—"
    only_row "cross-node signaling messages lost / errors" "${result[cluster_lost]} / ${result[cluster_errors]}" "0 / 0"
    only_row "Redis CPU for all cluster rounds (node a relayed ${result[cluster_relayed]} messages through it)" \
        "${result[cluster_redis_cpu_s]} s" "—"
)
echo "$table"
grep -h 'probe\|joined' "$work/max_rate.log" "$work/signal.log" >&2 || true
echo "bench: took $((SECONDS / 60)) min $((SECONDS % 60)) s" >&2

# Smoke mode: the harness must produce a complete table (every rturn cell measured).
if echo "$table" | awk -F'|' 'NR > 2 && $2 !~ /instructions/ && $3 ~ /n\/a/ { bad = 1 } END { exit !bad }'; then
    echo "bench: some rturn figure was not measured" >&2
    exit 1
fi
[ "$smoke" -eq 1 ] && exit 0

# The analysis written by hand below the table survives a re-run.
notes=$(sed -n '/^## Where rturn stands/,$p' BENCHMARKS.md 2>/dev/null || true)
{
    echo "# Benchmarks"
    echo
    echo "Produced by \`scripts/bench.sh\` on $(date -u +%Y-%m-%d). Machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1),"
    echo "$(nproc) cores, Linux $(uname -r). coturn: $(turnserver --version 2>/dev/null | head -1 || echo unknown)."
    echo
    echo "Both servers ran side by side on loopback with $threads data-path threads, the same realm,"
    echo "user, port-range size, loopback peers allowed and logging off; rounds alternated"
    echo "(rturn, coturn, rturn, ...), $rounds each, and each cell is the median. CPU is user + system"
    echo "time of the server process (all threads) from /proc/PID/stat, divided by the packets it"
    echo "relayed (both directions) or the requests it answered; the load generators share the"
    echo "same 2 cores. Lower is better for CPU and memory, higher for rates."
    echo
    echo "$table"
    echo
    echo "Commands: coturn's \`turnutils_uclient -m $clients -n $messages -l 120 -z $interval -c -X\`"
    echo "(ChannelData; \`-s\` Send indications; \`-t\` TCP) against \`turnutils_peer\`;"
    echo "\`rturn-bench alloc-rate --clients 64\` (401 → Allocate → ChannelBind → Refresh 0),"
    echo "\`rturn-bench binding-rate --clients 32\`, \`rturn-bench hold --count $hold\`,"
    echo "\`rturn-bench max-rate --flows 1|$many_flows ${max_rate_args[*]}\`,"
    echo "\`rturn-bench relay-rate --flows 1|$many_flows --rate R --batch 4\` (both servers at R, half"
    echo "coturn's highest rate),"
    echo "\`rturn-bench signal --clients $signal_clients --rooms $signal_rooms --duration ${signal_secs}s --server-pid PID\`,"
    echo "and across two nodes with \`[cluster] redis\` on one \`redis-server\` (no persistence), the same"
    echo "command with \`--server\` and \`--server-pid\` once per node."
    echo "Instructions: \`perf stat -e instructions -p PID\` (user + kernel, all threads) around the"
    echo "uclient and Binding runs; unlike CPU time they hardly move with what else the cores do."
    echo
    echo "Maximum relay rate: ChannelData from the generator through the server to an echo peer"
    echo "and back (the server relays each packet twice). Each probe offers a rate for 1 s; the rate"
    echo "doubles while less than 0.1 % is lost, then bisects (a rate fails when two probes in a"
    echo "row fail). Latency is one way (generator → server → peer), timed from each packet's"
    echo "scheduled send time, so the generator's own pacing delay is part of it, at half the rate"
    echo "found for that server. A \`*\` marks a rate where, in most rounds, the generator's own"
    echo "sockets dropped most of the lost packets (the kernel's per-socket drop counters): the"
    echo "server's limit is higher than shown. Signaling: each client sends 1 message a second"
    echo "(offer, answer, candidate in turn) to the other members of its room; latency is send →"
    echo "receipt; RSS is the server's VmRSS, highest sample while all clients are connected."
    echo
    echo "The full run took $((SECONDS / 60)) min $((SECONDS % 60)) s."
    if [ -n "$notes" ]; then
        echo
        echo "$notes"
    fi
} >BENCHMARKS.md
echo "wrote BENCHMARKS.md"
