#!/usr/bin/env bash
# perf/run.sh: side-by-side gRPC load against real etcd and cetcd.
#
# A benchmark, not a test: run it by hand on an otherwise idle machine, after
# `ninja -C build`. It builds nothing. It starts real etcd, then cetcd, one
# after the other, each on loopback with a fresh data dir (both under
# $PERF_TMPDIR, so the same filesystem), and drives the same h2load loads at
# both:
#   put   1x1   KV/Put of a 256-byte value, 1 connection x 1 stream
#   put   4x64  the same, 4 connections x 64 concurrent streams each
#   range 1x1   KV/Range of one key (256-byte value), 1 x 1
#   range 4x64  the same, 4 x 64
# Every run lasts PERF_DURATION (after PERF_WARMUP of warm-up), so the
# request count is whatever the server manages.
#
# Then, on a second fresh server of each kind ("big" part), 1,000,000 keys
# (PERF_KEYS) of 64 bytes with 256-byte values are loaded (Txns of 192 puts,
# PERF_LOAD_JOBS of them in flight, sent by grpcraw; both servers run with
# --max-txn-ops 1000), and it measures:
#   RSS         VmRSS of the server after the load (and 2 s to settle);
#   restart     SIGTERM, start again, time until the first Range of a
#               loaded key is answered with its value (grpcraw, polled);
#   get1M 4x64  KV/Range of one key among the 1M, 4 x 64;
#   prefix 4x64 KV/Range of a 1000-key prefix (~330 KB per response), 4 x 64;
#   cas 4x64    KV/Txn: if value(perf/cas) = V then put perf/cas V, 4 x 64.
# The big part's table gives each ratio with its target (cetcd RSS <= 0.6x
# etcd's, restart <= 0.5x, throughput >= 3x).
#
# Then ("cluster" part) a 3-member loopback cluster of each kind, started the
# way etcd's clustering guide does (--name, --initial-advertise-peer-urls,
# --listen-peer-urls, --initial-cluster, --initial-cluster-state new, a
# token), both with --election-timeout 1000 --heartbeat-interval 100 (etcd's
# defaults; PERF_ELECTION_MS, PERF_HEARTBEAT_MS). The leader is the member
# all three name in `etcdctl endpoint status -w json` (Status.leader =
# its header.member_id); then:
#   put 1x1, put 4x64   the basic part's Put loads (same body, same checks),
#                       sent to the leader;
#   failover            the members caught up (same revision), kill -9 of the
#                       leader; ms until a Put through a survivor succeeds
#                       (grpcraw Puts, one started every 50 ms, alternating
#                       between the survivors, each bounded by 2 s) and
#                       until both survivors name the same new leader
#                       (etcdctl endpoint status, 1 s timeouts, polled);
#                       then both survivors must hold the Put and be past
#                       the revision before the kill. The killed member is
#                       restarted and it is repeated: PERF_FAILOVERS kills
#                       (default 3), the table gives the means.
# Targets: cetcd >= 2x etcd's put 4x64 req/s, <= 0.6x its put 1x1 mean
# latency. Every wait is bounded (a failover by 30 election timeouts).
#
# h2load counts every HTTP 200 as a success, and a gRPC error is an HTTP 200
# with a non-zero grpc-status trailer. So each run is also checked:
#   - h2load: no failed/errored/timed-out requests, and the DATA bytes per
#     request are at least a real response's size (an error reply carries no
#     message, only trailers);
#   - Put and cas runs: via etcdctl, the revision advanced by at least the
#     number of requests h2load counted as succeeded (a cas whose compare
#     failed writes nothing), and perf/put (perf/cas) holds the 256-byte value
#     at the current revision.
# A big part whose load fails (any Txn refused, e.g. UNIMPLEMENTED, or not
# all keys there), or whose restart does not answer, is INVALID too.
# A run that fails a check is marked "INVALID" in the table and the script
# exits 1.
#
# Reading the table:
#   req/s       throughput over the measured duration (higher is better);
#   ratio       cetcd req/s / etcd req/s: above 1 means cetcd is faster;
#   mean / max  h2load's "time for request" (send of the request to end of
#               the response), per request, in microseconds;
#   lat ratio   cetcd mean / etcd mean: below 1 means cetcd answers faster.
# 1x1 numbers are latency-bound (a Put waits for one fdatasync), 4x64 are
# throughput-bound (many Puts should share one fdatasync; reads should scale
# with cores). h2load runs on the same machine and takes CPU too: on a
# 2-core box, treat 4x64 numbers as a comparison, not an absolute capacity.
# Run it two or three times; single runs on a VM vary by 10-20%.
#
# Env:
#   CETCD_BIN        server binary (default build/src/server/cetcd)
#   ETCD_BIN         real etcd (default etcd), ETCDCTL_BIN (default etcdctl)
#   GRPCRAW_BIN      the big part's loader and prober, the cluster part's
#                    failover Puts (default
#                    build/tests/e2e/grpcraw, built by ninja -C build)
#   PERF_DURATION    seconds per run (default 12)
#   PERF_WARMUP      warm-up seconds before each run (default 1)
#   PERF_TMPDIR      where the data dirs go (default /tmp)
#   PERF_CETCD_FLAGS extra flags for cetcd (e.g. "--shards 2")
#   PERF_ETCD_FLAGS  extra flags for etcd (default --quota-backend-bytes=8589934592:
#                    a 12 s put 4x64 run writes ~500k revisions, ~0.7 GB on disk)
#   PERF_ONLY        "etcd" or "cetcd": run one server only
#   PERF_PARTS       any of "basic big cluster" (the default: all three)
#   PERF_KEYS        keys loaded in the big part (default 1000000)
#   PERF_LOAD_JOBS   loading Txns in flight (default 4)
#   PERF_FAILOVERS   leader kills per cluster (default 3)
#   PERF_ELECTION_MS, PERF_HEARTBEAT_MS  the clusters' --election-timeout and
#                    --heartbeat-interval (default 1000, 100), for both kinds
#   E2E_CETCD_IS_ETCD=1  the "cetcd" side runs real etcd too (to check this
#                    script, or the noise between two identical servers)
#   E2E_KEEP=1       keep the temp dir (data dirs, logs, raw h2load outputs)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export TMPDIR="${PERF_TMPDIR:-/tmp}"
# shellcheck source=../tests/e2e/lib.sh
. "$ROOT/tests/e2e/lib.sh"

