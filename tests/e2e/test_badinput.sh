#!/usr/bin/env bash
# tests/e2e/test_badinput.sh: bad input must get etcd's exact answer (gRPC
# status code and grpc-message) or, for broken framing, a closed connection;
# and the server must keep serving everyone else and leak nothing.
#
# Runs one server on a free loopback port with --max-request-bytes 4096 and
# drives it with grpcraw (tests/e2e/grpcraw.c) and Debian's etcdctl 3.4.
#
# Environment:
#   CETCD_BIN     the server (set by meson)
#   GRPCRAW_BIN   the raw gRPC client (set by meson)
#   TARGET=etcd   run the very same checks against real etcd (/usr/bin/etcd)
#                 instead, to show that the expectations are etcd's own
#   BURST=N       bad connections in the burst check (default 200)
#
# Every expected string below was observed on etcd 3.4.23 (Debian). Two kinds:
#  - etcd's own errors ("etcdserver: ..."): identical in etcd 3.5;
#  - errors raised by grpc-go's server transport before etcd sees the request
#    (malformed protobuf, gRPC framing, unknown method, message size): what
#    etcd 3.4.23's grpc-go says; clients only ever look at the code for these.
set -euo pipefail

if [[ "${TARGET:-cetcd}" == etcd ]]; then
	export E2E_CETCD_IS_ETCD=1
fi
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

BURST="${BURST:-200}"
[[ -x "$GRPCRAW_BIN" ]] || fail "grpcraw not found: $GRPCRAW_BIN (set GRPCRAW_BIN)"

# The gRPC limit etcd derives from --max-request-bytes: the flag plus 512 KiB
# of slack for gRPC's own framing.
MAX_REQ=4096
GRPC_MAX=$((MAX_REQ + 512 * 1024))

start_cetcd s --max-request-bytes "$MAX_REQ"
wait_ready s
ADDR="127.0.0.1:$(node_url s | sed 's/.*://')"
PID="$(node_pid s)"
log_info "target: ${TARGET:-cetcd} at $ADDR (pid $PID)"

# raw ARGS..: grpcraw with a hard outer bound; never fails the script. Its
# stdout is left in RAW_OUT and its exit status in RAW_RC (not a $(...)
# subshell, so that both survive).
RAW_RC=0
RAW_OUT=""
raw() {
	RAW_RC=0
	timeout -k 2 15 "$GRPCRAW_BIN" "$@" --timeout 5 >"$E2E_TMP/raw.out" 2>"$E2E_TMP/raw.err" ||
		RAW_RC=$?
	RAW_OUT="$(cat "$E2E_TMP/raw.out")"
}

# expect_status DESC WANT GRPCRAW-ARGS..: the call completes at the HTTP/2
# level (exit 0) and its status line is exactly WANT.
expect_status() {
	local desc="$1" want="$2" out line
	shift 2
	raw "$@"
	out="$RAW_OUT"
	line="$(grep '^grpc-status=' <<<"$out" || true)"
	check_eq "$desc" "$want (rc=0)" "$line (rc=$RAW_RC)"
}

# expect_prefix DESC CODE MSG-PREFIX GRPCRAW-ARGS..: status CODE and a
# message starting with MSG-PREFIX.
expect_prefix() {
	local desc="$1" code="$2" prefix="$3" out line
	shift 3
	raw "$@"
	out="$RAW_OUT"
	line="$(grep '^grpc-status=' <<<"$out" || true)"
	E2E_CHECKS=$((E2E_CHECKS + 1))
	if [[ "$RAW_RC" == 0 && "$line" == "grpc-status=$code grpc-message=$prefix"* ]]; then
		printf 'ok - %s\n' "$desc"
	else
		E2E_FAILS=$((E2E_FAILS + 1))
		printf 'not ok - %s\n#   want: grpc-status=%s grpc-message=%s... (rc=0)\n#   got:  %s (rc=%s)\n' \
			"$desc" "$code" "$prefix" "$line" "$RAW_RC"
	fi
}

