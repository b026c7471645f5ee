#!/usr/bin/env bash
# tests/e2e/test_flags.sh: cetcd's command line and ETCD_* variables.
#
# cetcd takes etcd's flags (src/server/config.c): --name, --data-dir,
# --listen-client-urls, --advertise-client-urls, --listen-peer-urls,
# --initial-advertise-peer-urls, --initial-cluster, --initial-cluster-state,
# --initial-cluster-token, --heartbeat-interval, --election-timeout,
# --strict-reconfig-check, --snapshot-count, --max-request-bytes,
# --config-file (and wal-dir, max-snapshots, max-wals), plus its own
# --shards N and --pin-shards, and --help, --version. Each is also read from ETCD_ + the upper-cased name with '-'
# turned into '_'; a flag wins over its variable. The syntax is Go's flag
# package: -flag, --flag, --flag=value, --flag value.
#
# Checked here:
#  - an unknown flag, a bad value, a missing value: exactly one line on
#    stderr naming the flag, exit status 2, nothing listening, no data dir;
#  - --version and --help: exit 0, something sensible on stdout;
#  - every syntax form; ETCD_NAME, ETCD_LISTEN_CLIENT_URLS,
#    ETCD_ADVERTISE_CLIENT_URLS, ETCD_INITIAL_ADVERTISE_PEER_URLS,
#    ETCD_DATA_DIR, ETCD_MAX_REQUEST_BYTES honoured, and flags winning;
#  - the default data dir is "<name>.etcd" in the working directory;
#  - --max-request-bytes (from its variable) is the "request is too large"
#    limit; --shards 1 (pinned) and --shards 3 both serve;
#  - a client port already in use (by a plain socket, and by another cetcd)
#    ends the start with a one-line error naming the address, not a hang
#    and not a second server on the same port;
#  - the cluster flags (src/server/members.c): every common mistake in
#    --initial-cluster / --initial-advertise-peer-urls / the Raft timing
#    flags gives etcd's message word for word and etcd's exit status,
#    checked live against real etcd 3.4.23 run with the same flags (when
#    it is installed; the expected text is also written out here);
#  - --config-file (and ETCD_CONFIG_FILE): a YAML file with etcd's keys
#    configures a server that serves; flags and ETCD_* variables are then
#    ignored; unknown keys are ignored; bad YAML, wrong value types, a
#    missing file give etcd's messages (live comparison too); a file over
#    1 MiB is refused;
#  - member and cluster IDs: cetcd and real etcd started with the same
#    name, peer URL and token report the same IDs (endpoint status).
#
# Compared with real etcd 3.4.23 (Debian etcd-server), observed by hand:
#  - `etcd --bogus`, `etcd -bogus=1`: stderr "flag provided but not defined:
#    -bogus" followed by the whole usage text (21 lines), exit 2. cetcd
#    prints the one line only ("cetcd: flag provided but not defined:
#    -bogus"), exit 2. We require one line and exit 2.
#  - `etcd --max-request-bytes abc`: 'invalid value "abc" for flag
#    -max-request-bytes: parse error' plus the usage, exit 2; cetcd: the one
#    line, exit 2. `etcd --name` (no value): "flag needs an argument: -name"
#    plus the usage, exit 2; cetcd: the one line, exit 2.
#  - etcd has no --shards; cetcd rejects 0, more than 64 and non-numbers.
#  - `etcd foo` (a stray argument): "etcdmain: error verifying flags, 'foo'
#    is not a valid flag. See 'etcd --help'." on one line, exit 1; cetcd
#    says the same of itself, exit 1. ETCD_MAX_REQUEST_BYTES=abc: etcd logs
#    'invalid value "abc" for ETCD_MAX_REQUEST_BYTES: parse error', exit 1;
#    cetcd the same line, exit 1. Checked: one line, non-zero exit.
#  - An unknown ETCD_* variable: etcd warns ("unrecognized environment
#    variable ETCD_BOGUS=1") and starts; cetcd ignores it silently.
#  - `etcd -h` prints the usage and exits 0 (Go's flag package treats -h
#    like -help); so does cetcd. `--` ends the flags in both.
#  - Membership mistakes (name not in --initial-cluster, advertised URLs
#    that differ from the entry, a URL given twice, a bad URL in
#    --initial-cluster): etcd logs one "C | etcdmain: <message>" line and
#    exits 1, after it has made its data dir; cetcd prints the same message
#    and exits 1 before it makes anything. Validation errors ("error
#    verifying flags, ...") exit 1 in both; flag syntax errors exit 2.
#  - Deliberate difference: without --initial-cluster, etcd bootstraps
#    "default=http://localhost:2380", so `etcd --name x` alone fails;
#    cetcd uses <name>=<initial-advertise-peer-urls> instead.
#  - A client port already in use: etcd fails before it touches its data
#    dir ("listen tcp 127.0.0.1:P: bind: address already in use", exit 1).
#    A port out of range (http://127.0.0.1:99999): etcd fails with "listen
#    tcp: address 99999: invalid port".
#
# Environment: CETCD_BIN (set by meson). Real etcd (ETCD_BIN) is used for
# the live comparisons when installed; without it they are skipped.
# shellcheck disable=SC2317 # helpers run through check, eval and e2e_on_cleanup
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

command -v jq >/dev/null 2>&1 || skip "jq not installed"
if [[ "${E2E_CETCD_IS_ETCD:-0}" == 1 ]]; then
	skip "test_flags checks cetcd's own command line (see the comments for etcd's)"