DURATION="${PERF_DURATION:-12}"
WARMUP="${PERF_WARMUP:-1}"
VALUE_BYTES=256
LOADS=("put 1 1" "put 4 64" "range 1 1" "range 4 64")
BIG_LOADS=("get1M 4 64" "prefix 4 64" "cas 4 64")
PARTS="${PERF_PARTS:-basic big cluster}"
KEYS="${PERF_KEYS:-1000000}"
LOAD_JOBS="${PERF_LOAD_JOBS:-4}"
TXN_PUTS=192     # puts per loading Txn (~64 KB); the servers get --max-txn-ops 1000
PREFIX_KEYS=1000 # keys under the prefix of the prefix load
CLUSTER_LOADS=("put 1 1" "put 4 64")
CLUSTER_ELECTION_MS="${PERF_ELECTION_MS:-1000}" # etcd's defaults, for both servers
CLUSTER_HEARTBEAT_MS="${PERF_HEARTBEAT_MS:-100}"
FAILOVER_LIMIT_S=$((30 * CLUSTER_ELECTION_MS / 1000 + 1)) # bound on each failover wait
FAILOVERS="${PERF_FAILOVERS:-3}" # leader kills per cluster

command -v h2load >/dev/null 2>&1 || fail "h2load not found (apt-get install nghttp2-client)"
command -v "$ETCDCTL_BIN" >/dev/null 2>&1 || fail "etcdctl not found"
command -v jq >/dev/null 2>&1 || fail "jq not found"
if [[ "$PARTS" == *big* || "$PARTS" == *cluster* ]]; then
	[[ -x "$GRPCRAW_BIN" ]] || fail "grpcraw not found: $GRPCRAW_BIN (ninja -C build builds it)"
fi
if [[ "$PARTS" == *big* ]]; then
	((KEYS >= 10 * PREFIX_KEYS)) || fail "PERF_KEYS must be at least $((10 * PREFIX_KEYS))"
fi

# ------------------------------------------------------- request bodies ---

# varint N: N as \xHH escapes of a protobuf varint.
varint() {
	local n="$1" out=""
	while ((n >= 128)); do
		out+="$(printf '\\x%02x' $(((n & 127) | 128)))"
		n=$((n >> 7))
	done
	out+="$(printf '\\x%02x' "$n")"
	printf '%s' "$out"
}

# pb_bytes TAG STRING: one length-delimited field (STRING is plain ASCII).
pb_bytes() {
	printf '%b' "$1$(varint ${#2})"
	printf '%s' "$2"
}

# grpc_frame MSGFILE OUTFILE: 0x00 (not compressed), 4-byte big-endian length,
# then the message.
grpc_frame() {
	local len
	len="$(stat -c %s "$1")"
	printf '%b' "$(printf '\\x00\\x%02x\\x%02x\\x%02x\\x%02x' \
		$(((len >> 24) & 255)) $(((len >> 16) & 255)) $(((len >> 8) & 255)) $((len & 255)))" >"$2"
	cat "$1" >>"$2"
}

VALUE="$(head -c "$VALUE_BYTES" /dev/zero | tr '\0' 'v')"
# PutRequest { key = 1 (tag 0x0a); value = 2 (tag 0x12) }
{ pb_bytes '\x0a' perf/put; pb_bytes '\x12' "$VALUE"; } >"$E2E_TMP/put.pb"
# RangeRequest { key = 1 (tag 0x0a) }
pb_bytes '\x0a' perf/get >"$E2E_TMP/range.pb"
grpc_frame "$E2E_TMP/put.pb" "$E2E_TMP/put.body"
grpc_frame "$E2E_TMP/range.pb" "$E2E_TMP/range.body"
# hex_to_file HEX FILE: the bytes written out (lib.sh's pb_* build hex).
hex_to_file() {
	printf '%b' "$(sed 's/../\\x&/g' <<<"$1")" >"$2"
}

# The big part's keys: perf/mem/ + 55 digits = 64 bytes.
mem_key() { printf 'perf/mem/%055d' "$1"; }
# The prefix load's prefix: the first 52 digits of key number P*1000, so
# that it covers keys P*1000 .. P*1000+999; its range end bumps the last digit.
PFX_NUM=$((KEYS / PREFIX_KEYS / 2))
PFX="$(printf 'perf/mem/%052d' "$PFX_NUM")"
PFX_END="$(printf 'perf/mem/%052d' $((PFX_NUM + 1)))"
GET1M_KEY="$(mem_key $((KEYS / 2 + 7)))"
# RangeRequest { key = 1; range_end = 2 }
hex_to_file "$(pb_str 1 "$GET1M_KEY")" "$E2E_TMP/get1M.pb"
hex_to_file "$(pb_str 1 "$PFX")$(pb_str 2 "$PFX_END")" "$E2E_TMP/prefix.pb"
# TxnRequest { compare = value(perf/cas) == V; success = put perf/cas V }
hex_to_file "$(pb_cmp '=' value perf/cas "$VALUE")$(pb_then "$(pb_op_put perf/cas "$VALUE")")" \
	"$E2E_TMP/cas.pb"
