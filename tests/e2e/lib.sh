# shellcheck shell=bash
# tests/e2e/lib.sh: shared bash helpers for cetcd's end-to-end tests.
#
# Source it from a test script that runs under bash with `set -euo pipefail`:
#
#   . "$(dirname "$0")/lib.sh"        # creates $E2E_TMP, installs the traps
#   start_cetcd a                     # node "a": free ports, own data dir, log
#   wait_ready a                      # bounded (E2E_READY_S, default 20 s)
#   ctl a put foo bar                 # etcdctl against node a
#   check "foo is bar" test "$(ctl a get foo --print-value-only)" = bar
#   stop_node a                       # SIGTERM, bounded wait, then SIGKILL
#   e2e_finish                        # exit 1 if any check failed, else 0
#
# Stable API (other tests depend on these names and meanings):
#   E2E_TMP                 per-run temp dir, removed at exit (E2E_KEEP=1 keeps it)
#   CETCD_BIN ETCD_BIN ETCDCTL_BIN GRPCRAW_BIN   programs (defaults filled in)
#   free_port               print a free loopback TCP port, reserved for this run
#   start_cetcd ID [FLAG..] start cetcd as node ID (extra flags appended)
#   start_etcd ID [FLAG..]  start real etcd as node ID (extra flags appended)
#   restart_node ID         start ID again: same binary, ports, data dir, flags
#   wait_ready ID           wait until `etcdctl endpoint status` answers
#   stop_node ID [SIG]      send SIG (default TERM), wait (bounded), then SIGKILL
#   kill_node ID            stop_node ID KILL (a crash)
#   node_alive ID           true while ID's process runs
#   node_url ID / node_pid ID / node_dir ID / node_log ID / node_peer_url ID
#   ctl ID ARG..            etcdctl --endpoints=<ID's url> --command-timeout=5s ARG..
#   log_info MSG..          print "# MSG" (progress; goes to stdout)
#   check DESC CMD..        run CMD; print "ok - DESC" or "not ok - DESC" and count
#   check_eq DESC WANT GOT  string equality check, prints both on mismatch
#   fail MSG..              print "FAIL: MSG", dump node logs, exit 1
#   skip MSG..              print "SKIP: MSG", exit 77 (meson's "skipped")
#   e2e_on_cleanup CMD..    run CMD (eval'd) at exit, before nodes are stopped
#   e2e_finish              print the summary; exit 1 if any check failed
#   E2E_CHECKS E2E_FAILS    the counters behind check/check_eq (tests may bump them)
#   NODE_CPORT[ID]          ID's client port
#   node_rss_kb ID          ID's VmRSS in KiB (0 if unknown)
#   pb_*                    protobuf messages as hex strings for `grpcraw call`
#                           (etcd KV and Txn requests; see "protobuf as hex")
#   grpc_load_puts ADDR ..  bulk-load keys with Txns of many puts (fast)
#
# Per-node knobs, read when a node starts (set them as `VAR=x start_cetcd a`):
#   E2E_NAME        --name (default: the node ID)
#   E2E_PEER_URL    --initial-advertise-peer-urls (default: http://127.0.0.1:<free port>)
# Global knobs (environment):
#   E2E_READY_S     wait_ready limit in seconds (default 20)
#   E2E_STOP_S      stop_node limit before SIGKILL (default 10)
#   E2E_CETCD_IS_ETCD=1  start_cetcd starts real etcd instead (to debug tests
#                   before the server exists, or to check them against etcd)
#   E2E_KEEP=1      keep $E2E_TMP (data dirs and logs) after the run
#
# Do not install your own EXIT trap: use e2e_on_cleanup. Every wait here is
# bounded; nothing in this file can hang a test.

if [[ -n "${E2E_LIB_LOADED:-}" ]]; then
	return 0
fi
E2E_LIB_LOADED=1

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
E2E_ROOT="$(cd "$E2E_DIR/../.." && pwd)"

: "${ETCD_BIN:=etcd}"
: "${ETCDCTL_BIN:=etcdctl}"
: "${E2E_READY_S:=20}"
: "${E2E_STOP_S:=10}"
export ETCDCTL_API=3
# etcdctl reads ETCDCTL_* variables; make sure none from the caller leaks in.
unset ETCDCTL_ENDPOINTS ETCDCTL_WRITE_OUT ETCDCTL_DIAL_TIMEOUT \
	ETCDCTL_COMMAND_TIMEOUT ETCDCTL_USER ETCDCTL_CACERT ETCDCTL_CERT \
	ETCDCTL_KEY ETCDCTL_INSECURE_SKIP_TLS_VERIFY 2>/dev/null || true

