#!/usr/bin/env bash
# Side-by-side benchmark of rturn, coturn 4.17.1 and Debian's coturn (4.6.1) on loopback, and
# between network namespaces joined by veth pairs (client | server | peer) that it makes itself.
# Writes the table to stdout, and to BENCHMARKS.md after a full run.
#
#   scripts/bench.sh                  full run (about 30 minutes on 2 cores; the veth rows need root)
#   scripts/bench.sh --smoke          tiny run that only proves the harness works (CI)
#   scripts/bench.sh --only LIST      only these rows, full size; BENCHMARKS.md is left alone.
#                                     LIST, comma-separated: memory, channel, send, tcp (relay:
#                                     those three uclient rows), tcp-relay (RFC 6062 TCP relay
#                                     allocations, uclient -T), max-rate, alloc, signal, cluster,
#                                     veth (UDP ChannelData between network namespaces joined
#                                     by veth pairs; needs root)
#   COTURN_417=PREFIX scripts/bench.sh   coturn 4.17.1 from PREFIX/bin
#   RTURN_OFFLOAD=off scripts/bench.sh   rturn without the kernel fast path ([relay] offload;
#                                     default "auto": on when run as root)
#
# coturn 4.17.1 comes from $COTURN_417/bin, else target/coturn-4.17.1/bin, which a run other
# than --smoke builds with ../shared/anchors/build-coturn.sh when that script is beside the
# checkout; without either, its columns are left out and one line says why. Its own
# turnutils_uclient and turnutils_peer then drive all three servers: coturn >= 4.16 accepts
# ChannelBind only on 0x4000-0x4FFF, and Debian's 4.6 client picks channels up to 0x7FFF.
#
# All servers get the same realm, credentials, port-range size, loopback peers allowed,
# logging off and the same number of data-path threads. Rounds alternate A B C A B C ...;
# medians are reported. All traffic stays on 127.0.0.1 or inside the namespaces (10.183.0.0/16,
# fd00:183::/32, removed on exit); every run is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
smoke=0
only=""
while [ $# -gt 0 ]; do
    case $1 in
        --smoke) smoke=1 ;;
        --only) [ $# -ge 2 ] || usage; only=$2; shift ;;
        --only=*) only=${1#--only=} ;;
        *) usage ;;
    esac
    shift
done
# "relay" stands for the three uclient rows of section 1 (not tcp-relay, named on its own).
parts=()
for part in ${only//,/ }; do
    if [ "$part" = relay ]; then parts+=(channel send tcp); else parts+=("$part"); fi
done
only=$(IFS=,; echo "${parts[*]}")
for part in ${only//,/ }; do
    case $part in
        memory | channel | send | tcp | tcp-relay | max-rate | alloc | signal | cluster | veth) ;;
        *) echo "bench: --only: unknown part '$part'" >&2; usage ;;
    esac
done
# want PART: whether this run measures PART.
want() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }

need_packages=()
command -v turnutils_uclient >/dev/null 2>&1 || need_packages+=(coturn)
command -v turnserver >/dev/null 2>&1 || need_packages+=(coturn)
if want cluster; then
    command -v redis-server >/dev/null 2>&1 || need_packages+=(redis-server)