for k in get1M prefix cas; do
	grpc_frame "$E2E_TMP/$k.pb" "$E2E_TMP/$k.body"
done

# Smallest plausible DATA per response: 5-byte prefix + ResponseHeader; for
# Range also the 256-byte value(s).
declare -A MIN_DATA=([put]=20 [range]=$((VALUE_BYTES + 20)) [get1M]=$((VALUE_BYTES + 20))
	[prefix]=$((PREFIX_KEYS * (VALUE_BYTES + 64))) [cas]=20)
declare -A METHOD=([put]=/etcdserverpb.KV/Put [range]=/etcdserverpb.KV/Range
	[get1M]=/etcdserverpb.KV/Range [prefix]=/etcdserverpb.KV/Range [cas]=/etcdserverpb.KV/Txn)
# Loads that write: the key they write, checked after the run.
declare -A WRITES=([put]=perf/put [cas]=perf/cas)

# --------------------------------------------------------------- helpers ---

# to_us "393us" / "2.21ms" / "1.5s" -> microseconds (integer)
to_us() {
	awk -v v="$1" 'BEGIN {
		if (v ~ /us$/) { sub(/us$/, "", v); m = 1 }
		else if (v ~ /ms$/) { sub(/ms$/, "", v); m = 1000 }
		else if (v ~ /s$/) { sub(/s$/, "", v); m = 1000000 }
		else { m = 1 }
		printf "%d", v * m + 0.5 }'
}

revision_of() {
	local r
	r="$(ctl "$1" get perf/none -w json | grep -oE '"revision":[0-9]+' | head -n1 | cut -d: -f2 || true)"
	echo "${r:-0}"
}

declare -A R # R[server,load,field]
INVALID=0

# run_load SERVER KIND CONNS STREAMS [NODE]: results under SERVER; the
# requests go to node NODE (default SERVER).
run_load() {
	local srv="$1" kind="$2" c="$3" m="$4" node="${5:-$1}" load out rps succ failed errored tmo data
	local line max mean rev0=0 rev1=0 why="" wkey="${WRITES[$2]:-}"
	load="$kind ${c}x$m"
	out="$E2E_TMP/h2load.$srv.$kind.${c}x$m.txt"
	[[ -n "$wkey" ]] && rev0="$(revision_of "$node")"
	log_info "$srv: $load for ${DURATION}s (+${WARMUP}s warm-up)"
	timeout -k 5 $((DURATION + WARMUP + 60)) h2load -t 1 -c "$c" -m "$m" \
		-D "$DURATION" --warm-up-time="$WARMUP" \
		-d "$E2E_TMP/$kind.body" \
		-H 'content-type: application/grpc' -H 'te: trailers' \
		"http://127.0.0.1:${NODE_CPORT[$node]}${METHOD[$kind]}" >"$out" 2>&1 || why="h2load exit $?"
	# Any of these may be missing if h2load failed: never let set -e fire.
	rps="$(grep -oE '[0-9.]+ req/s' "$out" | head -n1 | cut -d' ' -f1 || true)"
	line="$(grep '^requests:' "$out" || true)"
	succ="$(grep -oE '[0-9]+ succeeded' <<<"$line" | cut -d' ' -f1 || true)"
	failed="$(grep -oE '[0-9]+ failed' <<<"$line" | cut -d' ' -f1 || true)"
	errored="$(grep -oE '[0-9]+ errored' <<<"$line" | cut -d' ' -f1 || true)"
	tmo="$(grep -oE '[0-9]+ timeout' <<<"$line" | cut -d' ' -f1 || true)"
	data="$(grep '^traffic:' "$out" | grep -oE '\([0-9]+\) data' | tr -dc 0-9 || true)"
	max="" mean=""
	read -r max mean < <(grep '^time for request:' "$out" | awk '{print $5, $6}' || true) || true
	if [[ -z "$rps" || -z "$succ" || -z "$mean" ]]; then
		why="${why:+$why; }cannot parse h2load output"
	elif ((succ == 0)); then
		why="${why:+$why; }no successful requests"
	elif ((${failed:-0} + ${errored:-0} + ${tmo:-0} > 0)); then
		why="${why:+$why; }$failed failed, $errored errored, $tmo timeouts"
	elif ((${data:-0} / succ < MIN_DATA[$kind])); then
		why="${why:+$why; }only $((data / succ)) DATA bytes per response (errors?)"
	fi
	if [[ -n "$wkey" && -z "$why" ]]; then
		local kv modrev vlen
		kv="$(ctl "$node" get "$wkey" -w json)"
		rev1="$(grep -oE '"revision":[0-9]+' <<<"$kv" | head -n1 | cut -d: -f2 || true)"
		rev1="${rev1:-0}"
		modrev="$(jq -r '.kvs[0].mod_revision // 0' <<<"$kv")"
		vlen="$(jq -r '(.kvs[0].value // "") | @base64d | length' <<<"$kv")"
		if ((rev1 - rev0 < succ)); then
			why="revision advanced $((rev1 - rev0)) < $succ succeeded ${kind}s"
		elif ((modrev != rev1 || vlen != VALUE_BYTES)); then
			why="$wkey not the last write (mod_revision $modrev, rev $rev1, value $vlen bytes)"
		fi
	fi
	R[$srv,$load,rps]="${rps:-0}"
	R[$srv,$load,mean]="$(to_us "${mean:-0us}")"
	R[$srv,$load,max]="$(to_us "${max:-0us}")"
	R[$srv,$load,n]="${succ:-0}"
	R[$srv,$load,bad]="$why"
	if [[ -n "$why" ]]; then
		INVALID=1
		log_info "$srv $load INVALID: $why (raw output: $out)"
		sed 's/^/#   /' "$out" | tail -n 12
	else
		local revs=""
		[[ -n "$wkey" ]] && revs=", revision $rev0 -> $rev1"
		log_info "$srv $load: $rps req/s, $succ requests, mean $mean max $max$revs"
	fi
}