# expect_closed DESC GRPCRAW-ARGS..: the server closes the connection.
expect_closed() {
	local desc="$1" out
	shift
	raw "$@"
	out="$RAW_OUT"
	E2E_CHECKS=$((E2E_CHECKS + 1))
	if [[ "$RAW_RC" == 0 && "$out" == closed=yes* ]]; then
		printf 'ok - %s\n' "$desc"
	else
		E2E_FAILS=$((E2E_FAILS + 1))
		printf 'not ok - %s\n#   got: %s (rc=%s)\n' "$desc" "$out" "$RAW_RC"
	fi
}

# expect_ctl_error DESC WANT-LINE ETCDCTL-ARGS..: etcdctl fails and prints
# WANT-LINE (etcdctl also logs a JSON "retrying" line on stderr; ignored).
expect_ctl_error() {
	local desc="$1" want="$2" out rc=0
	shift 2
	out="$(ctl s "$@" 2>&1)" || rc=$?
	E2E_CHECKS=$((E2E_CHECKS + 1))
	if [[ "$rc" != 0 ]] && grep -qxF -- "$want" <<<"$out"; then
		printf 'ok - %s\n' "$desc"
	else
		E2E_FAILS=$((E2E_FAILS + 1))
		printf 'not ok - %s\n#   want: %s (non-zero exit)\n#   got (rc=%s):\n%s\n' \
			"$desc" "$want" "$rc" "$(sed 's/^/#     /' <<<"$out")"
	fi
}

# still_serving TAG: the process lives and a put/get through etcdctl works.
still_serving() {
	local tag="$1" got
	check "server alive after $tag" node_alive s
	got="$(ctl s put "after-$tag" "ok-$tag" 2>&1 || true)"
	check_eq "put after $tag" "OK" "$got"
	got="$(ctl s get "after-$tag" --print-value-only 2>&1 || true)"
	check_eq "get after $tag" "ok-$tag" "$got"
}

fd_count() {
	local fds=("/proc/$PID/fd/"*)
	echo "${#fds[@]}"
}

# --------------------------------------------------------------- sanity ---

log_info "sanity: a well-formed Put and Range through grpcraw"
expect_status "raw Put k=v" "grpc-status=0 grpc-message=" put "$ADDR" k v
raw range "$ADDR" k
out="$RAW_OUT"
check_eq "raw Range k returns v" "k=v" \
	"$(grep '^resp range' <<<"$out" | sed 's/.* //')"

# ---------------------------------------------------- malformed protobuf ---

# 0a 05 ab: field 1 (key), length 5, but one byte follows.
log_info "malformed protobuf"
expect_status "Put with a truncated field -> INTERNAL unexpected EOF" \
	"grpc-status=13 grpc-message=grpc: error unmarshalling request: unexpected EOF" \
	call "$ADDR" /etcdserverpb.KV/Put 0a05ab
# 12: field 2 (value) tag with no length.
expect_status "Put with a tag and no length -> INTERNAL unexpected EOF" \
	"grpc-status=13 grpc-message=grpc: error unmarshalling request: unexpected EOF" \
	call "$ADDR" /etcdserverpb.KV/Put 12
# 0f: field 1 with wire type 7, which does not exist. etcd (Go) goes on with
# "proto: wrong wireType = 7 for field Key"; only the prefix is checked.
expect_prefix "Put with an invalid wire type -> INTERNAL" 13 \
	"grpc: error unmarshalling request: " call "$ADDR" /etcdserverpb.KV/Put 0f
expect_prefix "Range with an invalid wire type -> INTERNAL" 13 \
	"grpc: error unmarshalling request: " call "$ADDR" /etcdserverpb.KV/Range 0f
still_serving "malformed protobuf"

# ------------------------------------------------------------ sizes ---

log_info "oversized requests (--max-request-bytes $MAX_REQ)"
expect_status "Put with a 5000-byte value -> request is too large" \
	"grpc-status=3 grpc-message=etcdserver: request is too large" \
	put "$ADDR" big --value-size 5000
expect_ctl_error "etcdctl put of a 5000-byte value" \
	"Error: etcdserver: request is too large" put big "$(head -c 5000 /dev/zero | tr '\0' x)"