fi
[[ -x "$CETCD_BIN" ]] || fail "cetcd binary not found: $CETCD_BIN (set CETCD_BIN)"
# The servers below run in other working directories.
if [[ "$CETCD_BIN" != /* ]]; then
	CETCD_BIN="$(cd "$(dirname "$CETCD_BIN")" && pwd)/$(basename "$CETCD_BIN")"
fi

# The caller's environment must not configure the servers started here.
FLAG_VARS=(ETCD_NAME ETCD_DATA_DIR ETCD_LISTEN_CLIENT_URLS ETCD_ADVERTISE_CLIENT_URLS
	ETCD_INITIAL_ADVERTISE_PEER_URLS ETCD_INITIAL_CLUSTER_TOKEN ETCD_MAX_REQUEST_BYTES
	ETCD_SHARDS ETCD_PIN_SHARDS ETCD_HELP ETCD_VERSION ETCD_LISTEN_PEER_URLS ETCD_INITIAL_CLUSTER
	ETCD_INITIAL_CLUSTER_STATE ETCD_HEARTBEAT_INTERVAL ETCD_ELECTION_TIMEOUT
	ETCD_STRICT_RECONFIG_CHECK ETCD_CONFIG_FILE ETCD_WAL_DIR ETCD_MAX_SNAPSHOTS ETCD_MAX_WALS
	ETCD_SNAPSHOT_COUNT ETCD_MAX_TXN_OPS ETCD_QUOTA_BACKEND_BYTES ETCD_AUTO_COMPACTION_MODE
	ETCD_AUTO_COMPACTION_RETENTION)
unset "${FLAG_VARS[@]}"

FG_LIMIT_S=10 # a start that must fail gets this long to do so
SANITIZER_RE='ERROR: (Address|Leak|Thread)Sanitizer|runtime error:|WARNING: ThreadSanitizer'

# ------------------------------------------------------------- helpers ---

# fg_run TAG DIR [VAR=VALUE..] -- [ARG..]: run cetcd ARG.. in the foreground
# in directory DIR, with the variables added to its environment, for at most
# FG_LIMIT_S seconds. Its stdout and stderr are left in $E2E_TMP/TAG.out and
# $E2E_TMP/TAG.err, its exit status in FG_RC (124: still running at the
# limit, then killed).
FG_RC=0
FG_TAGS=()
fg_run() {
	local tag="$1" dir="$2" envs=()
	shift 2
	while [[ "$1" != -- ]]; do
		envs+=("$1")
		shift
	done
	shift
	FG_RC=0
	FG_TAGS+=("$tag")
	(cd "$dir" && exec timeout -k 2 "$FG_LIMIT_S" env "${envs[@]}" "$CETCD_BIN" "$@") \
		</dev/null >"$E2E_TMP/$tag.out" 2>"$E2E_TMP/$tag.err" || FG_RC=$?
}

# Servers started without lib.sh's fixed flags (to test variables and
# defaults). raw_start ID DIR [VAR=VALUE..] -- [ARG..] starts one in the
# background in DIR; raw_stop ID stops it (bounded) and checks its log.
declare -A RAW_PID RAW_LOG
RAW_IDS=()
raw_start() {
	local id="$1" dir="$2" envs=()
	shift 2
	while [[ "$1" != -- ]]; do
		envs+=("$1")
		shift
	done
	shift
	RAW_LOG[$id]="$E2E_TMP/raw-$id.log"
	printf '=== start in %s: %s %s\n' "$dir" "${envs[*]}" "$*" >>"${RAW_LOG[$id]}"
	(cd "$dir" && exec env "${envs[@]}" "$CETCD_BIN" "$@") </dev/null >>"${RAW_LOG[$id]}" 2>&1 &
	RAW_PID[$id]=$!
	disown "${RAW_PID[$id]}"
	RAW_IDS+=("$id")
	log_info "started raw cetcd '$id' pid ${RAW_PID[$id]} in $dir"
}

raw_alive() {
	local pid="${RAW_PID[$1]:-}"
	[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

# raw_ready ID URL: bounded wait until URL answers `endpoint status`.
raw_ready() {
	local id="$1" url="$2" deadline=$((SECONDS + E2E_READY_S))
	while ((SECONDS < deadline)); do
		raw_alive "$id" || fail "raw cetcd '$id' exited: $(tail -n 3 "${RAW_LOG[$id]}")"
		if timeout -k 1 5 "$ETCDCTL_BIN" --endpoints="$url" --dial-timeout=1s \
			--command-timeout=1s endpoint status >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	fail "raw cetcd '$id' not ready on $url after ${E2E_READY_S}s: $(tail -n 3 "${RAW_LOG[$id]}")"
}

raw_stop() {
	local id="$1" pid deadline
	pid="${RAW_PID[$id]:-}"
	[[ -n "$pid" ]] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	deadline=$((SECONDS + E2E_STOP_S))
	while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
		sleep 0.05
	done
	if kill -0 "$pid" 2>/dev/null; then
		log_info "raw cetcd '$id' ignored SIGTERM; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	RAW_PID[$id]=""
	check "raw cetcd '$id': no sanitizer report in its log" \
		no_sanitizer_report "${RAW_LOG[$id]}"
}

raw_stop_all() {
	local id pid
	for id in "${RAW_IDS[@]}"; do
		pid="${RAW_PID[$id]:-}"
		[[ -n "$pid" ]] && kill -KILL "$pid" 2>/dev/null
	done
	return 0
}
e2e_on_cleanup raw_stop_all

# has_wal DIR: DIR/member/wal holds a segment.
has_wal() {
	compgen -G "$1/member/wal/*.wal" >/dev/null
}

no_sanitizer_report() {
	! grep -qE "$SANITIZER_RE" "$1" 2>/dev/null
}

# url_ctl URL ARG..: etcdctl against URL, bounded.
url_ctl() {
	local url="$1"
	shift
	timeout -k 2 30 "$ETCDCTL_BIN" --endpoints="$url" --dial-timeout=2s \
		--command-timeout=5s "$@"
}

# listening PORT: something accepts TCP connections on 127.0.0.1:PORT.
listening() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# line_count FILE: lines in FILE (a last line without '\n' counts).
line_count() {
	awk 'END { print NR }' "$1"
}

# ------------------------------------------------------- rejected starts ---

# A start that must be refused: the server is given a free client port and
# a name through its variables, so a server that wrongly started would
# listen there and make "<name>.etcd" in its (fresh, empty) directory.
REJECT_N=0
# expect_rejected DESC WANT_RC WANT_MSG [VAR=VALUE..] -- ARG..: exit status
# WANT_RC ("nonzero" for any), exactly one line on stderr containing
# WANT_MSG, nothing listening, nothing created.
expect_rejected() {
	local desc="$1" want_rc="$2" want_msg="$3" port dir tag err lines
	shift 3
	REJECT_N=$((REJECT_N + 1))
	tag="reject$REJECT_N"
	dir="$E2E_TMP/$tag.cwd"
	mkdir -p "$dir"
	port="$(free_port)"
	fg_run "$tag" "$dir" ETCD_NAME=rejected \
		"ETCD_LISTEN_CLIENT_URLS=http://127.0.0.1:$port" \
		"ETCD_ADVERTISE_CLIENT_URLS=http://127.0.0.1:$port" "$@"
	err="$E2E_TMP/$tag.err"
	lines="$(line_count "$err")"
	if [[ "$want_rc" == nonzero ]]; then
		check "$desc: exits non-zero (got $FG_RC)" test "$FG_RC" -ne 0 -a "$FG_RC" -ne 124
	else
		check_eq "$desc: exit status" "$want_rc" "$FG_RC"
	fi
	check_eq "$desc: exactly one line on stderr" 1 "$lines"
	check "$desc: stderr says '$want_msg'" grep -qF -- "$want_msg" "$err"
	check "$desc: nothing on stdout" test ! -s "$E2E_TMP/$tag.out"
	check "$desc: nothing listening on its client port" eval "! listening $port"
	check "$desc: no data dir created" test -z "$(ls -A "$dir")"
	if [[ "$lines" != 1 || "$FG_RC" == 124 ]]; then
		head -n 5 "$err" | sed 's/^/#   stderr: /'
	fi
}

log_info "unknown flags, bad values, missing values"
expect_rejected "--bogus" 2 "flag provided but not defined: -bogus" -- --bogus
expect_rejected "-bogus=1" 2 "flag provided but not defined: -bogus" -- -bogus=1
expect_rejected "--bogus=1 after good flags" 2 "flag provided but not defined: -bogus" \
	-- --name x --shards 1 --bogus=1
expect_rejected "--Name (flags are case-sensitive)" 2 "flag provided but not defined: -Name" \
	-- --Name x
expect_rejected "--max-request-bytes abc" 2 '"abc"' -- --max-request-bytes abc
expect_rejected "--max-request-bytes abc names the flag" 2 "-max-request-bytes" \
	-- --max-request-bytes abc
expect_rejected "--max-request-bytes=-1" 2 "-max-request-bytes" -- --max-request-bytes=-1
expect_rejected "--max-request-bytes 12k" 2 "-max-request-bytes" -- --max-request-bytes 12k
expect_rejected "--shards 0" 2 "-shards" -- --shards 0
expect_rejected "--shards x" 2 "-shards" -- --shards x
expect_rejected "--shards=65" 2 "-shards" -- --shards=65
expect_rejected "--shards 99999999999" 2 "-shards" -- --shards 99999999999
expect_rejected "--pin-shards=maybe" 2 "-pin-shards" -- --pin-shards=maybe
expect_rejected "--name as the last argument" 2 "flag needs an argument: -name" -- --name
expect_rejected "-data-dir as the last argument" 2 "flag needs an argument: -data-dir" \
	-- --name x -data-dir
# etcd: exit 1 for these two (see the top); any non-zero exit will do.
expect_rejected "a stray argument 'foo'" nonzero "'foo'" -- foo
expect_rejected "ETCD_MAX_REQUEST_BYTES=abc" nonzero "ETCD_MAX_REQUEST_BYTES" \
	ETCD_MAX_REQUEST_BYTES=abc --
expect_rejected "ETCD_SHARDS=0" nonzero "shards" ETCD_SHARDS=0 --

# ------------------------------------------------------ --version, --help ---

log_info "--version and --help"
mkdir -p "$E2E_TMP/info.cwd"
fg_run version "$E2E_TMP/info.cwd" -- --version
check_eq "--version: exit status" 0 "$FG_RC"
check "--version: prints a version number" \
	grep -qE '[Vv]ersion:? *[0-9]+\.[0-9]+\.[0-9]+' "$E2E_TMP/version.out"
check "--version: nothing on stderr" test ! -s "$E2E_TMP/version.err"
fg_run version2 "$E2E_TMP/info.cwd" -- -version
check_eq "-version: exit status" 0 "$FG_RC"
check "-version: same output as --version" cmp -s "$E2E_TMP/version.out" "$E2E_TMP/version2.out"

fg_run help "$E2E_TMP/info.cwd" -- --help
check_eq "--help: exit status" 0 "$FG_RC"
for f in name data-dir listen-client-urls advertise-client-urls initial-advertise-peer-urls \
	initial-cluster-token max-request-bytes shards pin-shards help version listen-peer-urls \
	initial-cluster initial-cluster-state heartbeat-interval election-timeout \
	strict-reconfig-check config-file; do
	check "--help: lists --$f" grep -qE -- "--$f( |\$)" "$E2E_TMP/help.out"
done
check "--help: etcd's style, --heartbeat-interval '100'" \
	grep -qxF -- "  --heartbeat-interval '100'" "$E2E_TMP/help.out"
for v in ETCD_NAME ETCD_DATA_DIR ETCD_MAX_REQUEST_BYTES ETCD_SHARDS ETCD_INITIAL_CLUSTER \
	ETCD_ELECTION_TIMEOUT ETCD_CONFIG_FILE; do
	check "--help: names $v" grep -qw "$v" "$E2E_TMP/help.out"
done
check "--help: nothing on stderr" test ! -s "$E2E_TMP/help.err"
check "--help and --version: no data dir made" test -z "$(ls -A "$E2E_TMP/info.cwd")"
# Not required, only noted: etcd prints its usage for -h too (exit 0).
fg_run help_h "$E2E_TMP/info.cwd" -- -h
if [[ "$FG_RC" != 0 ]]; then
	log_info "note: 'cetcd -h' exits $FG_RC ($(head -n 1 "$E2E_TMP/help_h.err")); etcd prints its usage and exits 0"
fi

# ---------------------------------------------------- Go's flag syntax ---

log_info "every syntax form: -flag value, --flag value, -flag=value, --flag=value, bools"
mkdir -p "$E2E_TMP/syntax.cwd"
P="$(free_port)"
PEER_P="$(free_port)"
raw_start syntax "$E2E_TMP/syntax.cwd" -- -name=syntax1 -data-dir "$E2E_TMP/syntax.data" \
	--listen-client-urls "http://127.0.0.1:$P" "--advertise-client-urls=http://127.0.0.1:$P" \
	-initial-advertise-peer-urls "http://127.0.0.1:$PEER_P" -shards=2 --pin-shards=false \
	--initial-cluster-token=tok1 --max-request-bytes 0x100000
raw_ready syntax "http://127.0.0.1:$P"
ML="$(url_ctl "http://127.0.0.1:$P" member list -w json)"
check_eq "-name=syntax1: member list name" syntax1 "$(jq -r '.members[0].name' <<<"$ML")"
check_eq "--advertise-client-urls=URL: member list clientURLs" "http://127.0.0.1:$P" \
	"$(jq -r '.members[0].clientURLs | join(",")' <<<"$ML")"
check_eq "-initial-advertise-peer-urls URL: member list peerURLs" "http://127.0.0.1:$PEER_P" \
	"$(jq -r '.members[0].peerURLs | join(",")' <<<"$ML")"
check "-data-dir DIR: WAL made under DIR" \
	has_wal "$E2E_TMP/syntax.data"
check "-data-dir DIR: no default dir in the working directory" \
	test -z "$(ls -A "$E2E_TMP/syntax.cwd")"
check "-shards=2: the log says 2 shards" grep -q ' 2 shards' "${RAW_LOG[syntax]}"
check "put and get work" eval \
	"url_ctl http://127.0.0.1:$P put k v >/dev/null && [[ \$(url_ctl http://127.0.0.1:$P get k --print-value-only) == v ]]"
raw_stop syntax

# ------------------------------------------------- ETCD_* and defaults ---

log_info "configured by variables only; default data dir <name>.etcd"
mkdir -p "$E2E_TMP/env.cwd"
P="$(free_port)"
PEER_P="$(free_port)"
ADV="http://advertised.invalid:$P"
raw_start env "$E2E_TMP/env.cwd" ETCD_NAME=envname \
	"ETCD_LISTEN_CLIENT_URLS=http://127.0.0.1:$P" "ETCD_ADVERTISE_CLIENT_URLS=$ADV" \
	"ETCD_INITIAL_ADVERTISE_PEER_URLS=http://127.0.0.1:$PEER_P" ETCD_SHARDS=1 --
raw_ready env "http://127.0.0.1:$P"
ML="$(url_ctl "http://127.0.0.1:$P" member list -w json)"
check_eq "ETCD_NAME: member list name" envname "$(jq -r '.members[0].name' <<<"$ML")"
check_eq "ETCD_ADVERTISE_CLIENT_URLS: member list clientURLs" "$ADV" \
	"$(jq -r '.members[0].clientURLs | join(",")' <<<"$ML")"
check_eq "ETCD_INITIAL_ADVERTISE_PEER_URLS: member list peerURLs" "http://127.0.0.1:$PEER_P" \
	"$(jq -r '.members[0].peerURLs | join(",")' <<<"$ML")"
check "ETCD_LISTEN_CLIENT_URLS: serves puts on 127.0.0.1:$P" \
	eval "url_ctl http://127.0.0.1:$P put envk envv >/dev/null"
check "ETCD_SHARDS=1: the log says 1 shards" grep -q ' 1 shards' "${RAW_LOG[env]}"
check "default data dir: envname.etcd/member/wal/*.wal in the working directory" \
	has_wal "$E2E_TMP/env.cwd/envname.etcd"
check_eq "default data dir: nothing else in the working directory" envname.etcd \
	"$(ls -A "$E2E_TMP/env.cwd")"
raw_stop env

log_info "flags win over variables"
mkdir -p "$E2E_TMP/win.cwd"
P_ENV="$(free_port)"
P="$(free_port)"
raw_start win "$E2E_TMP/win.cwd" ETCD_NAME=envname \
	"ETCD_LISTEN_CLIENT_URLS=http://127.0.0.1:$P_ENV" \
	"ETCD_ADVERTISE_CLIENT_URLS=http://127.0.0.1:$P_ENV" \
	"ETCD_DATA_DIR=$E2E_TMP/win.envdata" ETCD_MAX_REQUEST_BYTES=2048 ETCD_SHARDS=3 -- \
	--name flagname --listen-client-urls "http://127.0.0.1:$P" \
	--advertise-client-urls "http://127.0.0.1:$P" --max-request-bytes 65536 --shards 2
raw_ready win "http://127.0.0.1:$P"
ML="$(url_ctl "http://127.0.0.1:$P" member list -w json)"
check_eq "--name over ETCD_NAME: member list name" flagname "$(jq -r '.members[0].name' <<<"$ML")"
check_eq "--advertise-client-urls over its variable" "http://127.0.0.1:$P" \
	"$(jq -r '.members[0].clientURLs | join(",")' <<<"$ML")"
check "--listen-client-urls over its variable: nothing on the variable's port" \
	eval "! listening $P_ENV"
check "--shards over ETCD_SHARDS: the log says 2 shards" grep -q ' 2 shards' "${RAW_LOG[win]}"
VAL="$(head -c 4000 /dev/zero | tr '\0' w)"
check "--max-request-bytes 65536 over ETCD_MAX_REQUEST_BYTES=2048: a 4000-byte put works" \
	eval "url_ctl http://127.0.0.1:$P put big '$VAL' >/dev/null"
check "ETCD_DATA_DIR (no --data-dir flag) is used" \
	has_wal "$E2E_TMP/win.envdata"
check "ETCD_DATA_DIR: no default dir in the working directory" \
	test -z "$(ls -A "$E2E_TMP/win.cwd")"
raw_stop win

log_info "--data-dir over ETCD_DATA_DIR, default dir from --name"
mkdir -p "$E2E_TMP/dd.cwd"
P="$(free_port)"
raw_start dd "$E2E_TMP/dd.cwd" "ETCD_DATA_DIR=$E2E_TMP/dd.envdata" -- --name ddname \
	--data-dir "$E2E_TMP/dd.flagdata" --listen-client-urls "http://127.0.0.1:$P" \
	--advertise-client-urls "http://127.0.0.1:$P"
raw_ready dd "http://127.0.0.1:$P"
check "--data-dir over ETCD_DATA_DIR: WAL under the flag's dir" \
	has_wal "$E2E_TMP/dd.flagdata"
check "--data-dir over ETCD_DATA_DIR: the variable's dir not made" test ! -e "$E2E_TMP/dd.envdata"
raw_stop dd
mkdir -p "$E2E_TMP/dn.cwd"
P="$(free_port)"
raw_start dn "$E2E_TMP/dn.cwd" -- --name flagonly --listen-client-urls "http://127.0.0.1:$P" \
	--advertise-client-urls "http://127.0.0.1:$P"
raw_ready dn "http://127.0.0.1:$P"
check "default data dir from --name: flagonly.etcd/member/wal/*.wal" \
	has_wal "$E2E_TMP/dn.cwd/flagonly.etcd"
raw_stop dn

# ------------------------------------------------ --max-request-bytes ---

log_info "ETCD_MAX_REQUEST_BYTES=2048 sets the request size limit"
ETCD_MAX_REQUEST_BYTES=2048 start_cetcd mrb
wait_ready mrb
V_OK="$(head -c 1900 /dev/zero | tr '\0' o)"
V_BIG="$(head -c 2200 /dev/zero | tr '\0' b)"
check "a 1900-byte value fits under 2048" eval "ctl mrb put small '$V_OK' >/dev/null"
check_eq "the 1900-byte value reads back" 1900 "$(ctl mrb get small --print-value-only | tr -d '\n' | wc -c)"
OUT="$(ctl mrb put big "$V_BIG" 2>&1)" && RC=0 || RC=$?
check "a 2200-byte value is refused" test "$RC" -ne 0
check "... with 'etcdserver: request is too large'" grep -qF "etcdserver: request is too large" <<<"$OUT"
check_eq "... and is not stored" "" "$(ctl mrb get big --print-value-only)"
check "the server still serves" eval "ctl mrb put after x >/dev/null"
stop_node mrb

# ------------------------------------------------------------- shards ---

for n in 1 3; do
	log_info "--shards $n serves puts and gets"
	if ((n == 1)); then
		start_cetcd "sh$n" --shards 1 --pin-shards
	else
		start_cetcd "sh$n" --shards "$n"
	fi
	wait_ready "sh$n"
	check "--shards $n: the log says $n shards" grep -q " $n shards" "$(node_log "sh$n")"
	# One etcdctl per put: each is a new connection, so with several
	# shards they land on different ones; revisions must still be one
	# sequence.
	revs=()
	for ((i = 1; i <= 12; i++)); do
		r="$(ctl "sh$n" put "shk/$i" "v$i" -w json | jq -r '.header.revision')"
		revs+=("$r")
	done
	check_eq "--shards $n: 12 puts got consecutive revisions" "$(seq -s ' ' 2 13)" "${revs[*]}"
	got="$(ctl "sh$n" get --prefix shk/ -w json |
		jq -r '[.kvs[] | "\(.key|@base64d)=\(.value|@base64d)"] | sort | join(" ")')"
	want="$(for ((i = 1; i <= 12; i++)); do printf 'shk/%d=v%d\n' "$i" "$i"; done | sort | tr '\n' ' ')"
	check_eq "--shards $n: every key reads back" "${want% }" "$got"
	bad=0
	for ((i = 1; i <= 12; i++)); do
		[[ "$(ctl "sh$n" get "shk/$i" --print-value-only)" == "v$i" ]] || bad=$((bad + 1))
	done
	check_eq "--shards $n: each key read back on its own connection" 0 "$bad"
	stop_node "sh$n"
done

# ------------------------------------------------ cluster flags vs etcd ---

# etcd_message ERRFILE: the message in real etcd's stderr: the text after
# "etcdmain: " on its first E/C log line, else its first line (flag syntax
# errors, followed by the usage), with "etcd --help" read as "cetcd --help".
etcd_message() {
	local line
	line="$(grep -m1 -E ' [EC] \| etcdmain: ' "$1" || true)"
	if [[ -n "$line" ]]; then
		line="${line#*etcdmain: }"
	else
		line="$(head -n 1 "$1")"
	fi
	printf '%s\n' "${line//"'etcd --help'"/"'cetcd --help'"}"
}

# Real etcd for the live comparisons, if installed.
HAVE_ETCD=0
# shellcheck disable=SC2153 # ETCD_BIN comes from lib.sh
command -v "$ETCD_BIN" >/dev/null 2>&1 && HAVE_ETCD=1
((HAVE_ETCD)) || log_info "real etcd not installed: live comparisons skipped"

# Ports of the comparison runs: one client and one peer port, both free;
# the runs are sequential and each one exits (or is stopped) in turn.
CMP_CP="$(free_port)"
CMP_PP="$(free_port)"
CMP_C="http://127.0.0.1:$CMP_CP"
CMP_P="http://127.0.0.1:$CMP_PP"
CMP_N=0

# expect_like_etcd DESC WANT_RC WANT_MSG [VAR=VALUE..] -- ARG..: cetcd run
# with a name, data dir, client and peer URLs, then ARG.. (later flags
# win) must exit WANT_RC with exactly "cetcd: WANT_MSG" on stderr, nothing
# listening and no data dir; real etcd run the same way must exit WANT_RC
# and print the same message (with CMP_C/CMP_P in place of the ports).
expect_like_etcd() {
	local desc="$1" want_rc="$2" want_msg="$3" tag dir envs=() ertag
	shift 3
	while [[ "$1" != -- ]]; do
		envs+=("$1")
		shift
	done
	shift
	CMP_N=$((CMP_N + 1))
	tag="cmp$CMP_N"
	dir="$E2E_TMP/$tag.cwd"
	mkdir -p "$dir"
	local base=(--name m1 --data-dir "$dir/data" --listen-client-urls "$CMP_C"
		--advertise-client-urls "$CMP_C" --listen-peer-urls "$CMP_P"
		--initial-advertise-peer-urls "$CMP_P" --initial-cluster "m1=$CMP_P")
	fg_run "$tag" "$dir" "${envs[@]}" -- "${base[@]}" "$@"
	check_eq "$desc: cetcd exit status" "$want_rc" "$FG_RC"
	check_eq "$desc: cetcd's one line" "cetcd: $want_msg" "$(cat "$E2E_TMP/$tag.err")"
	check "$desc: cetcd made no data dir" test -z "$(ls -A "$dir")"
	check "$desc: nothing listening" eval "! listening $CMP_CP"
	((HAVE_ETCD)) || return 0
	ertag="$tag.etcd"
	mkdir -p "$E2E_TMP/$ertag.cwd"
	local rc=0
	(cd "$E2E_TMP/$ertag.cwd" && exec timeout -k 2 "$FG_LIMIT_S" env "${envs[@]}" "$ETCD_BIN" \
		"${base[@]/#"$dir"/"$E2E_TMP/$ertag.cwd"}" "$@") </dev/null >/dev/null \
		2>"$E2E_TMP/$ertag.err" || rc=$?
	check_eq "$desc: real etcd exits $want_rc too" "$want_rc" "$rc"
	check_eq "$desc: real etcd's message is the same" "$want_msg" \
		"$(etcd_message "$E2E_TMP/$ertag.err")"
}

log_info "cluster flags: etcd's messages and exit statuses"
expect_like_etcd "name not in --initial-cluster" 1 \
	"couldn't find local name \"m1\" in the initial cluster configuration" \
	-- --initial-cluster "other=$CMP_P"
expect_like_etcd "--initial-cluster \"\" (explicitly empty)" 1 \
	"couldn't find local name \"m1\" in the initial cluster configuration" \
	-- --initial-cluster ""
expect_like_etcd "--initial-cluster entry differs from the advertised URL" 1 \
	"--initial-cluster has m1=http://127.0.0.1:1 but missing from --initial-advertise-peer-urls=$CMP_P (resolved urls: \"$CMP_P\" != \"http://127.0.0.1:1\")" \
	-- --initial-cluster "m1=http://127.0.0.1:1"
expect_like_etcd "--initial-cluster gives one URL more than advertised" 1 \
	"--initial-cluster has m1=http://127.0.0.2:1 but missing from --initial-advertise-peer-urls=$CMP_P (len([\"$CMP_P\"]) != len([\"$CMP_P\" \"http://127.0.0.2:1\"]))" \
	-- --initial-cluster "m1=$CMP_P,m1=http://127.0.0.2:1"
expect_like_etcd "an advertised URL missing from --initial-cluster" 1 \
	"--initial-advertise-peer-urls has http://127.0.0.2:1 but missing from --initial-cluster=m1=$CMP_P,m1=http://127.0.0.2:1" \
	-- --initial-advertise-peer-urls "$CMP_P,http://127.0.0.2:1"
expect_like_etcd "one URL for two members" 1 \
	"initial cluster m1=$CMP_P,m2=$CMP_P has duplicate url" \
	-- --initial-cluster "m1=$CMP_P,m2=$CMP_P"
expect_like_etcd "--initial-cluster foo" 1 \
	"error setting up initial cluster: URL scheme must be http, https, unix, or unixs: " \
	-- --initial-cluster foo
expect_like_etcd "--initial-cluster with a path" 1 \
	"error setting up initial cluster: URL must not contain a path: $CMP_P/p" \
	-- --initial-cluster "m1=$CMP_P/p"
expect_like_etcd "--initial-cluster without a port" 1 \
	"error setting up initial cluster: URL address does not have the form \"host:port\": http://127.0.0.1" \
	-- --initial-cluster "m1=http://127.0.0.1"
expect_like_etcd "--initial-cluster-state bogus" 2 \
	"invalid value \"bogus\" for flag -initial-cluster-state: invalid value" \
	-- --initial-cluster-state bogus
expect_like_etcd "ETCD_INITIAL_CLUSTER_STATE=bogus" 1 \
	"error verifying flags, invalid value \"bogus\" for ETCD_INITIAL_CLUSTER_STATE: invalid value. See 'cetcd --help'." \
	ETCD_INITIAL_CLUSTER_STATE=bogus --
expect_like_etcd "--heartbeat-interval 300 (election timeout < 5x)" 1 \
	"error verifying flags, --election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[300ms]. See 'cetcd --help'." \
	-- --heartbeat-interval 300
expect_like_etcd "--election-timeout 499" 1 \
	"error verifying flags, --election-timeout[499ms] should be at least as 5 times as --heartbeat-interval[100ms]. See 'cetcd --help'." \
	-- --election-timeout 499
expect_like_etcd "--election-timeout 60000 (over 50000)" 1 \
	"error verifying flags, --election-timeout[60000ms] is too long, and should be set less than 50000ms. See 'cetcd --help'." \
	-- --election-timeout 60000
expect_like_etcd "--heartbeat-interval 0" 1 \
	"error verifying flags, --heartbeat-interval must be >0 (set to 0ms). See 'cetcd --help'." \
	-- --heartbeat-interval 0
expect_like_etcd "--heartbeat-interval -1" 2 \
	"invalid value \"-1\" for flag -heartbeat-interval: parse error" -- --heartbeat-interval -1
expect_like_etcd "ETCD_ELECTION_TIMEOUT=abc" 1 \
	"error verifying flags, invalid value \"abc\" for ETCD_ELECTION_TIMEOUT: parse error. See 'cetcd --help'." \
	ETCD_ELECTION_TIMEOUT=abc --
expect_like_etcd "--listen-peer-urls foo" 2 \
	"invalid value \"foo\" for flag -listen-peer-urls: URL scheme must be http, https, unix, or unixs: foo" \
	-- --listen-peer-urls foo
expect_like_etcd "--listen-peer-urls with a host name" 1 \
	"error verifying flags, expected IP in URL for binding (http://myhost.invalid:$CMP_PP). See 'cetcd --help'." \
	-- --listen-peer-urls "http://myhost.invalid:$CMP_PP"
expect_like_etcd "--initial-advertise-peer-urls with a path" 2 \
	"invalid value \"$CMP_P/x\" for flag -initial-advertise-peer-urls: URL must not contain a path: $CMP_P/x" \
	-- --initial-advertise-peer-urls "$CMP_P/x"
expect_like_etcd "--initial-advertise-peer-urls with an empty host" 1 \
	"error verifying flags, --initial-advertise-peer-urls \"http://:$CMP_PP\" must be \"host:port\" (unexpected empty host (http://:$CMP_PP)). See 'cetcd --help'." \
	-- --initial-advertise-peer-urls "http://:$CMP_PP" --initial-cluster "m1=http://:$CMP_PP"
expect_like_etcd "--strict-reconfig-check=maybe" 2 \
	"invalid boolean value \"maybe\" for -strict-reconfig-check: parse error" \
	-- --strict-reconfig-check=maybe

log_info "cluster flags that start: accepted values"
mkdir -p "$E2E_TMP/cl.cwd"
P="$(free_port)"
PEER_P="$(free_port)"
raw_start cl "$E2E_TMP/cl.cwd" "ETCD_HEARTBEAT_INTERVAL=50" "ETCD_ELECTION_TIMEOUT=500" -- \
	--name cl1 --data-dir "$E2E_TMP/cl.data" --listen-client-urls "http://127.0.0.1:$P" \
	--advertise-client-urls "http://127.0.0.1:$P" --listen-peer-urls "http://127.0.0.1:$PEER_P" \
	--initial-advertise-peer-urls "http://127.0.0.1:$PEER_P" \
	--initial-cluster ",cl1=http://127.0.0.1:$PEER_P," --initial-cluster-state new \
	--strict-reconfig-check=false --max-snapshots 3 --max-wals 3
raw_ready cl "http://127.0.0.1:$P"
check "heartbeat 50 / election 500 (variables), empty --initial-cluster pieces: serves" \
	eval "url_ctl http://127.0.0.1:$P put clk clv >/dev/null"
raw_stop cl

# ------------------------------------------------------- --config-file ---

# yaml_cfg FILE CPORT PPORT NAME DATA [EXTRA-LINES]: a config file with
# etcd's keys for a one-member cluster.
yaml_cfg() {
	cat >"$1" <<-YAML
		# cetcd e2e: etcd's sample keys
		name: '$4'
		data-dir: $5
		wal-dir:
		snapshot-count: 10000
		heartbeat-interval: 100
		election-timeout: 1000
		quota-backend-bytes: 0
		listen-peer-urls: http://127.0.0.1:$3
		listen-client-urls: http://127.0.0.1:$2
		max-snapshots: 5
		max-wals: 5
		initial-advertise-peer-urls: http://127.0.0.1:$3
		advertise-client-urls: http://127.0.0.1:$2
		initial-cluster: $4=http://127.0.0.1:$3
		initial-cluster-token: 'yaml-token'
		initial-cluster-state: 'new'
		strict-reconfig-check: false
		enable-v2: true
		client-transport-security:
		  cert-file:
		  client-cert-auth: false
		  nested: [1, 2, {deeper: x}]
		some-unknown-key: [a, b]
		auto-compaction-mode: periodic
		auto-compaction-retention: "1"
		${6:-}
	YAML
}

log_info "--config-file: a valid file configures the server; flags and variables are ignored"
mkdir -p "$E2E_TMP/yaml.cwd"
P="$(free_port)"
PEER_P="$(free_port)"
P_FLAG="$(free_port)"
yaml_cfg "$E2E_TMP/good.yaml" "$P" "$PEER_P" yamlnode "$E2E_TMP/yaml.data" "max-request-bytes: 2048"
raw_start yaml "$E2E_TMP/yaml.cwd" ETCD_NAME=envname ETCD_MAX_REQUEST_BYTES=abc \
	"ETCD_DATA_DIR=$E2E_TMP/yaml.envdata" -- --config-file "$E2E_TMP/good.yaml" --name flagname \
	--listen-client-urls "http://127.0.0.1:$P_FLAG" --advertise-client-urls "http://127.0.0.1:$P_FLAG"
raw_ready yaml "http://127.0.0.1:$P"
check "config file: serves on the file's client URL" \
	eval "url_ctl http://127.0.0.1:$P put yk yv >/dev/null"
check_eq "config file: put then get" yv "$(url_ctl "http://127.0.0.1:$P" get yk --print-value-only)"
check "config file: the name is the file's (log)" grep -q '(yamlnode)' "${RAW_LOG[yaml]}"
check "config file: --listen-client-urls ignored (nothing on its port)" eval "! listening $P_FLAG"
check "config file: the WAL is in the file's data-dir" has_wal "$E2E_TMP/yaml.data"
check "config file: ETCD_DATA_DIR ignored" test ! -e "$E2E_TMP/yaml.envdata"
check "config file: the working directory is untouched" test -z "$(ls -A "$E2E_TMP/yaml.cwd")"
check "config file: the start says flags and variables are ignored" \
	grep -q 'ignored' "${RAW_LOG[yaml]}"
V_BIG="$(head -c 2200 /dev/zero | tr '\0' b)"
OUT="$(url_ctl "http://127.0.0.1:$P" put big "$V_BIG" 2>&1)" && RC=0 || RC=$?
check "config file: max-request-bytes 2048 from the file refuses 2200 bytes" \
	eval "[[ $RC -ne 0 ]] && grep -qF 'request is too large' <<<\"\$OUT\""
raw_stop yaml

log_info "ETCD_CONFIG_FILE names the file when --config-file is not given"
mkdir -p "$E2E_TMP/yenv.cwd"
P="$(free_port)"
PEER_P="$(free_port)"
yaml_cfg "$E2E_TMP/env.yaml" "$P" "$PEER_P" yenvnode "$E2E_TMP/yenv.data"
raw_start yenv "$E2E_TMP/yenv.cwd" "ETCD_CONFIG_FILE=$E2E_TMP/env.yaml" ETCD_NAME=ignored --
raw_ready yenv "http://127.0.0.1:$P"
check "ETCD_CONFIG_FILE: the name is the file's" grep -q '(yenvnode)' "${RAW_LOG[yenv]}"
check "ETCD_CONFIG_FILE: serves" eval "url_ctl http://127.0.0.1:$P put a b >/dev/null"
raw_stop yenv

# expect_file_like_etcd DESC WANT_MSG YAML: cetcd and real etcd given a
# config file with YAML must both exit 1 with WANT_MSG.
expect_file_like_etcd() {
	local f="$E2E_TMP/cmpfile$CMP_N.yaml"
	printf '%s\n' "$3" >"$f"
	expect_like_etcd "$1" 1 "$2" -- --config-file "$f"
}

log_info "--config-file: errors as etcd's"
CMP_BASE="data-dir: $E2E_TMP/never
listen-client-urls: $CMP_C
advertise-client-urls: $CMP_C
listen-peer-urls: $CMP_P
initial-advertise-peer-urls: $CMP_P
initial-cluster: default=$CMP_P"
expect_file_like_etcd "config file: unclosed flow sequence" \
	"error verifying flags, error converting YAML to JSON: yaml: line 7: did not find expected ',' or ']'. See 'cetcd --help'." \
	"$CMP_BASE
name: [unclosed"
expect_file_like_etcd "config file: a: b: c" \
	"error verifying flags, error converting YAML to JSON: yaml: mapping values are not allowed in this context. See 'cetcd --help'." \
	"a: b: c"
expect_file_like_etcd "config file: a quoted number for a uint" \
	"error verifying flags, error unmarshaling JSON: while decoding JSON: json: cannot unmarshal string into Go struct field configYAML.heartbeat-interval of type uint. See 'cetcd --help'." \
	"$CMP_BASE
heartbeat-interval: \"100\""
expect_file_like_etcd "config file: a negative uint" \
	"error verifying flags, error unmarshaling JSON: while decoding JSON: json: cannot unmarshal number -5 into Go struct field configYAML.election-timeout of type uint. See 'cetcd --help'." \
	"$CMP_BASE
election-timeout: -5"
expect_file_like_etcd "config file: a number for a string" \
	"error verifying flags, error unmarshaling JSON: while decoding JSON: json: cannot unmarshal number into Go struct field configYAML.name of type string. See 'cetcd --help'." \
	"$CMP_BASE
name: 123"
expect_file_like_etcd "config file: a list for a string" \
	"error verifying flags, error unmarshaling JSON: while decoding JSON: json: cannot unmarshal array into Go struct field configYAML.initial-cluster-token of type string. See 'cetcd --help'." \
	"$CMP_BASE
initial-cluster-token: [a, b]"
expect_file_like_etcd "config file: a list at the top" \
	"error verifying flags, error unmarshaling JSON: while decoding JSON: json: cannot unmarshal array into Go value of type embed.configYAML. See 'cetcd --help'." \
	"- a"
expect_file_like_etcd "config file: initial-cluster-state bogus" \
	"error verifying flags, unexpected clusterState \"bogus\". See 'cetcd --help'." \
	"$CMP_BASE
initial-cluster-state: bogus"
expect_file_like_etcd "config file: election-timeout under 5x heartbeat" \
	"error verifying flags, --election-timeout[400ms] should be at least as 5 times as --heartbeat-interval[100ms]. See 'cetcd --help'." \
	"$CMP_BASE
election-timeout: 400"
expect_file_like_etcd "config file: name not in initial-cluster" \
	"couldn't find local name \"zz\" in the initial cluster configuration" \
	"$CMP_BASE
name: zz"
expect_like_etcd "config file: missing" 1 \
	"error verifying flags, open $E2E_TMP/no-such.yaml: no such file or directory. See 'cetcd --help'." \
	-- --config-file "$E2E_TMP/no-such.yaml"
head -c $((1024 * 1024 + 10)) /dev/zero | tr '\0' '#' >"$E2E_TMP/huge.yaml"
expect_rejected "config file over 1 MiB" 1 "larger than 1048576 bytes" \
	-- --config-file "$E2E_TMP/huge.yaml"
printf 'wal-dir: %s/elsewhere\n' "$E2E_TMP" >"$E2E_TMP/waldir.yaml"
expect_rejected "config file: wal-dir set" 1 "--wal-dir" -- --config-file "$E2E_TMP/waldir.yaml"
printf 'listen-peer-urls: foo\n' >"$E2E_TMP/badurl.yaml"
expect_rejected "config file: a bad URL" 1 \
	"unexpected error setting up listen-peer-urls: URL scheme must be http, https, unix, or unixs: foo" \
	-- --config-file "$E2E_TMP/badurl.yaml"

# --------------------------------------------- member and cluster IDs ---

log_info "member and cluster IDs: cetcd and real etcd agree"
if ((HAVE_ETCD)); then
	ID_PEER="http://127.0.0.1:$(free_port)"
	E2E_NAME=idnode E2E_PEER_URL="$ID_PEER" start_etcd idetcd --initial-cluster-token id-token
	wait_ready idetcd
	ES="$(ctl idetcd endpoint status -w json)"
	E_MID="$(jq -r '.[0].Status.header.member_id' <<<"$ES")"
	E_CID="$(jq -r '.[0].Status.header.cluster_id' <<<"$ES")"
	check_eq "etcd: member list ID is the status member_id" "$E_MID" \
		"$(ctl idetcd member list -w json | jq -r '.members[0].ID')"
	stop_node idetcd
	E2E_NAME=idnode E2E_PEER_URL="$ID_PEER" start_cetcd idcetcd --initial-cluster-token id-token
	wait_ready idcetcd
	CS="$(ctl idcetcd endpoint status -w json)"
	check_eq "same flags: cetcd's member_id is etcd's" "$E_MID" \
		"$(jq -r '.[0].Status.header.member_id' <<<"$CS")"
	check_eq "same flags: cetcd's cluster_id is etcd's" "$E_CID" \
		"$(jq -r '.[0].Status.header.cluster_id' <<<"$CS")"
	stop_node idcetcd
	# Without --initial-cluster cetcd uses <name>=<advertised peer URLs>.
	mkdir -p "$E2E_TMP/idraw.cwd"
	P="$(free_port)"
	raw_start idraw "$E2E_TMP/idraw.cwd" -- --name idnode --data-dir "$E2E_TMP/idraw.data" \
		--listen-client-urls "http://127.0.0.1:$P" --advertise-client-urls "http://127.0.0.1:$P" \
		--initial-advertise-peer-urls "$ID_PEER" --initial-cluster-token id-token
	raw_ready idraw "http://127.0.0.1:$P"
	CS="$(url_ctl "http://127.0.0.1:$P" endpoint status -w json)"
	check_eq "no --initial-cluster: member_id as etcd's with name=peer-url" "$E_MID" \
		"$(jq -r '.[0].Status.header.member_id' <<<"$CS")"
	check_eq "no --initial-cluster: cluster_id as etcd's" "$E_CID" \
		"$(jq -r '.[0].Status.header.cluster_id' <<<"$CS")"
	raw_stop idraw
else
	log_info "real etcd not installed: ID comparison skipped"
fi

# ---------------------------------------------------- port in use ---

# in_use_case DESC PORT [NODE]: a start on 127.0.0.1:PORT (taken) must end,
# non-zero, with one line naming the address. If NODE (a lib.sh node whose
# key "owner" holds "NODE") holds the port, it is read from on new
# connections while the second start runs: every read must reach NODE's
# store (SO_REUSEPORT would let two processes share the port and split
# the connections between two stores).
in_use_case() {
	local desc="$1" port="$2" node="${3:-}" tag="inuse$2" err bad=0 i bg
	mkdir -p "$E2E_TMP/$tag.cwd"
	FG_TAGS+=("$tag")
	(
		fg_run "$tag" "$E2E_TMP/$tag.cwd" -- --name inuse --data-dir "$E2E_TMP/$tag.data" \
			--listen-client-urls "http://127.0.0.1:$port" \
			--advertise-client-urls "http://127.0.0.1:$port"
		echo "$FG_RC" >"$E2E_TMP/$tag.rc"
	) &
	bg=$!
	if [[ -n "$node" ]]; then
		sleep 1.5
		for ((i = 0; i < 8; i++)); do
			[[ "$(ctl "$node" get owner --print-value-only 2>/dev/null)" == "$node" ]] ||
				bad=$((bad + 1))
		done
		check_eq "$desc: reads meanwhile all reach the first server's store" 0 "$bad"
	fi
	wait "$bg" || true
	FG_RC="$(cat "$E2E_TMP/$tag.rc")"
	err="$E2E_TMP/$tag.err"
	check "$desc: the start ends within ${FG_LIMIT_S}s (exit $FG_RC)" test "$FG_RC" -ne 124
	check "$desc: exits non-zero" test "$FG_RC" -ne 0
	check_eq "$desc: exactly one line on stderr" 1 "$(line_count "$err")"
	check "$desc: stderr names 127.0.0.1:$port" grep -qF "127.0.0.1:$port" "$err"
	head -n 3 "$err" | sed 's/^/#   stderr: /'
}

log_info "a client port already in use by a plain listening socket"
if command -v python3 >/dev/null 2>&1; then
	P="$(free_port)"
	python3 -c '
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
open(sys.argv[2], "w").close()
time.sleep(60)
' "$P" "$E2E_TMP/sockholder.ready" </dev/null >/dev/null 2>&1 &
	HOLDER=$!
	# shellcheck disable=SC2016 # expanded at exit
	e2e_on_cleanup '[[ -n "${HOLDER:-}" ]] && kill -KILL "$HOLDER"'
	deadline=$((SECONDS + 10))
	while [[ ! -e "$E2E_TMP/sockholder.ready" ]] && ((SECONDS < deadline)); do
		sleep 0.05
	done
	[[ -e "$E2E_TMP/sockholder.ready" ]] || fail "the python3 port holder did not start"
	in_use_case "port held by a socket" "$P"
	kill -KILL "$HOLDER" 2>/dev/null || true
	wait "$HOLDER" 2>/dev/null || true
	HOLDER=""
else
	log_info "python3 not installed: skipping the plain-socket case"
fi

log_info "a client port already in use by another cetcd"
start_cetcd holder
wait_ready holder
ctl holder put owner holder >/dev/null
ctl holder get owner --print-value-only | grep -qx holder || fail "holder lost its key"
in_use_case "port held by another cetcd" "${NODE_CPORT[holder]}" holder
stop_node holder

log_info "a client port out of range"
mkdir -p "$E2E_TMP/range.cwd"
fg_run range "$E2E_TMP/range.cwd" -- --name range --data-dir "$E2E_TMP/range.data" \
	--listen-client-urls http://127.0.0.1:99999 --advertise-client-urls http://127.0.0.1:99999
check "port 99999: the start ends within ${FG_LIMIT_S}s, non-zero (exit $FG_RC)" \
	test "$FG_RC" -ne 124 -a "$FG_RC" -ne 0
check "port 99999: stderr names it" grep -qF "99999" "$E2E_TMP/range.err"

for t in "${FG_TAGS[@]}"; do
	check "no sanitizer report in the output of '$t'" no_sanitizer_report "$E2E_TMP/$t.err"
done
e2e_finish