# ------------------------------------------------------------ big part ---

declare -A B # B[server,field]: load_s rss_kb restart_ms restart_rss_kb bad

now_ms() { date +%s%3N; }

# ready_or_not NODE LIMIT_S: like lib.sh's wait_ready, but returns 1 (instead
# of ending the script) if NODE dies or is not ready in time.
ready_or_not() {
	local id="$1" deadline=$((SECONDS + $2))
	while ((SECONDS < deadline)); do
		node_alive "$id" || return 1
		if timeout -k 1 5 "$ETCDCTL_BIN" --endpoints="$(node_url "$id")" \
			--dial-timeout=1s --command-timeout=1s endpoint status >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# load_keys NODE: KEYS keys through grpc_load_puts (lib.sh): awk writes the
# TxnRequests as hex, xargs runs LOAD_JOBS grpcraw calls at a time. (etcdctl
# txn, one process per Txn, spends ~60 ms of CPU parsing 1000 puts: about a
# minute for the million, more than etcd itself.) Prints why it is invalid,
# or nothing.
load_keys() {
	local node="$1" count
	if ! grpc_load_puts "127.0.0.1:${NODE_CPORT[$node]}" perf/mem/ 55 "$KEYS" "$TXN_PUTS" \
		"$VALUE" "$LOAD_JOBS"; then
		echo "a loading Txn failed: $(grep '^grpc-status=' "$E2E_TMP/load.out" |
			grep -v '^grpc-status=0 ' | sort | uniq -c | head -n1 | sed 's/^ *//')"
		return 0
	fi
	count="$(ctl "$node" get --prefix perf/mem/ --limit 1 -w json | jq -r '.count // 0' || true)"
	if [[ "$count" != "$KEYS" ]]; then
		echo "$count keys after loading, not $KEYS"
	fi
}

# first_get_ms NODE LIMIT_S: poll a Range of a loaded key (one grpcraw call
# at a time, each bounded) until it returns the key's value; print the
# milliseconds since BIG_T0, or nothing if LIMIT_S passes first.
first_get_ms() {
	local node="$1" deadline=$((SECONDS + $2)) key out
	key="$(mem_key 7)"
	while ((SECONDS < deadline)); do
		out="$(timeout -k 1 10 "$GRPCRAW_BIN" range "127.0.0.1:${NODE_CPORT[$node]}" "$key" \
			--timeout 5 2>/dev/null || true)"
		# grpcraw shows the first 64 bytes of a value, then its length.
		if [[ "$out" == *"resp range"*" $key=${VALUE:0:64}...($VALUE_BYTES bytes)"* ]]; then
			echo $(($(now_ms) - BIG_T0))
			return 0
		fi
		node_alive "$node" || return 0
		sleep 0.01
	done
}

rss_line() {
	awk '/^(VmRSS|RssAnon|RssFile):/ { printf "%s %d MiB  ", $1, $2 / 1024 }' \
		"/proc/$(node_pid "$1")/status" 2>/dev/null || true
}

# bench_big SERVER: a fresh node SERVER-big; load, RSS, restart, 3 loads.
bench_big() {
	local srv="$1" node="$1-big" why t0 ms l
	case "$srv" in
	etcd)
		# shellcheck disable=SC2086
		start_etcd "$node" --max-txn-ops 1000 ${PERF_ETCD_FLAGS:---quota-backend-bytes=8589934592}
		;;
	cetcd)
		# shellcheck disable=SC2086
		start_cetcd "$node" --max-txn-ops 1000 ${PERF_CETCD_FLAGS:-}
		;;
	esac
	if ! ready_or_not "$node" "$E2E_READY_S"; then
		B[$srv,bad]="did not start (see $(node_log "$node"))"
		log_info "$srv big INVALID: ${B[$srv,bad]}"
		INVALID=1
		stop_node "$node"
		return 0
	fi
	log_info "$srv: loading $KEYS keys ($TXN_PUTS puts per Txn, $LOAD_JOBS loaders)"
	t0="$(now_ms)"
	why="$(load_keys "$node")"
	if [[ -z "$why" ]]; then
		B[$srv,load_s]="$(awk -v ms=$(($(now_ms) - t0)) 'BEGIN { printf "%.1f", ms / 1000 }')"
	fi
	if [[ -n "$why" ]]; then
		B[$srv,bad]="$why"
		log_info "$srv big INVALID: $why"
		INVALID=1
		stop_node "$node"
		return 0
	fi
	sleep 2
	B[$srv,rss_kb]="$(node_rss_kb "$node")"
	log_info "$srv: loaded in ${B[$srv,load_s]} s; $(rss_line "$node"); data dir $(du -sh "$(node_dir "$node")" | cut -f1)"

	stop_node "$node"
	BIG_T0="$(now_ms)"
	restart_node "$node"
	ms="$(first_get_ms "$node" 120)"
	if [[ -z "$ms" ]]; then
		B[$srv,bad]="no answer within 120 s of the restart"
		log_info "$srv big INVALID: ${B[$srv,bad]}"
		INVALID=1
		stop_node "$node"
		return 0
	fi
	B[$srv,restart_ms]="$ms"
	B[$srv,restart_rss_kb]="$(node_rss_kb "$node")"
	log_info "$srv: first get answered $ms ms after the restart; $(rss_line "$node")"

	ready_or_not "$node" 30 || true
	ctl "$node" put perf/cas "$VALUE" >/dev/null || log_info "$srv: put perf/cas failed"
	for l in "${BIG_LOADS[@]}"; do
		# shellcheck disable=SC2086
		run_load "$srv" $l "$node"
	done
	stop_node "$node"
}