# A message beyond the gRPC receive limit never reaches etcd: grpc-go refuses
# it from the length prefix. 600000-byte value + 3 bytes of key and tags = 600007.
expect_status "Put with a 600000-byte value -> RESOURCE_EXHAUSTED" \
	"grpc-status=8 grpc-message=grpc: received message larger than max (600007 vs. $GRPC_MAX)" \
	put "$ADDR" k --value-size 600000
# The same refusal from the prefix alone: declared 16 MiB, nothing sent.
expect_status "prefix declaring 16 MiB -> RESOURCE_EXHAUSTED" \
	"grpc-status=8 grpc-message=grpc: received message larger than max (16777216 vs. $GRPC_MAX)" \
	call "$ADDR" /etcdserverpb.KV/Put "" --len 16777216
still_serving "oversized requests"

# ------------------------------------------------------- request checks ---

log_info "empty keys, future and compacted revisions"
expect_status "Put with an empty key -> key is not provided" \
	"grpc-status=3 grpc-message=etcdserver: key is not provided" put "$ADDR" "" v
expect_status "empty PutRequest -> key is not provided" \
	"grpc-status=3 grpc-message=etcdserver: key is not provided" call "$ADDR" /etcdserverpb.KV/Put ""
expect_status "Range with an empty key -> key is not provided" \
	"grpc-status=3 grpc-message=etcdserver: key is not provided" range "$ADDR" ""
expect_ctl_error "etcdctl put \"\" v" "Error: etcdserver: key is not provided" put "" v

rev="$(ctl s put rk rv -w json | sed -n 's/.*"revision":\([0-9]*\).*/\1/p')"
[[ -n "$rev" ]] || fail "could not read the current revision"
expect_status "Range at revision current+1000 -> future revision" \
	"grpc-status=11 grpc-message=etcdserver: mvcc: required revision is a future revision" \
	range "$ADDR" rk --rev $((rev + 1000))
expect_ctl_error "etcdctl get --rev current+1000" \
	"Error: etcdserver: mvcc: required revision is a future revision" get rk --rev $((rev + 1000))
ctl s put rk rv2 >/dev/null
ctl s compact $((rev + 1)) >/dev/null
expect_status "Range below the compacted revision -> compacted" \
	"grpc-status=11 grpc-message=etcdserver: mvcc: required revision has been compacted" \
	range "$ADDR" rk --rev "$rev"
expect_ctl_error "etcdctl get --rev below compaction" \
	"Error: etcdserver: mvcc: required revision has been compacted" get rk --rev "$rev"
still_serving "request checks"

# ------------------------------------------------------ unknown methods ---

log_info "unknown methods and services"
expect_status "/etcdserverpb.KV/Nope -> UNIMPLEMENTED" \
	"grpc-status=12 grpc-message=unknown method Nope for service etcdserverpb.KV" \
	call "$ADDR" /etcdserverpb.KV/Nope ""
expect_status "/foo.Bar/Baz -> UNIMPLEMENTED" \
	"grpc-status=12 grpc-message=unknown service foo.Bar" call "$ADDR" /foo.Bar/Baz ""
still_serving "unknown methods"

# ------------------------------------------------------- gRPC framing ---

log_info "mismatched gRPC framing"
expect_status "compressed flag without grpc-encoding -> INTERNAL" \
	"grpc-status=13 grpc-message=grpc: compressed flag set with identity or empty encoding" \
	put "$ADDR" k v --flag 1
expect_status "compressed flag byte 2 -> INTERNAL" \
	"grpc-status=13 grpc-message=grpc: received unexpected payload format 2" \
	put "$ADDR" k v --flag 2
# Declared 100 bytes, then END_STREAM after fewer.
expect_status "prefix longer than the body -> UNKNOWN unexpected EOF" \
	"grpc-status=2 grpc-message=unexpected EOF" put "$ADDR" k v --len 100
