#!/bin/bash
# redis.sh: a private redis-server (Debian package redis-server) loaded with
# a deterministic data set and driven by redis-benchmark over loopback.
#
# usage: redis.sh [requests [keys]]
#   requests  redis-benchmark requests per test (-n; default 25000)
#   keys      size of the deterministic data set (default 25000)
#
# Steps:
#   1. start redis-server on 127.0.0.1 and a free port (16379 + random,
#      checked), no persistence (--save '' --appendonly no), files in a
#      temporary directory; nothing on port 6379 and no system service is
#      touched;
#   2. load a data set with redis-cli --pipe: `keys` strings of 16..256
#      bytes (one in eight up to 2 KiB), lists, hashes and sorted sets built from them, then delete a
#      third of the strings and append to another third (so the server's
#      heap holds a mix of sizes with holes in it);
#   3. redis-benchmark -q -n requests -c 20 -t set,get,lpush,lpop,incr -d 64
#      -P 8 (bounded request count, loopback only);
#   4. read the server's VmHWM, query a fixed set of values (DBSIZE, lengths,
#      sample strings, ranges, the benchmark's INCR counter, which must equal
#      `requests`), shut the server down with SHUTDOWN NOSAVE.
#
# The allocator under test comes in BENCH_PRELOAD and is preloaded into
# redis-server only (the clients run plain).  Debian links redis-server
# against libjemalloc, so with an empty BENCH_PRELOAD ("glibc") the script
# preloads glibc's own libc.so.6 instead: its malloc then comes before
# jemalloc's in symbol lookup and the server really runs on glibc malloc.
# (redis also calls mallctl for statistics; that still reaches the linked
# jemalloc, which is harmless: it only reports on its own, unused heap.)
#
# stdout: "redis requests=N keys=K dbsize=D counter=C checksum=<md5 of the
# query results>", which depends only on the arguments, never on throughput
# (redis-benchmark's own output goes to stderr).  stderr also gets
# vmhwm_kib=N of redis-server.  A trap stops the server on every exit path.
set -eu -o pipefail
export LC_ALL=C

requests=${1:-25000}
keys=${2:-25000}
case "$requests$keys" in
    *[!0-9]*|'') echo "usage: redis.sh [requests [keys]]" >&2; exit 2 ;;
esac
if [ "$requests" -lt 1 ] || [ "$keys" -lt 1000 ]; then
    echo "redis.sh: need requests >= 1 and keys >= 1000" >&2
    exit 2
fi

server=/usr/bin/redis-server
cli=/usr/bin/redis-cli
bench=/usr/bin/redis-benchmark

have_all() { [ -x "$server" ] && [ -x "$cli" ] && [ -x "$bench" ]; }

if ! have_all; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "redis.sh: installing redis-server with apt-get" >&2
        # Keep the package from starting its system service (Debian's
        # policy-rc.d convention), unless a policy is already in place.
        made_policy=
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod 755 /usr/sbin/policy-rc.d
            made_policy=1
        fi
        rc=0
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >&2 ||
            { apt-get update -q >&2 &&
              DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >&2; } ||
            rc=$?
        if [ -n "$made_policy" ]; then
            rm -f /usr/sbin/policy-rc.d
        fi
        [ "$rc" -eq 0 ] || echo "redis.sh: apt-get failed ($rc)" >&2
    fi
    if ! have_all; then
        echo "redis.sh: redis-server, redis-cli or redis-benchmark missing;" \
             "install the Debian package redis-server (apt-get install" \
             "redis-server, as root)" >&2
        exit 1
    fi
fi

if [ -n "${BENCH_PRELOAD:-}" ]; then
    preload=$BENCH_PRELOAD
else
    preload=$(ldconfig -p 2>/dev/null | awk '$1 == "libc.so.6" && /x86-64/ { print $NF; exit }')
    [ -n "$preload" ] || preload=/lib/x86_64-linux-gnu/libc.so.6
fi
unset LD_PRELOAD

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-redis.XXXXXX")
pid=
port=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        if [ -n "$port" ]; then
            timeout --foreground 5 "$cli" -h 127.0.0.1 -p "$port" shutdown nosave \
                >/dev/null 2>&1 || true
        fi
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            sleep 0.5
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

rcli() { timeout --foreground 60 "$cli" -h 127.0.0.1 -p "$port" "$@"; }