bench_server() {
	local srv="$1" l
	case "$srv" in
	etcd)
		# shellcheck disable=SC2086
		start_etcd etcd ${PERF_ETCD_FLAGS:---quota-backend-bytes=8589934592}
		;;
	cetcd)
		# shellcheck disable=SC2086
		start_cetcd cetcd ${PERF_CETCD_FLAGS:-}
		;;
	esac
	wait_ready "$srv"
	ctl "$srv" put perf/get "$VALUE" >/dev/null || fail "$srv: put perf/get failed"
	ctl "$srv" put perf/put "$VALUE" >/dev/null || fail "$srv: put perf/put failed"
	for l in "${LOADS[@]}"; do
		# shellcheck disable=SC2086
		run_load "$srv" $l
	done
	log_info "$srv: data dir $(du -sh "$(node_dir "$srv")" | cut -f1), log $(node_log "$srv")"
	stop_node "$srv"
}

# --------------------------------------------------------- cluster part ---

declare -A C         # C[server,field]: leader put_ms leader_ms put_all leader_all bad
declare -A MEMBER_ID # MEMBER_ID[node]: its member ID (decimal)

# ms_now: milliseconds since the epoch (bash's EPOCHREALTIME: no exec).
ms_now() {
	local t="${EPOCHREALTIME/[.,]/}"
	echo $((t / 1000))
}

# member_leaders NODE..: one `etcdctl endpoint status -w json` on the NODEs'
# endpoints (1 s dial and command timeouts); prints "MEMBER_ID LEADER_ID"
# (Status.header.member_id, Status.leader; decimal, 0 for no leader) for
# each NODE that answered. Parsed as text, not with jq: jq 1.6 rounds 64-bit
# IDs to doubles, and etcdctl's JSON omits a zero leader.
member_leaders() {
	local eps="" n
	for n in "$@"; do
		eps+="${eps:+,}$(node_url "$n")"
	done
	timeout -k 1 5 "$ETCDCTL_BIN" --endpoints="$eps" --dial-timeout=1s --command-timeout=1s \
		endpoint status -w json 2>/dev/null | sed 's/{"Endpoint"/\n&/g' |
		awk 'match($0, /"member_id":[0-9]+/) {
			m = substr($0, RSTART + 12, RLENGTH - 12); l = 0
			if (match($0, /"leader":[0-9]+/)) l = substr($0, RSTART + 9, RLENGTH - 9)
			print m, l }' || true
}

# agreed_leader EXCLUDE NODE..: if every NODE answers and all of them name
# the same leader, which is one of the NODEs and not the member ID EXCLUDE,
# print that node; else return 1.
agreed_leader() {
	local exclude="$1" lines first="" n m l
	shift
	lines="$(member_leaders "$@")"
	[[ "$(grep -c . <<<"$lines" || true)" == "$#" ]] || return 1
	while read -r m l; do
		[[ "$l" != 0 && "$l" != "$exclude" ]] || return 1
		[[ -z "$first" || "$l" == "$first" ]] || return 1
		first="$l"
	done <<<"$lines"
	for n in "$@"; do
		if [[ "${MEMBER_ID[$n]:-}" == "$first" ]]; then
			echo "$n"
			return 0
		fi
	done
	return 1
}

# serial_revision NODE: NODE's own revision (serializable read), 0 if none.
serial_revision() {
	local r
	r="$(ctl "$1" get perf/none --consistency=s -w json 2>/dev/null |
		grep -oE '"revision":[0-9]+' | head -n1 | cut -d: -f2 || true)"
	echo "${r:-0}"
}

# put_poller OUT LOG DEADLINE_MS PORT..: every 50 ms, until OUT is not
# empty or DEADLINE_MS (epoch ms) passes, start one grpcraw Put of
# perf/failover (bounded by 2 s) through the next PORT, in the background
# (a Put sent while the survivors still follow the dead leader may wait for
# its whole timeout: polling one at a time would add that wait to the
# measurement). A Put answered with grpc-status=0 appends its end time (ms)
# to OUT; every attempt logs "start end port status" to LOG.
put_poller() {
	local out="$1" plog="$2" deadline="$3" i=0 now sfd
	shift 3
	local ports=("$@")
	# Sleep without a fork (a busy 2-core box makes forks slow): a read with
	# a timeout on a FIFO that nobody writes.
	mkfifo "$out.fifo"
	exec {sfd}<>"$out.fifo"
	while [[ ! -s "$out" ]]; do
		now="${EPOCHREALTIME/[.,]/}"
		((now / 1000 < deadline)) || break
		(
			p="${ports[i % ${#ports[@]}]}"
			s="${EPOCHREALTIME/[.,]/}"
			r="$(timeout -k 1 5 "$GRPCRAW_BIN" put "127.0.0.1:$p" perf/failover "$VALUE" \
				--timeout 2 2>/dev/null | tail -n1 || true)"
			e="${EPOCHREALTIME/[.,]/}"
			[[ "$r" == "grpc-status=0 "* ]] && echo $((e / 1000)) >>"$out"
			echo "$((s / 1000)) $((e / 1000)) $p ${r:-no output}" >>"$plog"
		) &
		i=$((i + 1))
		read -r -t 0.05 -u "$sfd" _ || true
	done
	exec {sfd}<&-
	wait
}

# cluster_invalid WHY: bench_cluster's way out (uses its srv, key, nodes).
cluster_invalid() {
	local n
	C[$srv,bad]="$1"
	log_info "$key INVALID: $1"
	INVALID=1
	for n in "${nodes[@]}"; do
		stop_node "$n"
	done
}