fi
if ((${#need_packages[@]})); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        $(printf '%s\n' "${need_packages[@]}" | sort -u) >/dev/null
fi

# ---- coturn 4.17.1: given, cached, built (never by --smoke) or left out ----
c417=""
c417_missing=""
cache=$PWD/target/coturn-4.17.1
has_c417() { [ -x "$1/bin/turnserver" ] && [ -x "$1/bin/turnutils_uclient" ] && [ -x "$1/bin/turnutils_peer" ]; }
if [ -n "${COTURN_417:-}" ]; then
    if ! has_c417 "$COTURN_417"; then
        echo "bench: COTURN_417=$COTURN_417 has no bin/turnserver, bin/turnutils_uclient and bin/turnutils_peer" >&2
        exit 1
    fi
    c417=$(cd "$COTURN_417" && pwd)
elif has_c417 "$cache"; then
    c417=$cache
elif [ "$smoke" -eq 1 ]; then
    c417_missing="not built (--smoke never builds it; set COTURN_417=PREFIX or run the full bench once)"
elif [ -f ../shared/anchors/build-coturn.sh ]; then
    echo "bench: building coturn 4.17.1 into $cache (once)" >&2
    if nice -n 10 bash ../shared/anchors/build-coturn.sh "$cache" >&2 && has_c417 "$cache"; then
        c417=$cache
    else
        c417_missing="../shared/anchors/build-coturn.sh $cache failed"
    fi
else
    c417_missing="no COTURN_417=PREFIX, no $cache and no ../shared/anchors/build-coturn.sh to build it"
fi
if [ -n "$c417_missing" ]; then
    echo "bench: coturn 4.17.1 columns left out: $c417_missing" >&2
fi
# The load client and echo peer of every uclient row: 4.17.1's where there is one.
uclient=turnutils_uclient
echo_peer=turnutils_peer
if [ -n "$c417" ]; then
    uclient=$c417/bin/turnutils_uclient
    echo_peer=$c417/bin/turnutils_peer
fi

# rturn first, then the coturns to compare it with, newest first.
servers=(rturn)
[ -n "$c417" ] && servers+=(c417)
servers+=(c461)
coturns=("${servers[@]:1}")
declare -A label=([rturn]=rturn [c417]="coturn 4.17.1"
    [c461]="coturn $(turnserver --version 2>/dev/null | head -1 || echo 4.6)")

bin=${CARGO_TARGET_DIR:-target}/release
cargo build --release --locked --quiet --bin rturn --bin rturn-bench
# The servers and the generators inherit this: 10 000 held allocations and 10 000 signaling
# clients need as many open files on each side, and rturn splits its descriptors at start
# between relay sockets (one per port of the range) and connections, HTTP taking at most
# three quarters of those (src/server/descriptors.rs): raise the hard limit too where allowed.
ulimit -Hn 1048576 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

threads=2
if [ "$smoke" -eq 1 ]; then
    rounds=1; clients=2; messages=5; interval=5; alloc_secs=1; hold=200; hold_secs=2; bind_secs=1
    tcp_relay_clients=2; tcp_relay_messages=5
    many_flows=2; max_rate_args=(--start-rate 1000 --max-probes 2 --probe 300ms --measure 300ms)
    same_rate_secs=1
    signal_clients=20; signal_rooms=2; signal_secs=1
else
    rounds=3; clients=50; messages=1000; interval=5; alloc_secs=5; hold=10000; hold_secs=5; bind_secs=5
    tcp_relay_clients=10; tcp_relay_messages=1000
    many_flows=1000; max_rate_args=(--start-rate 20000 --max-probes 12 --probe 1s --measure 3s)
    same_rate_secs=3
    signal_clients=10000; signal_rooms=1000; signal_secs=10
fi
# Relay port ranges, the same size for each server, none overlapping: 3 × 18 000 ports.
range=18000
declare -A min_port=([rturn]=10000 [c417]=28000 [c461]=46000)

work=$(mktemp -d)
pids=()
netns_made=() # the veth topology's namespaces, deleted on exit (with their veths)
cleanup() {
    local p ns
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for ns in "${netns_made[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
# Ctrl-C and kill end the run through the EXIT trap too.
trap 'exit 130' INT
trap 'exit 143' TERM

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

declare -A port pid
for server in "${servers[@]}"; do port[$server]=$(free_port); done
rturn_port=${port[rturn]}
peer_port=$(free_port)
http_port=$(free_port)

cat >"$work/rturn.toml" <<TOML
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
# The kernel fast path: "auto" (on as root) or "off" (RTURN_OFFLOAD=off).
offload = "${RTURN_OFFLOAD:-auto}"
min-port = ${min_port[rturn]}
max-port = $((min_port[rturn] + range - 1))
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
TOML

# start_rturn [CONFIG]: the shared config unless another is given.
start_rturn() {
    "$bin/rturn" -q -c "${1:-$work/rturn.toml}" 2>"$work/rturn.log" &
    pid[rturn]=$!
    pids+=("$!")
}
start_coturn() { # c461 (Debian's turnserver) or c417
    local name=$1 turnserver=turnserver extra=(--no-stun-backward-compatibility)
    if [ "$name" = c417 ]; then
        # 4.17 has MAPPED-ADDRESS off by default and no longer knows the flag.
        turnserver=$c417/bin/turnserver
        extra=()
    fi
    "$turnserver" -n --listening-ip=127.0.0.1 --listening-port="${port[$name]}" \
        --relay-ip=127.0.0.1 --min-port="${min_port[$name]}" \
        --max-port="$((min_port[$name] + range - 1))" --realm=bench \
        --user=bench:bench --lt-cred-mech --allow-loopback-peers --no-cli --no-tls --no-dtls \
        --no-stdout-log --log-file=/dev/null --relay-threads="$threads" \
        --pidfile="$work/$name.pid" --no-rfc5780 "${extra[@]}" >/dev/null 2>&1 &
    pid[$name]=$!
    pids+=("$!")
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
start_all() { # every server, fresh, answering
    local server
    start_rturn
    for server in "${coturns[@]}"; do start_coturn "$server"; done
    for server in "${servers[@]}"; do wait_udp "${port[$server]}"; done
}
stop() { # server...: all at once (coturn takes seconds to join its threads)
    local server
    for server in "$@"; do kill "${pid[$server]}" 2>/dev/null || true; done
    for server in "$@"; do wait "${pid[$server]}" 2>/dev/null || true; done
}
# offload_state URL [NETNS]: whether rturn's kernel fast path is on, from its /healthz at URL
# (asked from inside NETNS if given): "on", or "off: the reason it gave".
offload_state() {
    local get=(curl -s "$1")
    [ -z "${2:-}" ] || get=(ip netns exec "$2" curl -s "$1")
    "${get[@]}" | python3 -c 'import json, sys
o = json.load(sys.stdin).get("offload") or {}
print("on" if o.get("active") else "off: %s" % (o.get("reason") or "offload = \"off\""))' 2>/dev/null ||
        echo "unknown (no /healthz answer)"
}
# Where the time goes, to stderr.
lap() { echo "bench: $1 done at $((SECONDS / 60)) min $((SECONDS % 60)) s" >&2; }

# CPU ticks (user + system, all threads) of a process.
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
# CPU microseconds per unit: ticks used, units done.
cpu_per() { awk -v t="$1" -v us="$tick_us" -v n="${2:-0}" 'BEGIN { if (n > 0) printf "%.2f\n", t * us / n; else print "n/a" }'; }
tick_us=$((1000000 / $(getconf CLK_TCK)))
bench_json() { "$bin/rturn-bench" "$@" | tail -1; }
field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"; }
text_field() { sed -n "s/.*\"$1\":\"\([a-z]*\)\".*/\1/p"; }
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "n/a"; else print a[int((NR + 1) / 2)] }'; }

lap "build"
# The servers side by side on loopback, for the rows that use them.
loopback=0
for part in memory channel send tcp tcp-relay max-rate alloc; do
    if want "$part"; then loopback=1; fi
done
rturn_offload="not measured"
if [ "$loopback" -eq 1 ]; then
    start_all
    wait_tcp "$http_port"
    rturn_offload=$(offload_state "http://127.0.0.1:$http_port/healthz")
    echo "bench: rturn on loopback, offload = \"${RTURN_OFFLOAD:-auto}\": $rturn_offload" >&2
    "$echo_peer" -L 127.0.0.1 -p "$peer_port" >/dev/null 2>&1 &
    peer_pid=$!
    pids+=("$peer_pid")
fi

declare -A result
# ---- 4. memory per allocation (one permission and one channel each), on fresh servers ----
if want memory; then
    for server in "${servers[@]}"; do
        base=$(rss_kib "${pid[$server]}")
        fifo="$work/hold_$server"
        mkfifo "$fifo"
        "$bin/rturn-bench" hold --server "127.0.0.1:${port[$server]}" --user bench --pass bench \
            --count "$hold" --hold "${hold_secs}s" >"$fifo" &
        holder=$!
        line=$(head -1 "$fifo")
        sleep 1
        held=$(rss_kib "${pid[$server]}")
        wait "$holder" || true
        n=$(echo "$line" | field allocations)
        result[mem_${server}]=$(awk -v a="$base" -v b="$held" -v n="${n:-0}" \
            'BEGIN { if (n > 0) printf "%.0f", (b - a) * 1024 / n; else print "n/a" }')
        result[mem_${server}_n]=${n:-0}
    done
    # The held allocations would live on until they expire, each with its relay port: the
    # rows below start from fresh servers again (--smoke holds too few to matter).
    if [ "$smoke" -eq 0 ]; then
        stop "${servers[@]}"
        start_all
    fi
    lap memory
fi

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

# ---- 1. relay cost at a fixed rate (turnutils_uclient and its echo peer) ----
# CPU ticks of the kernel's softirq threads (ksoftirqd/N): network work the kernel could not
# finish in the softirq of the process that sent the packet (which is charged for it).
ksoftirqd_ticks() {
    local p t=0
    for p in $(pgrep '^ksoftirqd/'); do t=$((t + $(cpu_ticks "$p" 2>/dev/null || echo 0))); done
    echo "$t"
}
# uclient_round SERVER_PID PEER_PID COMMAND... -> "server_us loss_percent instructions
# machine_us", each per relayed packet; COMMAND runs turnutils_uclient (perhaps through
# `ip netns exec`), machine_us adds to the server's CPU the uclient's (all its threads, from
# the shell's `times` for its children), the echo peer's (none when PEER_PID is "") and the
# softirq threads'.
uclient_round() {
    local server_pid=$1 echo_pid=$2 before after peer_before=0 peer_after=0 soft_before soft_after
    local out sent recv loss ins client_s
    shift 2
    count_start "$server_pid"
    before=$(cpu_ticks "$server_pid")
    [ -z "$echo_pid" ] || peer_before=$(cpu_ticks "$echo_pid")
    soft_before=$(ksoftirqd_ticks)
    out=$(
        timeout 120 "$@" 2>&1 || true
        times
    )
    after=$(cpu_ticks "$server_pid")
    [ -z "$echo_pid" ] || peer_after=$(cpu_ticks "$echo_pid")
    soft_after=$(ksoftirqd_ticks)
    # The last line of `times`: user and system time of the subshell's children, "0m1.234s".
    client_s=$(echo "$out" | tail -1 | awk '{ t = 0; for (i = 1; i <= NF; i++) {
        split($i, p, "m"); sub("s", "", p[2]); t += p[1] * 60 + p[2] }; print t }')
    # A run that failed prints no totals: its round reads n/a (grep finding nothing must not
    # end the script under `set -e -o pipefail`).
    sent=$(echo "$out" | grep -o 'tot_send_msgs=[0-9]*' | tail -1 | cut -d= -f2 || true)
    recv=$(echo "$out" | grep -o 'tot_recv_msgs=[0-9]*' | tail -1 | cut -d= -f2 || true)
    loss=$(echo "$out" | grep -o 'Total lost packets [0-9]* ([0-9.]*%)' | tail -1 | grep -o '([0-9.]*' | tr -d '(' || true)
    if [ -z "$sent" ] || [ -z "$recv" ] || [ "$((sent + recv))" -eq 0 ]; then
        echo "bench: a uclient run printed no totals: $(echo "$out" | tail -3 | head -2 | tr '\n' ' ')" >&2
        count_stop 0 >/dev/null
        echo "n/a n/a n/a n/a"
        return
    fi
    ins=$(count_stop $((sent + recv)))
    awk -v t=$((after - before)) -v p=$((peer_after - peer_before + soft_after - soft_before)) \
        -v c="$client_s" -v us="$tick_us" -v n=$((sent + recv)) -v l="${loss:-n/a}" -v i="$ins" \
        'BEGIN { printf "%.2f %s %s %.2f\n", t * us / n, l, i, ((t + p) * us + c * 1e6) / n }'
}
# The uclient's options of every relay row but the server's and the peer's addresses.
uclient_args=(-u bench -w bench -m "$clients" -n "$messages" -l 120 -z "$interval" -c -X)
relay_round() { # server flags...: uclient_round on loopback
    local server=$1
    shift
    uclient_round "${pid[$server]}" "$peer_pid" "$uclient" "$@" "${uclient_args[@]}" \
        -p "${port[$server]}" -e 127.0.0.1 -r "$peer_port" 127.0.0.1
}

relay_medians() { # key: each server's medians of the uclient_round lines in $work/relay_KEY_SERVER
    local f server
    for server in "${servers[@]}"; do
        f="$work/relay_$1_$server"
        result[relay_$1_${server}_cpu]=$(cut -d' ' -f1 "$f" | median)
        result[relay_$1_${server}_loss]=$(cut -d' ' -f2 "$f" | median)
        result[relay_$1_${server}_ins]=$(cut -d' ' -f3 "$f" | median)
        result[relay_$1_${server}_all]=$(cut -d' ' -f4 "$f" | median)
    done
}

for mode in channel send tcp; do
    want "$mode" || continue
    case $mode in
        channel) flags=() ;;
        send) flags=(-s) ;;
        tcp) flags=(-t) ;;
    esac
    for _ in $(seq "$rounds"); do
        for server in "${servers[@]}"; do
            relay_round "$server" "${flags[@]}" >>"$work/relay_${mode}_$server"
        done
    done
    relay_medians "$mode"
    lap "uclient $mode"
