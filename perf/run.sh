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
#   GRPCRAW_BIN      the big part's loader and prober (default
#                    build/tests/e2e/grpcraw, built by ninja -C build)
#   PERF_DURATION    seconds per run (default 12)
#   PERF_WARMUP      warm-up seconds before each run (default 1)
#   PERF_TMPDIR      where the data dirs go (default /tmp)
#   PERF_CETCD_FLAGS extra flags for cetcd (e.g. "--shards 2")
#   PERF_ETCD_FLAGS  extra flags for etcd (default --quota-backend-bytes=8589934592:
#                    a 12 s put 4x64 run writes ~500k revisions, ~0.7 GB on disk)
#   PERF_ONLY        "etcd" or "cetcd": run one server only
#   PERF_PARTS       "basic", "big" or "basic big" (default): which parts
#   PERF_KEYS        keys loaded in the big part (default 1000000)
#   PERF_LOAD_JOBS   loading Txns in flight (default 4)
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
PARTS="${PERF_PARTS:-basic big}"
KEYS="${PERF_KEYS:-1000000}"
LOAD_JOBS="${PERF_LOAD_JOBS:-4}"
TXN_PUTS=192     # puts per loading Txn (~64 KB); the servers get --max-txn-ops 1000
PREFIX_KEYS=1000 # keys under the prefix of the prefix load

command -v h2load >/dev/null 2>&1 || fail "h2load not found (apt-get install nghttp2-client)"
command -v "$ETCDCTL_BIN" >/dev/null 2>&1 || fail "etcdctl not found"
command -v jq >/dev/null 2>&1 || fail "jq not found"
if [[ "$PARTS" == *big* ]]; then
	[[ -x "$GRPCRAW_BIN" ]] || fail "grpcraw not found: $GRPCRAW_BIN (ninja -C build builds it)"
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

# ------------------------------------------------------------------- main ---

log_info "$(nproc) CPUs; h2load $(h2load --version | awk '{print $2}'); runs of ${DURATION}s; data under $E2E_TMP"
log_info "etcd: $(command -v "$ETCD_BIN"); cetcd: $CETCD_BIN$([[ "${E2E_CETCD_IS_ETCD:-0}" == 1 ]] && echo ' (E2E_CETCD_IS_ETCD=1: real etcd)')"
SERVERS=(etcd cetcd)
[[ -n "${PERF_ONLY:-}" ]] && SERVERS=("$PERF_ONLY")
for s in "${SERVERS[@]}"; do
	[[ "$PARTS" == *basic* ]] && bench_server "$s"
	[[ "$PARTS" == *big* ]] && bench_big "$s"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a > 0) printf "%.2f", a / b; else printf "-" }'; }

ALL_LOADS=()
[[ "$PARTS" == *basic* ]] && ALL_LOADS+=("${LOADS[@]}")
[[ "$PARTS" == *big* ]] && ALL_LOADS+=("${BIG_LOADS[@]}")

echo
printf '%-13s | %10s %10s %6s | %8s %8s | %8s %8s | %9s\n' \
	load 'etcd req/s' 'cetcd r/s' ratio 'etcd avg' 'etcd max' 'cetcd avg' 'cetcd max' 'lat ratio'
printf '%s\n' "--------------+-------------------------------+-------------------+---------------------+----------"
for l in "${ALL_LOADS[@]}"; do
	read -r kind c m <<<"$l"
	load="$kind ${c}x$m"
	e_rps="${R[etcd,$load,rps]:-0}" c_rps="${R[cetcd,$load,rps]:-0}"
	e_mean="${R[etcd,$load,mean]:-0}" c_mean="${R[cetcd,$load,mean]:-0}"
	flag=""
	[[ -z "${R[etcd,$load,rps]+x}" ]] && flag+=" etcd-not-run"
	[[ -z "${R[cetcd,$load,rps]+x}" ]] && flag+=" cetcd-not-run"
	[[ -n "${R[etcd,$load,bad]:-}" ]] && flag+=" etcd-INVALID"
	[[ -n "${R[cetcd,$load,bad]:-}" ]] && flag+=" cetcd-INVALID"
	printf '%-13s | %10.0f %10.0f %6s | %6sus %6sus | %7sus %7sus | %9s%s\n' \
		"$load" "$e_rps" "$c_rps" "$(ratio "$c_rps" "$e_rps")" \
		"$e_mean" "${R[etcd,$load,max]:-0}" "$c_mean" "${R[cetcd,$load,max]:-0}" \
		"$(ratio "$c_mean" "$e_mean")" "$flag"
done
echo "(ratio = cetcd/etcd throughput, >1 is better; lat ratio = cetcd/etcd mean latency, <1 is better)"

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
if ((INVALID)); then
	echo "some runs are INVALID (see above): their numbers mean nothing"
	exit 1
fi