# bench_cluster SERVER: a fresh 3-member cluster SERVER-m0..m2; the put
# loads on its leader, then kill -9 of the leader and the failover times.
bench_cluster() {
	local srv="$1" key="$1-cluster" nodes=() n i cluster="" token deadline leader l
	declare -A ppt
	token="perf-$srv-cluster-$$"
	for i in 0 1 2; do
		n="$srv-m$i"
		nodes+=("$n")
		ppt[$n]="$(free_port)"
		cluster+="${cluster:+,}$n=http://127.0.0.1:${ppt[$n]}"
	done
	for n in "${nodes[@]}"; do
		local flags=(--listen-peer-urls "http://127.0.0.1:${ppt[$n]}"
			--initial-cluster "$cluster" --initial-cluster-state new
			--initial-cluster-token "$token"
			--election-timeout "$CLUSTER_ELECTION_MS" --heartbeat-interval "$CLUSTER_HEARTBEAT_MS")
		case "$srv" in
		etcd)
			# shellcheck disable=SC2086
			E2E_PEER_URL="http://127.0.0.1:${ppt[$n]}" start_etcd "$n" "${flags[@]}" \
				${PERF_ETCD_FLAGS:---quota-backend-bytes=8589934592}
			;;
		cetcd)
			# shellcheck disable=SC2086
			E2E_PEER_URL="http://127.0.0.1:${ppt[$n]}" start_cetcd "$n" "${flags[@]}" \
				${PERF_CETCD_FLAGS:-}
			;;
		esac
	done
	for n in "${nodes[@]}"; do
		if ! ready_or_not "$n" "$E2E_READY_S"; then
			cluster_invalid "$n did not start (see $(node_log "$n"))"
			return 0
		fi
		MEMBER_ID[$n]="$(member_leaders "$n" | cut -d' ' -f1)"
	done
	deadline=$((SECONDS + 10 * CLUSTER_ELECTION_MS / 1000 + 5))
	leader=""
	while ((SECONDS < deadline)); do
		leader="$(agreed_leader 0 "${nodes[@]}")" && break
		sleep 0.1
	done
	if [[ -z "$leader" ]]; then
		cluster_invalid "no leader all three members agree on within $((10 * CLUSTER_ELECTION_MS / 1000 + 5)) s"
		return 0
	fi
	C[$srv,leader]="$leader"
	log_info "$key: leader $leader (member ${MEMBER_ID[$leader]})"
	if ! ctl "$leader" put perf/put "$VALUE" >/dev/null; then
		cluster_invalid "the first put through the leader $leader failed"
		return 0
	fi
	for l in "${CLUSTER_LOADS[@]}"; do
		# shellcheck disable=SC2086
		run_load "$key" $l "$leader"
	done
	for n in "${nodes[@]}"; do
		if ! node_alive "$n"; then
			cluster_invalid "$n died during the loads (see $(node_log "$n"))"
			return 0
		fi
	done

	local round old="" puts="" leaders=""
	for ((round = 1; round <= FAILOVERS; round++)); do
		if [[ -n "$old" ]]; then
			# The killed member back, and all three following one leader.
			restart_node "$old"
			if ! ready_or_not "$old" "$E2E_READY_S"; then
				cluster_invalid "$old did not restart (see $(node_log "$old"))"
				return 0
			fi
			deadline=$((SECONDS + 10 * CLUSTER_ELECTION_MS / 1000 + 5))
			leader=""
			while ((SECONDS < deadline)); do
				leader="$(agreed_leader 0 "${nodes[@]}")" && break
				sleep 0.1
			done
			if [[ -z "$leader" ]]; then
				cluster_invalid "no common leader after $old restarted"
				return 0
			fi
		fi
		failover_round "$round" "$leader"
		if [[ -n "$FO_WHY" ]]; then
			cluster_invalid "failover $round: $FO_WHY"
			return 0
		fi
		puts+="${puts:+ }$FO_PUT"
		leaders+="${leaders:+ }$FO_LEADER"
		old="$leader"
	done
	C[$srv,put_all]="$puts"
	C[$srv,leader_all]="$leaders"
	C[$srv,put_ms]="$(tr ' ' '\n' <<<"$puts" | awk '{ s += $1 } END { printf "%.0f", s / NR }')"
	C[$srv,leader_ms]="$(tr ' ' '\n' <<<"$leaders" | awk '{ s += $1 } END { printf "%.0f", s / NR }')"
	log_info "$key: failover over $FAILOVERS kills: 1st put after $puts ms (mean ${C[$srv,put_ms]}), new leader after $leaders ms (mean ${C[$srv,leader_ms]})"
	for n in "${nodes[@]}"; do
		stop_node "$n"
	done
}