if [[ -z "${CETCD_BIN:-}" ]]; then
	CETCD_BIN="$E2E_ROOT/build/src/server/cetcd"
fi
if [[ -z "${GRPCRAW_BIN:-}" ]]; then
	GRPCRAW_BIN="$E2E_ROOT/build/tests/e2e/grpcraw"
fi

E2E_TMP="$(mktemp -d "${TMPDIR:-/tmp}/cetcd-e2e.XXXXXX")"
E2E_PORT_DIR="${TMPDIR:-/tmp}/cetcd-e2e-ports"
mkdir -p "$E2E_PORT_DIR" 2>/dev/null || true

E2E_CHECKS=0
E2E_FAILS=0
E2E_CLEANUP_CMDS=()
E2E_NODES=()
declare -A NODE_KIND NODE_PID NODE_CPORT NODE_PPORT NODE_DIR NODE_LOG \
	NODE_NAME NODE_PEER_URL NODE_ARGS

log_info() {
	printf '# %s\n' "$*"
}

# ---------------------------------------------------------------- ports ---

# A port is free if no socket (any state) has it as its local port. We pick
# below the kernel's ephemeral range, so outgoing connections never take it
# between our check and the server's bind, and we reserve it with an atomic
# mkdir in $E2E_PORT_DIR so concurrent test runs never pick the same one.
e2e_ephemeral_low() {
	local lo hi
	if read -r lo hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null; then
		echo "$lo"
	else
		echo 32768
	fi
}