port_busy() { (exec 9<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---- 1. start the server ------------------------------------------------------
started=
for attempt in 1 2 3 4 5 6 7 8; do
    port=$((16379 + (RANDOM % 20000)))
    port_busy "$port" && continue
    env "LD_PRELOAD=$preload" "$server" \
        --bind 127.0.0.1 --port "$port" --protected-mode yes \
        --save '' --appendonly no --dir "$tmp" --dbfilename unused.rdb \
        --logfile "$tmp/server.log" --daemonize no --databases 1 \
        </dev/null >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 200); do
        if ! kill -0 "$pid" 2>/dev/null; then
            break
        fi
        if [ "$(timeout --foreground 2 "$cli" -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ]; then
            started=1
            break
        fi
        sleep 0.05
    done
    [ -n "$started" ] && break
    # did not come up (port taken in the meantime?): stop it, try again
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=
done
if [ -z "$started" ]; then
    echo "redis.sh: redis-server did not start; its log:" >&2
    tail -20 "$tmp/server.log" >&2 2>/dev/null || true
    exit 1
fi
want=$(readlink -f "$preload")
if ! grep -qF "$want" "/proc/$pid/maps"; then
    echo "redis.sh: $preload is not mapped into redis-server" >&2
    exit 1
fi

# ---- 2. deterministic data set ------------------------------------------------
# RESP commands from awk, with a Park-Miller LCG (exact in awk's doubles),
# piped straight into redis-cli --pipe.  The long steps run in the
# background with `wait`, which a signal interrupts (a foreground command
# would hold the trap back until it ends); stopping the server in the trap
# makes the clients exit.
load_rc=0
awk -v n="$keys" '
function cmd3(a, b, c) {
    printf "*3\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n",
           length(a), a, length(b), b, length(c), c
}
function cmd4(a, b, c, d) {
    printf "*4\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n",
           length(a), a, length(b), b, length(c), c, length(d), d
}
function rnd() { x = (x * 16807) % 2147483647; return x }
BEGIN {
    x = 99991
    alpha = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    big = alpha
    while (length(big) < 4096) big = big big
    for (i = 1; i <= n; i++) {
        r = rnd()
        len = 16 + (r % 8 == 0 ? r % 2033 : r % 241)
        cmd3("SET", "s:" i, substr(big, 1 + r % 62, len))
        cmd3("RPUSH", "l:" (i % 97), "item-" i "-" (r % 1000))
        cmd4("HSET", "h:" (i % 251), "f" i, r % 100000)
        cmd4("ZADD", "z:" (i % 31), r % 100000, "m" i)
    }
    for (i = 1; i <= n; i += 3) printf "*2\r\n$3\r\nDEL\r\n$%d\r\ns:%d\r\n", length(i) + 2, i
    for (i = 2; i <= n; i += 3) cmd3("APPEND", "s:" i, "+tail-" i)
    for (i = 1; i <= n; i += 5) cmd3("INCRBY", "c:" (i % 113), i)
}' | rcli --pipe >"$tmp/load.out" 2>&1 &
wait $! || load_rc=$?
if [ "$load_rc" -ne 0 ]; then
    echo "redis.sh: loading the data set failed:" >&2
    tail -5 "$tmp/load.out" >&2
    exit 1
fi
if ! grep -q 'errors: 0,' "$tmp/load.out"; then
    echo "redis.sh: errors while loading the data set:" >&2
    tail -5 "$tmp/load.out" >&2
    exit 1
fi

# ---- 3. redis-benchmark ------------------------------------------------------------
bench_rc=0
timeout --foreground 300 "$bench" -h 127.0.0.1 -p "$port" -q -n "$requests" -c 20 \
    -t set,get,lpush,lpop,incr -d 64 -P 8 >"$tmp/bench.out" 2>&1 &
wait $! || bench_rc=$?
if [ "$bench_rc" -ne 0 ]; then
    echo "redis.sh: redis-benchmark failed:" >&2
    tail -5 "$tmp/bench.out" >&2
    exit 1
fi
tr '\r' '\n' <"$tmp/bench.out" | grep 'requests per second' |
    sed 's/^/redis-benchmark: /' >&2 || true

# ---- 4. peak RSS, fixed queries, shutdown --------------------------------------
hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
if [ -z "$hwm" ]; then
    echo "redis.sh: could not read VmHWM of redis-server" >&2
    exit 1
fi

{
    echo "DBSIZE"
    echo "GET counter:__rand_int__"
    echo "GET key:__rand_int__"
    echo "EXISTS mylist"
    for i in 1 2 3 4 5 6 7 8 9 10 1000 "$keys"; do
        echo "STRLEN s:$i"
        echo "GET s:$i"
    done
    for i in 0 1 50 96; do
        echo "LLEN l:$i"
        echo "LRANGE l:$i 0 4"
        echo "LRANGE l:$i -3 -1"
    done
    for i in 0 7 250; do
        echo "HLEN h:$i"
        echo "HGET h:$i f$((i + 251))"
    done
    for i in 0 3 30; do
        echo "ZCARD z:$i"
        echo "ZRANGE z:$i 0 4 WITHSCORES"
        echo "ZREVRANGE z:$i 0 2 WITHSCORES"
    done
    for i in 0 1 112; do
        echo "GET c:$i"
    done
} >"$tmp/queries"
if ! rcli <"$tmp/queries" >"$tmp/result" 2>"$tmp/result.err" ||
        [ -s "$tmp/result.err" ] || grep -q '^ERR' "$tmp/result"; then
    echo "redis.sh: queries failed:" >&2
    cat "$tmp/result.err" >&2
    grep '^ERR' "$tmp/result" >&2 || true
    exit 1
fi

rcli shutdown nosave >/dev/null 2>&1 || true
rc=0
for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
done
wait "$pid" || rc=$?
if kill -0 "$pid" 2>/dev/null; then
    echo "redis.sh: redis-server did not shut down" >&2
    exit 1
fi
pid=
if [ "$rc" -ne 0 ]; then
    echo "redis.sh: redis-server exited with status $rc; its log:" >&2
    tail -20 "$tmp/server.log" >&2
    exit 1
fi

# Checks: the INCR counter equals the request count, the list test left
# mylist empty (so it is gone), DBSIZE is what the data set implies.
dbsize=$(sed -n 1p "$tmp/result")
counter=$(sed -n 2p "$tmp/result")
mylist=$(sed -n 4p "$tmp/result")
deleted=$(( (keys + 2) / 3 ))
# keys >= 1000: every list, hash, sorted set and counter key exists
want_db=$(( keys - deleted + 97 + 251 + 31 + 113 + 2 ))
if [ "$counter" != "$requests" ] || [ "$mylist" != 0 ] ||
        [ "$dbsize" != "$want_db" ]; then
    echo "redis.sh: wrong results: counter=$counter (want $requests)," \
         "mylist exists=$mylist (want 0), dbsize=$dbsize (want $want_db)" >&2
    exit 1
fi

sum=$(md5sum <"$tmp/result" | cut -c1-16)
echo "redis requests=$requests keys=$keys dbsize=$dbsize counter=$counter checksum=$sum"
echo "vmhwm_kib=$hwm" >&2