# failover_round ROUND LEADER: (in bench_cluster: uses srv, key, nodes) let
# the members catch up (bounded, so that the measurement is the election,
# not followers applying a backlog), kill -9 LEADER, and time (ms from the
# kill) the first successful Put through a survivor (FO_PUT) and the
# survivors' agreement on a new leader (FO_LEADER, FO_NEW); then check that
# the survivors lost nothing. FO_WHY is why the round is INVALID, or empty.
failover_round() {
	local round="$1" leader="$2" deadline revs="" n rev0 t0 poller kv rev1 vlen
	local survivors=() ports=() base="$E2E_TMP/failover.$srv.$1"
	FO_PUT="" FO_LEADER="" FO_NEW="" FO_WHY=""
	deadline=$((SECONDS + 60))
	while :; do
		revs=""
		for n in "${nodes[@]}"; do
			revs+="$(serial_revision "$n") "
		done
		[[ "$(tr ' ' '\n' <<<"$revs" | grep . | sort -u | wc -l)" == 1 ]] && break
		if ((SECONDS >= deadline)); then
			log_info "$key: members still at revisions $revs after 60 s; killing the leader anyway"
			break
		fi
		sleep 0.2
	done
	rev0="$(revision_of "$leader")"
	sleep 1
	for n in "${nodes[@]}"; do
		if [[ "$n" != "$leader" ]]; then
			survivors+=("$n")
			ports+=("${NODE_CPORT[$n]}")
		fi
	done
	log_info "$key: failover $round: members at revisions $revs; kill -9 of the leader $leader"
	: >"$base.put"
	: >"$base.log"
	t0="$(ms_now)"
	kill_node "$leader"
	deadline=$((t0 + FAILOVER_LIMIT_S * 1000))
	put_poller "$base.put" "$base.log" "$deadline" "${ports[@]}" &
	poller=$!
	while (($(ms_now) < deadline)); do
		if FO_NEW="$(agreed_leader "${MEMBER_ID[$leader]}" "${survivors[@]}")"; then
			FO_LEADER=$(($(ms_now) - t0))
			break
		fi
		FO_NEW=""
		sleep 0.02
	done
	wait "$poller" || true
	FO_PUT="$(sort -n "$base.put" | head -n1)"
	[[ -n "$FO_PUT" ]] && FO_PUT=$((FO_PUT - t0))
	log_info "$key: failover $round: first put ok after ${FO_PUT:-(none)} ms, survivors agree on leader ${FO_NEW:-(none)} after ${FO_LEADER:-(none)} ms"
	log_info "$key: failover $round: put attempts (grpcraw, 2 s bound, one every 50 ms, to ports ${ports[*]}): $(
		sort -n "$base.log" | awk -v t0="$t0" '{ n++; if (n == 1) f = $1; l = $1 }
			END { printf "%d, started from +%d to +%d ms", n, f - t0, l - t0 }'); outcomes: $(
		cut -d' ' -f4- "$base.log" | sort | uniq -c | sed 's/^ *//' | sort -rn | head -n 4 | tr '\n' ';')"
	if [[ -z "$FO_PUT" ]]; then
		FO_WHY="no put through a survivor succeeded within $FAILOVER_LIMIT_S s of the kill"
		return 0
	fi
	if [[ -z "$FO_LEADER" ]]; then
		FO_WHY="the survivors did not agree on a new leader within $FAILOVER_LIMIT_S s of the kill"
		return 0
	fi
	# Nothing lost: both survivors (linearizable reads) are past the revision
	# before the kill and hold the failover put.
	for n in "${survivors[@]}"; do
		kv="$(ctl "$n" get perf/failover -w json 2>/dev/null || true)"
		rev1="$(grep -oE '"revision":[0-9]+' <<<"$kv" | head -n1 | cut -d: -f2 || true)"
		vlen="$(jq -r '(.kvs[0].value // "") | @base64d | length' <<<"$kv" 2>/dev/null || true)"
		if ((${rev1:-0} <= rev0)) || [[ "$vlen" != "$VALUE_BYTES" ]]; then
			FO_WHY="after the failover $n is at revision ${rev1:-?} (before the kill: $rev0), perf/failover ${vlen:-?} bytes"
			return 0
		fi
	done
	# Not a check, a note: Puts of the load (perf/put) that no member had
	# applied before the kill, though the load had ended (and so had never
	# been acknowledged), but that the new leader committed.
	rev1="$(ctl "${survivors[0]}" get perf/put -w json 2>/dev/null | jq -r '.kvs[0].mod_revision // 0' || true)"
	if ((${rev1:-0} > rev0)); then
		log_info "$key: failover $round: NOTE: $((rev1 - rev0)) Puts of the load (perf/put, revisions $((rev0 + 1))..$rev1) were committed only after the kill: no member had applied them before it"
	fi
}

# ------------------------------------------------------------------- main ---

log_info "$(nproc) CPUs; h2load $(h2load --version | awk '{print $2}'); runs of ${DURATION}s; data under $E2E_TMP"
log_info "etcd: $(command -v "$ETCD_BIN"); cetcd: $CETCD_BIN$([[ "${E2E_CETCD_IS_ETCD:-0}" == 1 ]] && echo ' (E2E_CETCD_IS_ETCD=1: real etcd)')"
SERVERS=(etcd cetcd)
[[ -n "${PERF_ONLY:-}" ]] && SERVERS=("$PERF_ONLY")
for s in "${SERVERS[@]}"; do
	[[ "$PARTS" == *basic* ]] && bench_server "$s"
	[[ "$PARTS" == *big* ]] && bench_big "$s"
	[[ "$PARTS" == *cluster* ]] && bench_cluster "$s"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a > 0) printf "%.2f", a / b; else printf "-" }'; }

# load_table ETCD CETCD LOAD..: the h2load table, ETCD's and CETCD's results
# (R keys) side by side.
load_table() {
	local es="$1" cs="$2" l kind c m load e_rps c_rps e_mean c_mean flag
	shift 2
	printf '%-13s | %10s %10s %6s | %8s %8s | %8s %8s | %9s\n' \
		load 'etcd req/s' 'cetcd r/s' ratio 'etcd avg' 'etcd max' 'cetcd avg' 'cetcd max' 'lat ratio'
	printf '%s\n' "--------------+-------------------------------+-------------------+---------------------+----------"
	for l in "$@"; do
		read -r kind c m <<<"$l"
		load="$kind ${c}x$m"
		e_rps="${R[$es,$load,rps]:-0}" c_rps="${R[$cs,$load,rps]:-0}"
		e_mean="${R[$es,$load,mean]:-0}" c_mean="${R[$cs,$load,mean]:-0}"
		flag=""
		[[ -z "${R[$es,$load,rps]+x}" ]] && flag+=" etcd-not-run"
		[[ -z "${R[$cs,$load,rps]+x}" ]] && flag+=" cetcd-not-run"
		[[ -n "${R[$es,$load,bad]:-}" ]] && flag+=" etcd-INVALID"
		[[ -n "${R[$cs,$load,bad]:-}" ]] && flag+=" cetcd-INVALID"
		printf '%-13s | %10.0f %10.0f %6s | %6sus %6sus | %7sus %7sus | %9s%s\n' \
			"$load" "$e_rps" "$c_rps" "$(ratio "$c_rps" "$e_rps")" \
			"$e_mean" "${R[$es,$load,max]:-0}" "$c_mean" "${R[$cs,$load,max]:-0}" \
			"$(ratio "$c_mean" "$e_mean")" "$flag"
	done
	echo "(ratio = cetcd/etcd throughput, >1 is better; lat ratio = cetcd/etcd mean latency, <1 is better)"
}