e2e_port_busy() {
	local p="$1"
	if command -v ss >/dev/null 2>&1; then
		[[ -n "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ]] && return 0
	fi
	# Fallback and double check: does anything accept on it?
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		return 0
	fi
	return 1
}

e2e_port_reserve() {
	local p="$1" d owner
	d="$E2E_PORT_DIR/$p"
	if mkdir "$d" 2>/dev/null; then
		echo $$ >"$d/pid"
		return 0
	fi
	# Reclaim a reservation whose owner is gone.
	owner="$(cat "$d/pid" 2>/dev/null || true)"
	if [[ -n "$owner" ]] && ! kill -0 "$owner" 2>/dev/null; then
		rm -rf "$d" 2>/dev/null || true
		if mkdir "$d" 2>/dev/null; then
			echo $$ >"$d/pid"
			return 0
		fi
	fi
	return 1
}

# free_port: print a free, reserved loopback port.
free_port() {
	local lo hi span p i
	hi="$(e2e_ephemeral_low)"
	lo=20000
	if ((hi - lo < 1000)); then
		lo=10000
	fi
	span=$((hi - lo))
	for ((i = 0; i < 200; i++)); do
		p=$((lo + (RANDOM * 32768 + RANDOM) % span))
		e2e_port_busy "$p" && continue
		e2e_port_reserve "$p" || continue
		echo "$p"
		return 0
	done
	fail "free_port: no free port found after 200 tries"
}

# ---------------------------------------------------------------- nodes ---

node_url() { echo "http://127.0.0.1:${NODE_CPORT[$1]}"; }
node_pid() { echo "${NODE_PID[$1]}"; }
node_dir() { echo "${NODE_DIR[$1]}"; }
node_log() { echo "${NODE_LOG[$1]}"; }
node_peer_url() { echo "${NODE_PEER_URL[$1]}"; }

node_alive() {
	local pid="${NODE_PID[$1]:-}"
	[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

# e2e_node_cmd ID: build ID's command line (without the extra flags, which
# are kept %q-quoted in NODE_ARGS[ID]) into the array E2E_CMD.
e2e_node_cmd() {
	local id="$1" kind="${NODE_KIND[$1]}" url cp pp
	cp="${NODE_CPORT[$id]}"
	pp="${NODE_PPORT[$id]}"
	url="http://127.0.0.1:$cp"
	E2E_CMD=()
	case "$kind" in
	cetcd) E2E_CMD=("$CETCD_BIN") ;;
	etcd) E2E_CMD=("$ETCD_BIN") ;;
	esac
	E2E_CMD+=(--listen-peer-urls "http://127.0.0.1:$pp"
		--initial-cluster "${NODE_NAME[$id]}=${NODE_PEER_URL[$id]}"
		--initial-cluster-state new)
	E2E_CMD+=(--name "${NODE_NAME[$id]}"
		--data-dir "${NODE_DIR[$id]}"
		--listen-client-urls "$url"
		--advertise-client-urls "$url"
		--initial-advertise-peer-urls "${NODE_PEER_URL[$id]}")
}

e2e_spawn() {
	local id="$1" extra=()
	e2e_node_cmd "$id"
	if [[ -n "${NODE_ARGS[$id]}" ]]; then
		eval "extra=(${NODE_ARGS[$id]})"
	fi
	E2E_CMD+=("${extra[@]}")
	printf '=== %s start: %s\n' "$(date '+%F %T')" "${E2E_CMD[*]}" >>"${NODE_LOG[$id]}"
	"${E2E_CMD[@]}" </dev/null >>"${NODE_LOG[$id]}" 2>&1 &
	NODE_PID[$id]=$!
	# Not a job of ours any more: bash reaps it silently (no "Killed"
	# notices after kill -9); we watch it with kill -0 instead of wait.
	disown "${NODE_PID[$id]}"
	log_info "started ${NODE_KIND[$id]} '$id' pid ${NODE_PID[$id]} on $(node_url "$id") (data ${NODE_DIR[$id]})"
}

# start_node KIND ID [FLAG..]
start_node() {
	local kind="$1" id="$2" q=""
	shift 2
	if [[ -n "${NODE_KIND[$id]:-}" ]]; then
		fail "start_node: node '$id' already exists (use restart_node)"
	fi
	if [[ "$kind" == cetcd && "${E2E_CETCD_IS_ETCD:-0}" == 1 ]]; then
		kind=etcd
	fi
	case "$kind" in
	cetcd)
		[[ -x "$CETCD_BIN" ]] || fail "cetcd binary not found: $CETCD_BIN (set CETCD_BIN)"
		;;
	etcd)
		command -v "$ETCD_BIN" >/dev/null 2>&1 || skip "etcd not installed ($ETCD_BIN)"
		;;
	*) fail "start_node: unknown kind '$kind'" ;;
	esac
	NODE_KIND[$id]="$kind"
	NODE_NAME[$id]="${E2E_NAME:-$id}"
	NODE_CPORT[$id]="$(free_port)" || fail "no free port"
	NODE_PPORT[$id]="$(free_port)" || fail "no free port"
	NODE_PEER_URL[$id]="${E2E_PEER_URL:-http://127.0.0.1:${NODE_PPORT[$id]}}"
	NODE_DIR[$id]="$E2E_TMP/$id.data"
	NODE_LOG[$id]="$E2E_TMP/$id.log"
	if (($# > 0)); then
		printf -v q '%q ' "$@"
	fi
	NODE_ARGS[$id]="$q"
	E2E_NODES+=("$id")
	e2e_spawn "$id"
}

start_cetcd() { start_node cetcd "$@"; }
start_etcd() { start_node etcd "$@"; }

restart_node() {
	local id="$1"
	[[ -n "${NODE_KIND[$id]:-}" ]] || fail "restart_node: unknown node '$id'"
	if node_alive "$id"; then
		fail "restart_node: node '$id' is still running"
	fi
	e2e_spawn "$id"
}

# wait_ready ID: poll `etcdctl endpoint status` until it succeeds, at most
# E2E_READY_S seconds; fail (with the node's log) if the process dies or time
# runs out.
wait_ready() {
	local id="$1" deadline err="$E2E_TMP/$1.ready.err"
	deadline=$((SECONDS + E2E_READY_S))
	while ((SECONDS < deadline)); do
		if ! node_alive "$id"; then
			fail "node '$id' exited before it was ready"
		fi
		if timeout -k 1 5 "$ETCDCTL_BIN" --endpoints="$(node_url "$id")" \
			--dial-timeout=1s --command-timeout=1s \
			endpoint status >/dev/null 2>"$err"; then
			log_info "node '$id' ready"
			return 0
		fi
		sleep 0.1
	done
	fail "node '$id' not ready after ${E2E_READY_S}s; last etcdctl endpoint status said: $(tail -n 1 "$err")"
}

# stop_node ID [SIG]: signal, wait at most E2E_STOP_S seconds, then SIGKILL.
stop_node() {
	local id="$1" sig="${2:-TERM}" pid deadline
	pid="${NODE_PID[$id]:-}"
	[[ -n "$pid" ]] || return 0
	kill "-$sig" "$pid" 2>/dev/null || true
	deadline=$((SECONDS + E2E_STOP_S))
	while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
		sleep 0.05
	done
	if kill -0 "$pid" 2>/dev/null; then
		log_info "node '$id' ignored SIG$sig for ${E2E_STOP_S}s; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline + 5)); do
			sleep 0.05
		done
	fi
	NODE_PID[$id]=""
	printf '=== %s stopped with SIG%s\n' "$(date '+%F %T')" "$sig" >>"${NODE_LOG[$id]}"
}

kill_node() { stop_node "$1" KILL; }

# ctl ID ARG..: run etcdctl against node ID. Bounded by --command-timeout
# (and dial timeout), plus a hard `timeout` in case the client itself wedges.
ctl() {
	local id="$1"
	shift
	timeout -k 2 30 "$ETCDCTL_BIN" --endpoints="$(node_url "$id")" \
		--dial-timeout=2s --command-timeout=5s "$@"
}

# ------------------------------------------------------------ reporting ---

check() {
	local desc="$1"
	shift
	E2E_CHECKS=$((E2E_CHECKS + 1))
	if "$@"; then
		printf 'ok - %s\n' "$desc"
		return 0
	fi
	E2E_FAILS=$((E2E_FAILS + 1))
	printf 'not ok - %s\n' "$desc"
	return 0
}

check_eq() {
	local desc="$1" want="$2" got="$3"
	E2E_CHECKS=$((E2E_CHECKS + 1))
	if [[ "$want" == "$got" ]]; then
		printf 'ok - %s\n' "$desc"
		return 0
	fi
	E2E_FAILS=$((E2E_FAILS + 1))
	printf 'not ok - %s\n#   want: %q\n#   got:  %q\n' "$desc" "$want" "$got"
	return 0
}

e2e_dump_logs() {
	local id
	for id in "${E2E_NODES[@]}"; do
		[[ -f "${NODE_LOG[$id]}" ]] || continue
		printf '# ---- last 40 lines of %s (%s) ----\n' "$id" "${NODE_LOG[$id]}" >&2
		tail -n 40 "${NODE_LOG[$id]}" | sed 's/^/#   /' >&2
	done
}

fail() {
	printf 'FAIL: %s\n' "$*" >&2
	e2e_dump_logs
	exit 1
}

skip() {
	printf 'SKIP: %s\n' "$*"
	exit 77
}

e2e_finish() {
	local id log
	# Stop every node gracefully so a sanitizer build gets to report leaks
	# at exit, then fail on any sanitizer report in any node's log.
	for id in "${E2E_NODES[@]}"; do
		stop_node "$id"
	done
	for id in "${E2E_NODES[@]}"; do
		log="${NODE_LOG[$id]}"
		if grep -qE 'ERROR: (Address|Leak|Thread)Sanitizer|runtime error:|WARNING: ThreadSanitizer' "$log" 2>/dev/null; then
			E2E_FAILS=$((E2E_FAILS + 1))
			E2E_CHECKS=$((E2E_CHECKS + 1))
			printf 'not ok - sanitizer report in the log of %s\n' "$id"
		fi
	done
	if ((E2E_FAILS > 0)); then
		printf 'FAILED: %d of %d checks\n' "$E2E_FAILS" "$E2E_CHECKS"
		e2e_dump_logs
		exit 1
	fi
	printf 'PASSED: %d checks\n' "$E2E_CHECKS"
	exit 0
}

# --------------------------------------------------- protobuf as hex ---
# Requests for `grpcraw call HOST:PORT PATH HEX`, built as hex strings (no
# NUL bytes ever pass through a bash variable). Field numbers are those of
# etcd's rpc.proto. Example, a Txn "if value(k) = v then put k w else get k":
#   hex="$(pb_cmp '=' value k v)$(pb_then "$(pb_op_put k w)")$(pb_else "$(pb_op_range k)")"
#   "$GRPCRAW_BIN" call 127.0.0.1:PORT /etcdserverpb.KV/Txn "$hex"
# Note: Linux limits one argv string to 128 KiB, so one request to ~64 KiB.

# pb_hex STRING: the bytes of STRING as hex.
pb_hex() {
	printf '%s' "$1" | od -An -tx1 -v | tr -d ' \n'
}

# pb_varint N: N (a signed 64-bit integer) as a protobuf varint, in hex.
pb_varint() {
	local n="$1" out=""
	while ((n >= 128 || n < 0)); do
		out+="$(printf '%02x' $(((n & 127) | 128)))"
		n=$(((n >> 7) & 0x1ffffffffffffff))
	done
	printf '%s%02x' "$out" "$n"
}

# pb_len FIELD HEX / pb_str FIELD STRING / pb_int FIELD N: one field.
pb_len() {
	printf '%s%s%s' "$(pb_varint $((($1 << 3) | 2)))" "$(pb_varint $((${#2} / 2)))" "$2"
}
pb_str() { pb_len "$1" "$(pb_hex "$2")"; }
pb_int() { printf '%s%s' "$(pb_varint $(($1 << 3)))" "$(pb_varint "$2")"; }

# pb_cmp OP TARGET KEY ARG [RANGE_END]: one TxnRequest.compare field.
# OP is = > < !=; TARGET is version create mod value lease; ARG is the
# number (or the value, for TARGET value); RANGE_END a plain string.
pb_cmp() {
	local r t h
	case "$1" in
	'=') r=0 ;; '>') r=1 ;; '<') r=2 ;; '!=') r=3 ;;
	*) fail "pb_cmp: bad result '$1'" ;;
	esac
	case "$2" in
	version) t=0 ;; create) t=1 ;; mod) t=2 ;; value) t=3 ;; lease) t=4 ;;
	*) fail "pb_cmp: bad target '$2'" ;;
	esac
	h="$(pb_int 1 "$r")$(pb_int 2 "$t")$(pb_str 3 "$3")"
	case "$2" in
	version) h+="$(pb_int 4 "$4")" ;;
	create) h+="$(pb_int 5 "$4")" ;;
	mod) h+="$(pb_int 6 "$4")" ;;
	value) h+="$(pb_str 7 "$4")" ;;
	lease) h+="$(pb_int 8 "$4")" ;;
	esac
	if [[ -n "${5:-}" ]]; then
		h+="$(pb_str 64 "$5")"
	fi
	pb_len 1 "$h"
}