# Only 3 bytes: not even a whole prefix.
expect_status "body shorter than the 5-byte prefix -> UNKNOWN unexpected EOF" \
	"grpc-status=2 grpc-message=unexpected EOF" call "$ADDR" /etcdserverpb.KV/Put 000000 --no-prefix
# No DATA at all: HEADERS, then END_STREAM.
expect_status "request with no message -> UNKNOWN EOF" \
	"grpc-status=2 grpc-message=EOF" call "$ADDR" /etcdserverpb.KV/Put "" --no-prefix
# Declared 2 bytes of "0a 01 6b ...": the message is cut inside the key.
expect_status "prefix shorter than the message -> INTERNAL unexpected EOF" \
	"grpc-status=13 grpc-message=grpc: error unmarshalling request: unexpected EOF" \
	put "$ADDR" k v --len 2
# One byte per DATA frame is legal HTTP/2 and must work.
expect_status "Put split into 1-byte DATA frames works" \
	"grpc-status=0 grpc-message=" put "$ADDR" split v --split 1
still_serving "framing"

# --------------------------------------------------- broken connections ---

log_info "broken connections"
expect_closed "garbage bytes: connection closed" garbage "$ADDR"
expect_closed "corrupted preface magic: connection closed" badpreface "$ADDR" magic
expect_closed "SETTINGS of illegal length after the preface: connection closed" \
	badpreface "$ADDR" settings
raw vanish "$ADDR" vanished
check "client vanishing mid-DATA (FIN)" test "$RAW_RC" = 0
raw vanish "$ADDR" vanished --rst
check "client vanishing mid-DATA (RST)" test "$RAW_RC" = 0
check_eq "half-sent Put was not applied" "" "$(ctl s get vanished --print-value-only 2>&1 || true)"
still_serving "broken connections"

# --------------------------------------------------------------- burst ---

# Let connections from the checks above wind down before the baseline.
sleep 0.5
fd_base="$(fd_count)"
log_info "burst: $BURST bad connections, 20 at a time (fds before: $fd_base)"
burst_start=$SECONDS
: >"$E2E_TMP/burst.fail"
for ((i = 0; i < BURST; i += 20)); do
	for ((j = i; j < i + 20 && j < BURST; j++)); do
		case $((j % 5)) in
		0) timeout -k 1 10 "$GRPCRAW_BIN" garbage "$ADDR" --timeout 5 ;;
		1) timeout -k 1 10 "$GRPCRAW_BIN" badpreface "$ADDR" magic --timeout 5 ;;
		2) timeout -k 1 10 "$GRPCRAW_BIN" badpreface "$ADDR" settings --timeout 5 ;;
		3) timeout -k 1 10 "$GRPCRAW_BIN" vanish "$ADDR" --timeout 5 ;;
		4) timeout -k 1 10 "$GRPCRAW_BIN" vanish "$ADDR" --rst --timeout 5 ;;
		esac >/dev/null 2>&1 || echo "$j" >>"$E2E_TMP/burst.fail" &
	done
	wait || true
	((SECONDS - burst_start < 120)) || fail "burst took longer than 120 s"
done
# Each garbage/badpreface client saw its connection closed, and every
# connection was accepted (a vanish client only fails if it cannot connect).
check_eq "every burst client saw the expected close" "0" \
	"$(wc -l <"$E2E_TMP/burst.fail")"
expect_status "good Put right after the burst" "grpc-status=0 grpc-message=" put "$ADDR" k2 v2
still_serving "burst"
# The server may close the last sockets a little after the clients left.
fd_now="$(fd_count)"
deadline=$((SECONDS + 5))
while ((fd_now > fd_base + 2 && SECONDS < deadline)); do
	sleep 0.1
	fd_now="$(fd_count)"
done
log_info "fds after the burst: $fd_now (before: $fd_base)"
check "no fd leak after the burst ($fd_now <= $fd_base + 2)" test "$fd_now" -le $((fd_base + 2))

# --------------------------------------------------------------- final ---

check "server process still alive at the end" node_alive s
check_eq "first key intact" "v" "$(ctl s get k --print-value-only 2>&1 || true)"
e2e_finish