done

# RFC 6062 TCP relay allocations (turnutils_uclient -T, which implies -t, -y and -c): each of
# the clients allocates a TCP relay over its TCP control connection and Connects to every
# other client's relayed address, a data connection bound (ConnectionBind) for each of the
# m × (m - 1) connections, the accepting side's after a ConnectionAttempt. Each message leaves
# its sender's data connection, goes out of the sender's allocation to the receiver's relayed
# address and in through the receiver's allocation to its data connection: the server relays
# it twice, as it does an echoed message above, and the uclient's sent + received messages
# count both. No echo peer: the clients are each other's peers. uclient Connects each client
# to every other before it binds any of them: rturn lets 32 connections of one allocation
# wait unbound (src/turn/tcp_link.rs, MAX_UNBOUND), so keep -m at 32 or fewer.
tcp_relay_args=(-T -u bench -w bench -m "$tcp_relay_clients" -n "$tcp_relay_messages" -l 120 -z "$interval" -X)
if want tcp-relay; then
    for _ in $(seq "$rounds"); do
        for server in "${servers[@]}"; do
            uclient_round "${pid[$server]}" "" "$uclient" "${tcp_relay_args[@]}" -p "${port[$server]}" \
                127.0.0.1 >>"$work/relay_tcp_relay_$server"
        done
    done
    relay_medians tcp_relay
    echo "bench: rturn's /metrics after the uclient -T rounds: $(curl -s "http://127.0.0.1:$http_port/metrics" |
        grep '^rturn_tcp_relay_connections_total' | tr '\n' ' ')" >&2
    lap "uclient -T (RFC 6062 TCP relay)"
fi