# RequestOp messages: pb_op_range KEY [END], pb_op_put KEY VALUE,
# pb_op_del KEY [END], pb_op_txn TXN-HEX (a nested TxnRequest).
pb_op_range() { pb_len 1 "$(pb_str 1 "$1")${2:+$(pb_str 2 "$2")}"; }
pb_op_put() { pb_len 2 "$(pb_str 1 "$1")$(pb_str 2 "$2")"; }
pb_op_del() { pb_len 3 "$(pb_str 1 "$1")${2:+$(pb_str 2 "$2")}"; }
pb_op_txn() { pb_len 4 "$1"; }

# pb_then OP.. / pb_else OP..: TxnRequest.success / .failure fields.
pb_then() {
	local o h=""
	for o in "$@"; do h+="$(pb_len 2 "$o")"; done
	printf '%s' "$h"
}
pb_else() {
	local o h=""
	for o in "$@"; do h+="$(pb_len 3 "$o")"; done
	printf '%s' "$h"
}

# pb_put_batches PREFIX DIGITS FIRST COUNT PER VALUE: print TxnRequests
# (hex, one per line) putting keys PREFIX%0<DIGITS>d for FIRST .. FIRST+COUNT-1
# (PREFIX plain ASCII) to VALUE, PER puts in each (the last may have fewer).
# Fast (awk): a million keys in about a second.
pb_put_batches() {
	awk -v kpre="$1" -v digits="$2" -v first="$3" -v count="$4" -v per="$5" -v v="$6" '
	function varint(n,   h) {
		h = ""
		while (n >= 128) { h = h sprintf("%02x", n % 128 + 128); n = int(n / 128) }
		return h sprintf("%02x", n)
	}
	function hex(s,   i, h) {
		h = ""
		for (i = 1; i <= length(s); i++) h = h HEX[substr(s, i, 1)]
		return h
	}
	BEGIN {
		for (i = 1; i < 128; i++) HEX[sprintf("%c", i)] = sprintf("%02x", i)
		klen = length(kpre) + digits
		# PutRequest { key = 1; value = 2 }, in RequestOp.request_put (2),
		# in TxnRequest.success (2).
		put = 1 + length(varint(klen)) / 2 + klen + 1 + length(varint(length(v))) / 2 + length(v)
		op = 1 + length(varint(put)) / 2 + put
		pre = "12" varint(op) "12" varint(put) "0a" varint(klen) hex(kpre)
		post = "12" varint(length(v)) hex(v)
		fmt = "%0" digits "d"
		n = 0
		for (i = first; i < first + count; i++) {
			d = sprintf(fmt, i)
			gsub(/./, "3&", d) # a digit c is the byte 0x3c
			printf "%s%s%s", pre, d, post
			if (++n == per) { printf "\n"; n = 0 }
		}
		if (n > 0) printf "\n"
	}'
}