ALL_LOADS=()
[[ "$PARTS" == *basic* ]] && ALL_LOADS+=("${LOADS[@]}")
[[ "$PARTS" == *big* ]] && ALL_LOADS+=("${BIG_LOADS[@]}")
if ((${#ALL_LOADS[@]})); then
	echo
	load_table etcd cetcd "${ALL_LOADS[@]}"
fi

# big_row NAME ETCD CETCD TARGET: one row of the big part's table. TARGET is
# "<=X" or ">=X" on cetcd/etcd, or "-".
big_row() {
	local name="$1" e="$2" c="$3" target="$4" r met="-"
	r="$(ratio "$c" "$e")"
	if [[ "$r" != - && "$target" != - ]]; then
		met="$(awk -v r="$r" -v t="${target:2}" -v op="${target:0:2}" 'BEGIN {
			ok = (op == "<=") ? (r <= t) : (r >= t); print ok ? "yes" : "NO" }')"
	fi
	printf '%-24s | %10s %10s | %6s %7s %4s\n' "$name" "${e:--}" "${c:--}" "$r" "$target" "$met"
}

if [[ "$PARTS" == *big* ]]; then
	kb_mib() { [[ -n "${1:-}" ]] && awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
	echo
	echo "big part: $KEYS keys, 64-byte keys, ${VALUE_BYTES}-byte values"
	printf '%-24s | %10s %10s | %6s %7s %4s\n' measure etcd cetcd ratio target met
	printf '%s\n' "-------------------------+-----------------------+-------------------"
	big_row "load time (s)" "${B[etcd,load_s]:-}" "${B[cetcd,load_s]:-}" -
	big_row "RSS after load (MiB)" "$(kb_mib "${B[etcd,rss_kb]:-}")" "$(kb_mib "${B[cetcd,rss_kb]:-}")" "<=0.6"
	big_row "restart to 1st get (ms)" "${B[etcd,restart_ms]:-}" "${B[cetcd,restart_ms]:-}" "<=0.5"
	big_row "RSS after restart (MiB)" "$(kb_mib "${B[etcd,restart_rss_kb]:-}")" \
		"$(kb_mib "${B[cetcd,restart_rss_kb]:-}")" -
	for l in "${BIG_LOADS[@]}"; do
		read -r kind c m <<<"$l"
		load="$kind ${c}x$m"
		e_rps="" c_rps=""
		[[ -z "${R[etcd,$load,bad]-x}" ]] && e_rps="$(printf '%.0f' "${R[etcd,$load,rps]}")"
		[[ -z "${R[cetcd,$load,bad]-x}" ]] && c_rps="$(printf '%.0f' "${R[cetcd,$load,rps]}")"
		big_row "$load (req/s)" "$e_rps" "$c_rps" ">=3"
	done
	for s in etcd cetcd; do
		[[ -n "${B[$s,bad]:-}" ]] && echo "$s big part INVALID: ${B[$s,bad]}"
	done
	echo "(an empty cell is a run that did not happen or is INVALID)"
fi
# ok_value SERVER LOAD FIELD: R[SERVER,LOAD,FIELD] rounded, or nothing if
# that run did not happen or is INVALID.
ok_value() {
	[[ -z "${R[$1,$2,bad]-x}" ]] && printf '%.0f' "${R[$1,$2,$3]}"
	return 0
}

if [[ "$PARTS" == *cluster* ]]; then
	echo
	echo "cluster part: 3 members on loopback each, --election-timeout $CLUSTER_ELECTION_MS --heartbeat-interval $CLUSTER_HEARTBEAT_MS; loads sent to the leader"
	load_table etcd-cluster cetcd-cluster "${CLUSTER_LOADS[@]}"
	echo
	printf '%-24s | %10s %10s | %6s %7s %4s\n' measure etcd cetcd ratio target met
	printf '%s\n' "-------------------------+-----------------------+-------------------"
	big_row "put 4x64 (req/s)" "$(ok_value etcd-cluster 'put 4x64' rps)" \
		"$(ok_value cetcd-cluster 'put 4x64' rps)" ">=2"
	big_row "put 1x1 mean (us)" "$(ok_value etcd-cluster 'put 1x1' mean)" \
		"$(ok_value cetcd-cluster 'put 1x1' mean)" "<=0.6"
	big_row "failover: 1st put (ms)" "${C[etcd,put_ms]:-}" "${C[cetcd,put_ms]:-}" -
	big_row "failover: leader (ms)" "${C[etcd,leader_ms]:-}" "${C[cetcd,leader_ms]:-}" -
	for s in etcd cetcd; do
		[[ -n "${C[$s,put_all]:-}" ]] &&
			echo "$s failovers: 1st put after ${C[$s,put_all]} ms; new leader after ${C[$s,leader_all]} ms"
		[[ -n "${C[$s,bad]:-}" ]] && echo "$s cluster part INVALID: ${C[$s,bad]}"
	done
	echo "(failover: ms from the kill -9 of the leader, mean of $FAILOVERS kills; an empty cell is a run that did not happen or is INVALID)"
fi
if ((INVALID)); then
	echo "some runs are INVALID (see above): their numbers mean nothing"
	exit 1
fi