# ---- 2. maximum loss-free relay rate, and latency at half of it (rturn-bench max-rate) ----
# Before the allocation-rate churn, which leaves coturn's relay ports reserved for a while.
if want max-rate; then
    for _ in $(seq "$rounds"); do
        for flows in 1 "$many_flows"; do
            for server in "${servers[@]}"; do
                bench_json max-rate --server "127.0.0.1:${port[$server]}" --user bench --pass bench \
                    --flows "$flows" "${max_rate_args[@]}" 2>>"$work/max_rate.log" \
                    >>"$work/max_rate_${flows}_$server" || echo '{}' >>"$work/max_rate_${flows}_$server"
            done
        done
    done
    for flows in 1 "$many_flows"; do
        for server in "${servers[@]}"; do
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

    # The same latency at one rate for all servers (half the lowest coturn's highest), since
    # each server's own half-rate puts a different load on it.
    for flows in 1 "$many_flows"; do
        common=$(for c in "${coturns[@]}"; do echo "${result[max_${flows}_$c]}"; done |
            awk '$1 + 0 > 0 { r = int($1 / 2); if (low == "" || r < low) low = r }
                END { print (low > 0 ? low : 1000) }')
        result[common_${flows}_rate]=$common
        for _ in $(seq "$rounds"); do
            for server in "${servers[@]}"; do
                bench_json relay-rate --server "127.0.0.1:${port[$server]}" --user bench --pass bench \
                    --flows "$flows" --rate "$common" --batch 4 --duration "${same_rate_secs}s" \
                    2>>"$work/max_rate.log" >>"$work/same_rate_${flows}_$server" \
                    || echo '{}' >>"$work/same_rate_${flows}_$server"
            done
        done
        for server in "${servers[@]}"; do
            for q in p50 p99 p999; do
                result[same_${flows}_${server}_$q]=$(field "${q}_ms" <"$work/same_rate_${flows}_$server" | median)
            done
        done
    done
    lap max-rate
fi

# ---- 3. allocation rate, 5. binding rate ----
if want alloc; then
    for _ in $(seq "$rounds"); do
        for server in "${servers[@]}"; do
            p=${pid[$server]}
            before=$(cpu_ticks "$p")
            out=$(bench_json alloc-rate --server "127.0.0.1:${port[$server]}" --user bench --pass bench \
                --clients 64 --duration "${alloc_secs}s")
            after=$(cpu_ticks "$p")
            echo "$out" >>"$work/alloc_$server"
            cpu_per $((after - before)) "$(echo "$out" | field cycles)" >>"$work/alloc_cpu_$server"
            count_start "$p"
            before=$(cpu_ticks "$p")
            out=$(bench_json binding-rate --server "127.0.0.1:${port[$server]}" --clients 32 \
                --duration "${bind_secs}s")
            after=$(cpu_ticks "$p")
            echo "$out" >>"$work/binding_$server"
            n=$(echo "$out" | field requests)
            count_stop "${n:-0}" >>"$work/binding_ins_$server"
            cpu_per $((after - before)) "$n" >>"$work/binding_cpu_$server"
        done
    done
    for server in "${servers[@]}"; do
        result[alloc_${server}_rate]=$(field per_second <"$work/alloc_$server" | median)
        result[alloc_${server}_p99]=$(field p99_ms <"$work/alloc_$server" | median)
        result[alloc_${server}_cpu]=$(median <"$work/alloc_cpu_$server")
        result[binding_${server}_rate]=$(field per_second <"$work/binding_$server" | median)
        result[binding_${server}_cpu]=$(median <"$work/binding_cpu_$server")
        result[binding_${server}_ins]=$(median <"$work/binding_ins_$server")
    done
    lap alloc
fi

# ---- 6. signaling: WebSocket clients in rooms (rturn only; coturn has no signaling) ----
# The coturns are done; rturn starts again on a fresh process: the allocations the rows above
# left live on (their relay sockets too) until they expire, and with 10 000 WebSocket
# connections they would pass the open-files limit. These runs relay nothing, so a 1000-port
# relay range: rturn keeps descriptors for one relay socket per port
# (src/server/descriptors.rs), and where the hard limit cannot be raised (20 000 on some
# machines) the full range would leave too few for 10 000 WebSockets.
[ "$loopback" -eq 0 ] || stop "${servers[@]}"
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
# set_range CONFIG MIN: CONFIG's relay range as MIN to MIN + 999, to stdout.
set_range() {
    sed -e "s/^min-port = .*/min-port = $2/" -e "s/^max-port = .*/max-port = $(($2 + 999))/" "$1"
}
if want signal; then
    set_range "$work/rturn.toml" "${min_port[rturn]}" >"$work/signal.toml"
    start_rturn "$work/signal.toml"
    wait_udp "$rturn_port"
    wait_tcp "$http_port"
    signal_rounds signal --server "127.0.0.1:$http_port" --server-pid "${pid[rturn]}"
    stop rturn
    lap signal
fi

# ---- 7. signaling across two nodes sharing one Redis ([cluster]) ----
# Each room's members alternate between the nodes, so nearly every message crosses them
# through Redis; the same clients, rooms and rate as above. Fresh processes again.
if want cluster; then
    read -r redis_port a_udp a_http b_udp b_http <<<"$(free_ports 5)"
    node_ports=("$a_udp" "$a_http" "$b_udp" "$b_http")
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
        >"$work/redis.log" 2>&1 &
    redis_pid=$!
    pids+=("$redis_pid")
    node_pids=()
    node_https=()
    node_min=${min_port[rturn]}
    for node in a b; do
        node_udp=${node_ports[0]}
        node_http=${node_ports[1]}
        node_ports=("${node_ports[@]:2}")
        sed -e "s/127.0.0.1:$rturn_port/127.0.0.1:$node_udp/g" -e "s/127.0.0.1:$http_port/127.0.0.1:$node_http/" \
            "$work/rturn.toml" >"$work/node_$node.base"
        set_range "$work/node_$node.base" "$node_min" >"$work/node_$node.toml"
        node_min=$((node_min + 1000))
        printf '[cluster]\nredis = "redis://127.0.0.1:%s"\nnode-id = "%s"\n' "$redis_port" "$node" \
            >>"$work/node_$node.toml"
        "$bin/rturn" -q -c "$work/node_$node.toml" 2>"$work/node_$node.log" &
        node_pids+=("$!")
        pids+=("$!")
        node_https+=("$node_http")
    done
    for p in "${node_https[@]}"; do
        if ! (wait_tcp "$p"); then
            cat "$work"/node_*.log >&2
            exit 1
        fi
        for _ in $(seq 50); do # until the node's link to Redis is up
            if curl -s "http://127.0.0.1:$p/healthz" | grep -q '"redis":"up"'; then break; fi
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
    # Done with them: nothing of theirs runs beside the rows below.
    kill "${node_pids[@]}" "$redis_pid" 2>/dev/null || true
    wait "${node_pids[@]}" "$redis_pid" 2>/dev/null || true
    lap cluster
fi

# ---- 8. the veth topology: client | server | peer, each in a network namespace ----
# Two veth pairs: the client namespace (10.183.1.2) and the peer namespace (10.183.2.2) reach
# each other only through the server namespace, which forwards; the servers listen on
# 10.183.1.1 and relay from 10.183.2.1, so a relayed packet arrives on one interface and
# leaves by the other (where rturn's kernel program redirects it). One server runs at a time,
# alone in the server namespace (no other server's program or sockets on its path), started
# fresh for each round; rturn also a second time with the offload off (unless RTURN_OFFLOAD
# already turned it off). The namespaces carry this process's id and go on exit, whatever
# ends the run; the veths and routes go with them. Nothing reaches a real interface.
veth_ok=""
if want veth; then
    if [ "$(id -u)" -ne 0 ]; then
        veth_ok="not run: it creates network namespaces, which needs root"
    elif ! command -v ip >/dev/null 2>&1; then
        veth_ok="not run: no \`ip\` (iproute2)"
    fi
    if [ -n "$veth_ok" ]; then
        echo "bench: veth topology $veth_ok" >&2
        [ -z "$only" ] || exit 1
    fi
fi
if want veth && [ -z "$veth_ok" ]; then
    ns_c=rbc$$ ns_s=rbs$$ ns_p=rbp$$
    for ns in "$ns_c" "$ns_s" "$ns_p"; do
        netns_made+=("$ns")
        ip netns add "$ns"
        ip -n "$ns" link set lo up
    done
    ip link add "rbvc$$" netns "$ns_c" type veth peer name "rbvsc$$" netns "$ns_s"
    ip link add "rbvp$$" netns "$ns_p" type veth peer name "rbvsp$$" netns "$ns_s"
    while read -r ns dev v4 v6; do
        ip -n "$ns" addr add "$v4" dev "$dev"
        ip -n "$ns" addr add "$v6" dev "$dev" nodad
        ip -n "$ns" link set "$dev" up
    done <<LINKS
$ns_c rbvc$$ 10.183.1.2/24 fd00:183:1::2/64
$ns_s rbvsc$$ 10.183.1.1/24 fd00:183:1::1/64
$ns_s rbvsp$$ 10.183.2.1/24 fd00:183:2::1/64
$ns_p rbvp$$ 10.183.2.2/24 fd00:183:2::2/64
LINKS
    ip -n "$ns_c" route add default via 10.183.1.1
    ip -n "$ns_c" -6 route add default via fd00:183:1::1
    ip -n "$ns_p" route add default via 10.183.2.1
    ip -n "$ns_p" -6 route add default via fd00:183:2::1
    ip netns exec "$ns_s" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1

    v_listen=10.183.1.1 v_relay=10.183.2.1 v_peer=10.183.2.2 v_port=3478 v_peer_port=3480
    # rturn wants 16 characters or more for a secret on a non-loopback listener; every server
    # gets this one.
    v_pass=bench-veth-password
    veth_servers=(rturn)
    [ "${RTURN_OFFLOAD:-auto}" = off ] || veth_servers+=(rturn_off)
    veth_servers+=("${coturns[@]}")
    for mode in auto off; do
        cat >"$work/veth_$mode.toml" <<TOML
realm = "bench"
[server]
workers = $threads
unauthenticated-rate = 0
max-tcp-connections-per-ip = 0
[listen]
udp = ["$v_listen:$v_port"]
tcp = []
http = "127.0.0.1:8080"
[relay]
relay-ip = "$v_relay"
# The peer namespace's address is private: allowed explicitly, as coturn is told below.
allowed-peer-ip = ["$v_peer"]
offload = "$mode"
min-port = ${min_port[rturn]}
max-port = $((min_port[rturn] + range - 1))
max-allocations-per-ip = 0
[auth.users]
bench = "$v_pass"
TOML
    done
    sed -i "s/^offload = \"auto\"/offload = \"${RTURN_OFFLOAD:-auto}\"/" "$work/veth_auto.toml"
    veth_start() { # server: alone in the server namespace, answering; its pid in veth_pid
        local name=$1 turnserver=turnserver extra=(--no-stun-backward-compatibility)
        case $name in
            rturn | rturn_off)
                local mode=auto
                [ "$name" = rturn ] || mode=off
                ip netns exec "$ns_s" "$bin/rturn" -q -c "$work/veth_$mode.toml" 2>"$work/veth_$name.log" &
                ;;
            *)
                if [ "$name" = c417 ]; then turnserver=$c417/bin/turnserver; extra=(); fi
                ip netns exec "$ns_s" "$turnserver" -n --listening-ip=$v_listen \
                    --listening-port=$v_port --relay-ip=$v_relay --min-port="${min_port[$name]}" \
                    --max-port="$((min_port[$name] + range - 1))" --realm=bench --user="bench:$v_pass" \
                    --lt-cred-mech --allowed-peer-ip=$v_peer --no-cli --no-tls --no-dtls \
                    --no-tcp --no-stdout-log --log-file=/dev/null --relay-threads="$threads" \
                    --pidfile="$work/veth_$name.pid" --no-rfc5780 "${extra[@]}" >/dev/null 2>&1 &
                ;;
        esac
        veth_pid=$!
        pids+=("$veth_pid")
        for _ in $(seq 50); do
            if ip netns exec "$ns_c" timeout 2 turnutils_stunclient -p $v_port $v_listen >/dev/null 2>&1; then
                return 0
            fi
            kill -0 "$veth_pid" 2>/dev/null || break
            sleep 0.1
        done
        echo "bench: $name did not come up in namespace $ns_s" >&2
        cat "$work/veth_$name.log" >&2 2>/dev/null || true
        exit 1
    }
    veth_stop() {
        kill "$veth_pid" 2>/dev/null || true
        wait "$veth_pid" 2>/dev/null || true
    }
    # rturn's own count of what the kernel relayed, of all it relayed (/metrics).
    offload_share() {
        ip netns exec "$ns_s" curl -s http://127.0.0.1:8080/metrics | awk '
            /^rturn_offload_packets_total/ { k += $NF } /^rturn_relayed_packets_total/ { r += $NF }
            END { if (r > 0) printf "%.1f\n", 100 * k / r; else print "n/a" }'
    }
    ip netns exec "$ns_p" "$echo_peer" -L $v_peer -p $v_peer_port >/dev/null 2>&1 &
    veth_peer_pid=$!
    pids+=("$veth_peer_pid")
    veth_bench() { # rturn-bench in the client namespace, the echo peer in the peer namespace
        ip netns exec "$ns_c" "$bin/rturn-bench" "$1" --server "$v_listen:$v_port" --user bench \
            --pass "$v_pass" --peer-ip $v_peer --peer-netns "$ns_p" "${@:2}" 2>>"$work/veth_rate.log" | tail -1
    }
    declare -A veth_offload=()
    veth_rate_servers=(rturn "${coturns[@]}")
    # --smoke proves the topology and the harness work, with rturn alone (seconds).
    if [ "$smoke" -eq 1 ]; then
        veth_servers=(rturn)
        veth_rate_servers=(rturn)
    fi
    for _ in $(seq "$rounds"); do
        for server in "${veth_servers[@]}"; do
            veth_start "$server"
            uclient_round "$veth_pid" "$veth_peer_pid" ip netns exec "$ns_c" "$uclient" \
                "${uclient_args[@]}" -w "$v_pass" -p $v_port -e $v_peer -r $v_peer_port $v_listen \
                >>"$work/veth_relay_$server"
            case $server in
                rturn*)
                    offload_share >>"$work/veth_share_$server"
                    veth_offload[$server]=$(offload_state http://127.0.0.1:8080/healthz "$ns_s")
                    ;;
            esac
            if [ "$server" != rturn_off ]; then
                for flows in 1 "$many_flows"; do
                    veth_bench max-rate --flows "$flows" "${max_rate_args[@]}" \
                        >>"$work/veth_max_${flows}_$server" || echo '{}' >>"$work/veth_max_${flows}_$server"
                done
            fi
            veth_stop
        done
    done
    for server in "${veth_servers[@]}"; do
        f="$work/veth_relay_$server"
        result[veth_cpu_$server]=$(cut -d' ' -f1 "$f" | median)
        result[veth_loss_$server]=$(cut -d' ' -f2 "$f" | median)
        result[veth_all_$server]=$(cut -d' ' -f4 "$f" | median)
    done
    for server in rturn rturn_off; do
        [ -f "$work/veth_share_$server" ] && result[veth_share_$server]=$(median <"$work/veth_share_$server")
    done
    # Rows for rturn with the offload off: its figures in the rturn column, the same coturns.
    if [ -n "${result[veth_cpu_rturn_off]:-}" ]; then
        for key in cpu all loss; do
            result[veth_off_${key}_rturn]=${result[veth_${key}_rturn_off]}
            for c in "${coturns[@]}"; do result[veth_off_${key}_$c]=${result[veth_${key}_$c]}; done
        done
    fi
    for flows in 1 "$many_flows"; do
        for server in "${veth_rate_servers[@]}"; do
            f="$work/veth_max_${flows}_$server"
            result[veth_max_${flows}_${server}]=$(field max_rate <"$f" | median)
            for q in p50 p99 p999; do
                result[veth_lat_${flows}_${server}_$q]=$(field "${q}_ms" <"$f" | median)
            done
            gen=$(text_field limited_by <"$f" | grep -c generator || true)
            result[veth_max_${flows}_${server}_mark]=""
            if [ "$gen" -gt $((rounds / 2)) ]; then result[veth_max_${flows}_${server}_mark]="*"; fi
        done
    done
    # Latency with every server at one rate: half the lowest coturn's highest.
    for flows in 1 "$many_flows"; do
        result[veth_common_${flows}_rate]=$(for c in "${coturns[@]}"; do echo "${result[veth_max_${flows}_$c]:-}"; done |
            awk '$1 + 0 > 0 { r = int($1 / 2); if (low == "" || r < low) low = r }
                END { print (low > 0 ? low : 1000) }')
    done
    for _ in $(seq "$rounds"); do
        for server in "${veth_rate_servers[@]}"; do
            veth_start "$server"
            for flows in 1 "$many_flows"; do
                veth_bench relay-rate --flows "$flows" --rate "${result[veth_common_${flows}_rate]}" \
                    --batch 4 --duration "${same_rate_secs}s" >>"$work/veth_same_${flows}_$server" ||
                    echo '{}' >>"$work/veth_same_${flows}_$server"
            done
            veth_stop
        done
    done
    for flows in 1 "$many_flows"; do
        for server in "${veth_rate_servers[@]}"; do
            for q in p50 p99 p999; do
                result[veth_same_${flows}_${server}_$q]=$(field "${q}_ms" <"$work/veth_same_${flows}_$server" | median)
            done
        done
    done
    kill "$veth_peer_pid" 2>/dev/null || true
    wait "$veth_peer_pid" 2>/dev/null || true
    for ns in "${netns_made[@]}"; do ip netns del "$ns"; done
    netns_made=()
    lap veth
fi

# ---- the table: one column per server, then rturn's ratio to each coturn ----
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'; }
# val KEY SERVER: result[KEY with @ replaced by SERVER]
val() { local k=${1//@/$2}; echo "${result[$k]:-n/a}"; }
ratios() { # key: "| r/c1 | r/c2" for rturn's value over each coturn's
    local c
    for c in "${coturns[@]}"; do printf ' | %s' "$(ratio "$(val "$1" rturn)" "$(val "$1" "$c")")"; done
}
row() { # figure unit key target
    local s
    printf '| %s' "$1"
    for s in "${servers[@]}"; do printf ' | %s' "$(val "$3" "$s")${2:+ $2}"; done
    printf '%s | %s |\n' "$(ratios "$3")" "$4"
}
rate_row() { # flows label [key prefix, row prefix]: the max-rate row, marked where the generator was the limit
    local s
    printf '| %s' "${4:-}highest loss-free relay rate, $2 (packets/s each way)"
    for s in "${servers[@]}"; do printf ' | %s' "$(val "${3:-}max_$1_@" "$s") /s${result[${3:-}max_$1_${s}_mark]:-}"; done
    printf '%s | %s |\n' "$(ratios "${3:-}max_$1_@")" "≥ 2"
}
quantiles_row() { # figure key (@ = server, + _p50 … _p999) target: p50 / p99 / p99.9; the ratio is of p99
    local s
    printf '| %s' "$1"
    for s in "${servers[@]}"; do
        printf ' | %s / %s / %s ms' "$(val "$2_p50" "$s")" "$(val "$2_p99" "$s")" "$(val "$2_p999" "$s")"
    done
    printf '%s | %s |\n' "$(ratios "$2_p99")" "$3"
}
only_row() { # figure rturn-cell target: a figure the coturns have no counterpart for
    printf '| %s | %s' "$1" "$2"
    for _ in $(seq $((${#coturns[@]} * 2))); do printf ' | —'; done
    printf ' | %s |\n' "$3"
}
table=$(
    printf '| figure'
    for s in "${servers[@]}"; do printf ' | %s' "${label[$s]}"; done
    for c in "${coturns[@]}"; do printf ' | rturn / %s' "${label[$c]#coturn }"; done
    printf ' | target (ratio) |\n|---'
    for _ in $(seq $((${#servers[@]} + ${#coturns[@]} + 1))); do printf '|---'; done
    printf '|\n'
    # Per relayed packet (message, over RFC 6062's TCP relays), each figure for every uclient
    # mode measured; no instructions row for TCP relays.
    for figure in "server CPU:µs:cpu" "machine-wide CPU (server + uclient + echo peer + ksoftirqd):µs:all" \
        "server instructions::ins" "loss at the fixed rate:%:loss"; do
        IFS=: read -r name unit key <<<"$figure"
        for mode in channel send tcp tcp-relay; do
            want "$mode" || continue
            case $key/$mode in
                loss/send | ins/tcp-relay) continue ;;
                cpu/channel) target="≤ 0.5" ;;
                cpu/send) target="≤ 0.6" ;;
                cpu/tcp | all/tcp) target="≤ 1" ;;
                loss/*) target="0" ;;
                *) target="—" ;;
            esac
            per="per relayed packet" fig=$name
            case $mode in
                channel) what="UDP ChannelData" ;;
                send) what="UDP Send indication" ;;
                tcp) what="TCP ChannelData" ;;
                tcp-relay)
                    what="RFC 6062 TCP relay (uclient -T)"
                    per="per relayed message"
                    # The clients are each other's peers: no echo peer runs.
                    fig=${name/ + echo peer/}
                    ;;
            esac
            if [ "$key" = loss ]; then
                row "$fig, $what" "$unit" "relay_${mode//-/_}_@_$key" "$target"
            else
                row "$fig $per, $what" "$unit" "relay_${mode//-/_}_@_$key" "$target"
            fi
        done
    done
    if want alloc; then
        row "allocations per second (64 clients, full cycle)" "/s" "alloc_@_rate" "≥ 5"
        row "server CPU per allocation cycle (4 requests, 1 socket bound and closed)" "µs" "alloc_@_cpu" "—"
        row "allocation cycle p99" "ms" "alloc_@_p99" "—"
    fi
    if want memory; then
        row "RSS per allocation (${result[mem_rturn_n]} held)" "B" "mem_@" "≤ 0.25"
    fi
    if want alloc; then
        row "STUN Binding requests per second" "/s" "binding_@_rate" "≥ 1.5"
        row "server CPU per Binding request" "µs" "binding_@_cpu" "—"
        row "server instructions per Binding request" "" "binding_@_ins" "—"
    fi
    if want max-rate; then
        rate_row 1 "1 flow"
        rate_row "$many_flows" "$many_flows flows"
        for flows in 1 "$many_flows"; do
            what="1 flow"
            [ "$flows" = 1 ] || what="$flows flows"
            quantiles_row "one-way latency at 50 % of that rate, $what, p50 / p99 / p99.9" \
                "lat_${flows}_@" "p99 ≤ 1"
        done
        for flows in 1 "$many_flows"; do
            what="1 flow"
            [ "$flows" = 1 ] || what="$flows flows"
            quantiles_row "one-way latency, all at ${result[common_${flows}_rate]}/s (half the lowest coturn's highest), $what, p50 / p99 / p99.9" \
                "same_${flows}_@" "p99 ≤ 1"
        done
    fi
    if want veth && [ -z "$veth_ok" ]; then
        v="veth topology:"
        row "$v server CPU per relayed packet, UDP ChannelData" µs "veth_cpu_@" "≤ 0.2"
        row "$v machine-wide CPU (server + uclient + echo peer + ksoftirqd) per relayed packet, UDP ChannelData" \
            µs "veth_all_@" "≤ 0.6"
        row "$v loss at the fixed rate, UDP ChannelData" % "veth_loss_@" 0
        if [ -n "${result[veth_off_cpu_rturn]:-}" ]; then
            row "$v rturn's offload off: server CPU per relayed packet, UDP ChannelData" µs "veth_off_cpu_@" "—"
            row "$v rturn's offload off: machine-wide CPU per relayed packet, UDP ChannelData" \
                µs "veth_off_all_@" "—"
            row "$v rturn's offload off: loss at the fixed rate, UDP ChannelData" % "veth_off_loss_@" 0
        fi
        only_row "$v relayed packets the kernel relayed by itself (rturn's /metrics), offload on / off" \
            "${result[veth_share_rturn]:-n/a} % / ${result[veth_share_rturn_off]:-—} %" "—"
        rate_row 1 "1 flow" veth_ "$v "
        rate_row "$many_flows" "$many_flows flows" veth_ "$v "
        for flows in 1 "$many_flows"; do
            what="1 flow"
            [ "$flows" = 1 ] || what="$flows flows"
            quantiles_row "$v one-way latency at 50 % of that rate, $what, p50 / p99 / p99.9" \
                "veth_lat_${flows}_@" "p99 ≤ 1"
        done
        for flows in 1 "$many_flows"; do
            what="1 flow"
            [ "$flows" = 1 ] || what="$flows flows"
            quantiles_row "$v one-way latency, all at ${result[veth_common_${flows}_rate]}/s (half the lowest coturn's highest), $what, p50 / p99 / p99.9" \
                "veth_same_${flows}_@" "p99 ≤ 1"
        done
    fi
    if want signal; then
        only_row "signaling relay latency p50 / p99 ($signal_clients clients in $signal_rooms rooms)" \
            "${result[signal_p50_ms]} / ${result[signal_p99_ms]} ms" "p99 < 10 ms"
        only_row "server RSS with $signal_clients signaling clients" "${result[signal_rss_mb]} MB" "< 200 MB"
        only_row "signaling messages lost / errors" "${result[signal_lost]} / ${result[signal_errors]}" "0 / 0"
    fi
    if want cluster; then
        only_row "signaling relay latency p50 / p99 across 2 nodes through Redis (same load, rooms split)" \
            "${result[cluster_p50_ms]} / ${result[cluster_p99_ms]} ms" "p99 < 10 ms"
        only_row "RSS of the 2 nodes together / of Redis, after the cluster runs" \
            "${result[cluster_rss_mb]} MB / ${result[cluster_redis_mb]} MB" "—"
        only_row "cross-node signaling messages lost / errors" "${result[cluster_lost]} / ${result[cluster_errors]}" "0 / 0"
        only_row "Redis CPU for all cluster rounds (node a relayed ${result[cluster_relayed]} messages through it)" \
            "${result[cluster_redis_cpu_s]} s" "—"
    fi
)
echo "$table"
grep -hs 'probe\|joined' "$work/max_rate.log" "$work/signal.log" >&2 || true
[ -z "$c417_missing" ] || echo "bench: coturn 4.17.1 columns left out: $c417_missing" >&2
echo "bench: took $((SECONDS / 60)) min $((SECONDS % 60)) s" >&2
[ ! -s "$work/veth_rate.log" ] || grep -v 'probe\|joined' "$work/veth_rate.log" >&2 || true

# Every rturn cell of the table must be measured (instructions only where perf counts them).
if echo "$table" | awk -F'|' 'NR > 2 && $2 !~ /instructions/ && $3 ~ /n\/a/ { bad = 1 } END { exit !bad }'; then
    echo "bench: some rturn figure was not measured" >&2
    exit 1
fi
[ "$smoke" -eq 0 ] && [ -z "$only" ] || exit 0

# The analysis written by hand below the table survives a re-run.
notes=$(sed -n '/^## Where rturn stands/,$p' BENCHMARKS.md 2>/dev/null || true)
names=$(for s in "${servers[@]}"; do printf '%s, ' "${label[$s]}"; done)
names=${names%, }
{
    echo "# Benchmarks"
    echo
    echo "Produced by \`scripts/bench.sh\` on $(date -u +%Y-%m-%d). Machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1),"
    echo "$(nproc) cores, Linux $(uname -r). Servers: $names."
    if [ -n "$c417" ]; then
        echo "coturn 4.17.1 was built from its release source by \`../shared/anchors/build-coturn.sh\`;"
        echo "the other coturn is Debian's package."
    else
        echo "coturn 4.17.1 was left out of this run: $c417_missing."
    fi
    echo
    echo "How to run: \`scripts/bench.sh\` (the full run, as root for the veth rows, which rewrites the"
    echo "part of this file above \"Where rturn stands\"); \`scripts/bench.sh --smoke\` (seconds; CI);"
    echo "\`scripts/bench.sh --only relay\` (or \`channel,tcp\`, \`tcp-relay\`, \`max-rate\`, \`alloc\`, \`memory\`,"
    echo "\`signal\`, \`cluster\`, \`veth\`: those rows only, this file untouched); \`RTURN_OFFLOAD=off\` runs rturn without"
    echo "its kernel fast path. coturn 4.17.1 comes from \`COTURN_417=PREFIX\`, else"
    echo "\`target/coturn-4.17.1\`, built there once when \`../shared/anchors/build-coturn.sh\` exists;"
    echo "without it the run leaves its columns out and says why."
    echo
    echo "The servers ran side by side on loopback with $threads data-path threads, the same realm,"
    echo "user, port-range size, loopback peers allowed and logging off; rounds alternated"
    echo "($names, rturn, ...), $rounds each, and each cell is the median. Server CPU is"
    echo "user + system time of the server process (all threads) from /proc/PID/stat, divided by"
    echo "the packets it relayed (both directions) or the requests it answered; machine-wide CPU"
    echo "adds the load client's (\`turnutils_uclient\`, all its threads) and the echo peer's"
    echo "(\`turnutils_peer\`; none in the TCP relay rows, whose clients are each other's peers) and"
    echo "the kernel's softirq threads' (\`ksoftirqd/N\`) to the server's, for"
    echo "the same packets. The load generators share the same 2 cores. Lower is better for CPU and"
    echo "memory, higher for rates."
    echo
    echo "rturn ran with \`[relay] offload = \"${RTURN_OFFLOAD:-auto}\"\` (the default is \"auto\"); its kernel fast path on"
    echo "loopback, as its /healthz said: $rturn_offload. It relays bound UDP channels in the kernel: the"
    echo "UDP ChannelData rows (uclient, \`rturn-bench\`). Send indications, TCP and everything else"
    echo "stay in user space. The kernel does that relaying in the softirq of the process whose packet"
    echo "it is: on loopback and between veths the packet's sender, whose system time it is counted"
    echo "in (or ksoftirqd, when the kernel defers the work), so the server's own CPU flatters the"
    echo "offload and the machine-wide rows are the ones to compare. On loopback rturn's program"
    echo "stays attached to \`lo\` while the coturns run, and looks up (and passes on) their packets"
    echo "too; in the veth topology every server runs alone."
    echo
    echo "$table"
    echo
    echo "Commands (loopback): \`$(basename "$uclient") -m $clients -n $messages -l 120 -z $interval -c -X\`"
    echo "(ChannelData; \`-s\` Send indications; \`-t\` TCP) against \`turnutils_peer\`, both"
    if [ -n "$c417" ]; then
        echo "coturn 4.17.1's for every server (it binds channels 0x4000-0x4FFF only, as 4.17 requires);"
    else
        echo "Debian's;"
    fi
    echo "\`$(basename "$uclient") -T -m $tcp_relay_clients -n $tcp_relay_messages -l 120 -z $interval -X\` (RFC 6062 TCP relay"
    echo "allocations, on by default in every server: rturn's \`[relay] tcp-allocations\`, coturn without"
    echo "\`--no-tcp-relay\`; each client allocates over a TCP control"
    echo "connection and Connects to every other client's relayed address, $((tcp_relay_clients * (tcp_relay_clients - 1))) connections, each"
    echo "with its data connection; each message goes out of its sender's allocation and in through"
    echo "its receiver's, relayed twice and counted twice, as an echoed packet is);"
    echo "\`rturn-bench alloc-rate --clients 64\` (401 → Allocate → ChannelBind → Refresh 0),"
    echo "\`rturn-bench binding-rate --clients 32\`, \`rturn-bench hold --count $hold\` (then every"
    echo "server restarts),"
    echo "\`rturn-bench max-rate --flows 1|$many_flows ${max_rate_args[*]}\`,"
    echo "\`rturn-bench relay-rate --flows 1|$many_flows --rate R --batch 4\` (every server at R, half"
    echo "the lowest coturn's highest rate),"
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
    if want veth && [ -z "$veth_ok" ]; then
        echo "Veth topology (the rows marked so): three network namespaces the run creates and"
        echo "deletes, client (10.183.1.2) | server (10.183.1.1 and 10.183.2.1, IP forwarding on) |"
        echo "peer (10.183.2.2), joined by two veth pairs, the routes through the server namespace."
        echo "Each server runs alone in the server namespace, started afresh for each of its rounds"
        echo "(alternating, $rounds each): listening on 10.183.1.1:3478 (UDP), relaying from 10.183.2.1,"
        echo "the peer allowed (\`allowed-peer-ip\`, coturn's \`--allowed-peer-ip\`; 10.183.2.2 is"
        echo "private), the same realm and user with a 19-character password (rturn wants 16 or more"
        echo "off loopback), $threads data-path threads. rturn runs once with \`offload = \"${RTURN_OFFLOAD:-auto}\"\`"
        echo "(/healthz: ${veth_offload[rturn]:-not measured}) and, in the \"offload off\" rows, once with"
        echo "\`offload = \"off\"\` (${veth_offload[rturn_off]:-not run}); the share row is what rturn's /metrics counted"
        echo "(\`rturn_offload_packets_total\` of \`rturn_relayed_packets_total\`). The uclient command"
        echo "is the loopback ChannelData row's, run in the client namespace with \`turnutils_peer\` in"
        echo "the peer namespace: \`ip netns exec CLIENT $(basename "$uclient") -m $clients -n $messages -l 120 -z $interval -c -X -e 10.183.2.2 -r 3480 10.183.1.1\`."
        echo "\`rturn-bench max-rate\` and \`relay-rate\` (same options as on loopback) run in the client"
        echo "namespace with \`--peer-ip 10.183.2.2 --peer-netns PEER\`: the echo peer's socket is bound"
        echo "in the peer namespace, its packets cross the server namespace both ways. The offload"
        echo "there redirects each packet from one veth's ingress to the other's egress; its softirq"
        echo "work is counted in the uclient's CPU (client → peer) and the echo peer's (peer → client)."
        echo
    fi
    echo "The full run took $((SECONDS / 60)) min $((SECONDS % 60)) s."
    if [ -n "$notes" ]; then
        echo
        echo "$notes"
    fi
} >BENCHMARKS.md
echo "wrote BENCHMARKS.md"