# grpc_load_puts ADDR PREFIX DIGITS COUNT PER VALUE [JOBS]: put COUNT keys
# (see pb_put_batches) with KV/Txn calls through grpcraw, JOBS (default 4)
# at a time. The server needs --max-txn-ops >= PER; one request must stay
# under 64 KiB (argv limit). The whole load is bounded by GRPC_LOAD_S
# seconds (default 300), each call by 30 s. Returns 0 if every call answered
# grpc-status=0; the calls' output is left in $E2E_TMP/load.out.
grpc_load_puts() {
	local addr="$1" prefix="$2" digits="$3" count="$4" per="$5" value="$6" jobs="${7:-4}"
	local hex_chars calls ok
	# Limits: every key has DIGITS digits; one argv string is < 128 KiB.
	((digits >= 18 || count <= 10 ** digits)) || fail "grpc_load_puts: $count keys need more than $digits digits"
	hex_chars="$(pb_put_batches "$prefix" "$digits" 0 "$per" "$per" "$value" | wc -c)"
	((hex_chars < 131000)) || fail "grpc_load_puts: $per puts make a request of $((hex_chars / 2)) bytes (max ~64 KiB)"
	calls=$(((count + per - 1) / per))
	pb_put_batches "$prefix" "$digits" 0 "$count" "$per" "$value" |
		timeout -k 5 "${GRPC_LOAD_S:-300}" xargs -d '\n' -n 1 -P "$jobs" -s 200000 \
			timeout -k 2 40 "$GRPCRAW_BIN" call --timeout 30 "$addr" /etcdserverpb.KV/Txn \
			>"$E2E_TMP/load.out" 2>&1 || true
	ok="$(grep -c '^grpc-status=0 ' "$E2E_TMP/load.out" || true)"
	[[ "$ok" == "$calls" ]]
}

