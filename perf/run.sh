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
# h2load counts every HTTP 200 as a success, and a gRPC error is an HTTP 200
# with a non-zero grpc-status trailer. So each run is also checked:
#   - h2load: no failed/errored/timed-out requests, and the DATA bytes per
#     request are at least a real response's size (an error reply carries no
#     message, only trailers);
#   - Put runs: via etcdctl, the revision advanced by at least the number of
#     requests h2load counted as succeeded, and perf/put holds the 256-byte
#     value at the current revision.
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
#   PERF_DURATION    seconds per run (default 12)
#   PERF_WARMUP      warm-up seconds before each run (default 1)
#   PERF_TMPDIR      where the data dirs go (default /tmp)
#   PERF_CETCD_FLAGS extra flags for cetcd (e.g. "--shards 2")
#   PERF_ETCD_FLAGS  extra flags for etcd (default --quota-backend-bytes=8589934592:
#                    a 12 s put 4x64 run writes ~500k revisions, ~0.7 GB on disk)
#   PERF_ONLY        "etcd" or "cetcd": run one server only
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

command -v h2load >/dev/null 2>&1 || fail "h2load not found (apt-get install nghttp2-client)"
command -v "$ETCDCTL_BIN" >/dev/null 2>&1 || fail "etcdctl not found"
command -v jq >/dev/null 2>&1 || fail "jq not found"

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
# Smallest plausible DATA per response: 5-byte prefix + ResponseHeader; for
# Range also the 256-byte value.
declare -A MIN_DATA=([put]=20 [range]=$((VALUE_BYTES + 20)))
declare -A METHOD=([put]=/etcdserverpb.KV/Put [range]=/etcdserverpb.KV/Range)

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

# run_load SERVER KIND CONNS STREAMS
run_load() {
	local srv="$1" kind="$2" c="$3" m="$4" load out rps succ failed errored tmo data
	local line max mean rev0=0 rev1=0 why=""
	load="$kind ${c}x$m"
	out="$E2E_TMP/h2load.$srv.$kind.${c}x$m.txt"
	[[ "$kind" == put ]] && rev0="$(revision_of "$srv")"
	log_info "$srv: $load for ${DURATION}s (+${WARMUP}s warm-up)"
	timeout -k 5 $((DURATION + WARMUP + 60)) h2load -t 1 -c "$c" -m "$m" \
		-D "$DURATION" --warm-up-time="$WARMUP" \
		-d "$E2E_TMP/$kind.body" \
		-H 'content-type: application/grpc' -H 'te: trailers' \
		"http://127.0.0.1:${NODE_CPORT[$srv]}${METHOD[$kind]}" >"$out" 2>&1 || why="h2load exit $?"
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
	if [[ "$kind" == put && -z "$why" ]]; then
		local kv modrev vlen
		kv="$(ctl "$srv" get perf/put -w json)"
		rev1="$(grep -oE '"revision":[0-9]+' <<<"$kv" | head -n1 | cut -d: -f2 || true)"
		rev1="${rev1:-0}"
		modrev="$(jq -r '.kvs[0].mod_revision // 0' <<<"$kv")"
		vlen="$(jq -r '(.kvs[0].value // "") | @base64d | length' <<<"$kv")"
		if ((rev1 - rev0 < succ)); then
			why="revision advanced $((rev1 - rev0)) < $succ succeeded puts"
		elif ((modrev != rev1 || vlen != VALUE_BYTES)); then
			why="perf/put not the last write (mod_revision $modrev, rev $rev1, value $vlen bytes)"
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
		[[ "$kind" == put ]] && revs=", revision $rev0 -> $rev1"
		log_info "$srv $load: $rps req/s, $succ requests, mean $mean max $max$revs"
	fi
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
	bench_server "$s"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a > 0) printf "%.2f", a / b; else printf "-" }'; }

echo
printf '%-11s | %10s %10s %6s | %8s %8s | %8s %8s | %9s\n' \
	load 'etcd req/s' 'cetcd r/s' ratio 'etcd avg' 'etcd max' 'cetcd avg' 'cetcd max' 'lat ratio'
printf '%s\n' "------------+-------------------------------+-------------------+---------------------+----------"
for l in "${LOADS[@]}"; do
	read -r kind c m <<<"$l"
	load="$kind ${c}x$m"
	e_rps="${R[etcd,$load,rps]:-0}" c_rps="${R[cetcd,$load,rps]:-0}"
	e_mean="${R[etcd,$load,mean]:-0}" c_mean="${R[cetcd,$load,mean]:-0}"
	flag=""
	[[ -n "${R[etcd,$load,bad]:-}" ]] && flag+=" etcd-INVALID"
	[[ -n "${R[cetcd,$load,bad]:-}" ]] && flag+=" cetcd-INVALID"
	printf '%-11s | %10.0f %10.0f %6s | %6sus %6sus | %7sus %7sus | %9s%s\n' \
		"$load" "$e_rps" "$c_rps" "$(ratio "$c_rps" "$e_rps")" \
		"$e_mean" "${R[etcd,$load,max]:-0}" "$c_mean" "${R[cetcd,$load,max]:-0}" \
		"$(ratio "$c_mean" "$e_mean")" "$flag"
done
echo "(ratio = cetcd/etcd throughput, >1 is better; lat ratio = cetcd/etcd mean latency, <1 is better)"
if ((INVALID)); then
	echo "some runs are INVALID (see above): their numbers mean nothing"
	exit 1
fi