# node_rss_kb ID: the node's resident set size in KiB (VmRSS), 0 if unknown.
node_rss_kb() {
	local pid="${NODE_PID[$1]:-}" v
	v="$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)"
	echo "${v:-0}"
}

# -------------------------------------------------------------- cleanup ---

e2e_on_cleanup() {
	E2E_CLEANUP_CMDS+=("$*")
}

e2e_cleanup() {
	local rc=$? c id p pid
	set +e
	trap - EXIT INT TERM
	for c in "${E2E_CLEANUP_CMDS[@]}"; do
		eval "$c" >/dev/null 2>&1
	done
	# TERM everything first, then one shared bounded wait, then KILL.
	for id in "${E2E_NODES[@]}"; do
		pid="${NODE_PID[$id]:-}"
		[[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null
	done
	local deadline=$((SECONDS + 5)) any
	while ((SECONDS < deadline)); do
		any=0
		for id in "${E2E_NODES[@]}"; do
			pid="${NODE_PID[$id]:-}"
			[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && any=1
		done
		((any)) || break
		sleep 0.05
	done
	for id in "${E2E_NODES[@]}"; do
		pid="${NODE_PID[$id]:-}"
		if [[ -n "$pid" ]]; then
			kill -KILL "$pid" 2>/dev/null
		fi
	done
	# free_port runs in $(...) subshells, so find our reservations by owner.
	for p in "$E2E_PORT_DIR"/*/pid; do
		[[ "$(cat "$p" 2>/dev/null)" == "$$" ]] && rm -rf "$(dirname "$p")" 2>/dev/null
	done
	if [[ "${E2E_KEEP:-0}" == 1 ]]; then
		printf '# kept %s\n' "$E2E_TMP"
	else
		rm -rf "$E2E_TMP"
	fi
	exit "$rc"
}

trap e2e_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
