#!/usr/bin/env bash
# tests/e2e/test_restart.sh: what the write-ahead log gives back on restart.
#
# The WAL format is documented at the top of src/raft/wal.c: segments
# data-dir/member/wal/SSSSSSSSSSSSSSSS-IIIIIIIIIIIIIIII.wal, preallocated
# (64 MiB) and zero after the last record; each record is a 16-byte header
# (len u32, type u8, back u24, prev_crc u32, crc u32), then len payload
# bytes padded to a multiple of 8; the records end at the first all-zero
# header. Each start writes a HARDSTATE of a new term and an empty entry.
#
# The test keeps a model of every key under r/ (value and mod_revision of
# each acknowledged put, minus deletes) and after every restart compares
# the store with it exactly, and the store's revision with the last one
# acknowledged:
#  (a) SIGTERM, restart: every key and revision back, raftTerm + 1, the
#      next put gets the next revision;
#  (b) the same after SIGKILL right after the last acknowledged put;
#  (c) torn tails, made by hand on the stopped server's last segment:
#      c1 garbage in the middle of the last record (the last put, cut: all
#         other keys there), c2 garbage right after the last record, c3
#         garbage a page after it (a torn write of a batch never
#         acknowledged: nothing lost); each restart must say it cut a torn
#         tail, and new puts must work and survive another restart;
#  (d) a flipped byte inside an early record with valid records after it:
#      the start fails by itself (bounded wait) with "<segment>: corrupt
#      record at offset <n>", leaves the file as it was, and starts again
#      once the byte is restored;
#  (e) 5 restarts in a row (SIGTERM and SIGKILL alternately): raftTerm goes
#      up by exactly one per restart, revisions keep counting without gaps;
#  (f) a log of two segments (about 68 MB of puts) replays whole;
#  (g) a second cetcd started on the data dir of a running one must not
#      serve (etcd 3.4 blocks on its data dir lock); the first one's data
#      must survive.
#
# Env: CETCD_BIN (set by meson); E2E_CETCD_IS_ETCD=1 runs (a), (b) and (e)
# against real etcd (the rest is about cetcd's own files).
# shellcheck disable=SC2317 # helpers run through check and eval
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

command -v jq >/dev/null 2>&1 || skip "jq not installed"
command -v od >/dev/null 2>&1 || skip "od not installed"
IS_ETCD="${E2E_CETCD_IS_ETCD:-0}"
SANITIZER_RE='ERROR: (Address|Leak|Thread)Sanitizer|runtime error:|WARNING: ThreadSanitizer'
FG_LIMIT_S=20 # a start that must fail gets this long to do so

# ----------------------------------------------------------- the model ---

declare -A MODEL # key -> "value mod_revision"
MAXREV=1         # the store's revision as last acknowledged

# mput NODE KEY VALUE: put, which must be acknowledged; record it in the
# model. Leaves the revision in PUT_REV.
PUT_REV=0
mput() {
	local out
	out="$(ctl "$1" put -w json "$2" "$3")" || fail "put $2 was not acknowledged"
	PUT_REV="$(jq -r '.header.revision' <<<"$out")"
	[[ "$PUT_REV" =~ ^[0-9]+$ ]] || fail "put $2: no revision in '$out'"
	MODEL[$2]="$3 $PUT_REV"
	MAXREV="$PUT_REV"
}

# mdel NODE KEY: delete an existing key; record it in the model.
mdel() {
	local out n
	out="$(ctl "$1" del -w json "$2")" || fail "del $2 was not acknowledged"
	n="$(jq -r '.deleted // 0' <<<"$out")"
	[[ "$n" == 1 ]] || fail "del $2 deleted $n keys"
	unset "MODEL[$2]"
	MAXREV="$(jq -r '.header.revision' <<<"$out")"
}

# model_dump / store_dump: "key value mod_revision" lines, sorted.
model_dump() {
	local k
	for k in "${!MODEL[@]}"; do
		printf '%s %s\n' "$k" "${MODEL[$k]}"
	done | LC_ALL=C sort
}

store_dump() {
	ctl "$1" get --prefix r/ -w json |
		jq -r '.kvs // [] | .[] | "\(.key|@base64d) \((.value // "")|@base64d) \(.mod_revision)"' |
		LC_ALL=C sort
}

store_rev() {
	ctl "$1" get r/none -w json | jq -r '.header.revision'
}

raft_term() {
	ctl "$1" endpoint status -w json | jq -r '.[0].Status.raftTerm'
}

# verify NODE WHAT: the store equals the model, and its revision is MAXREV.
verify() {
	local node="$1" what="$2" want got
	want="$(model_dump)"
	got="$(store_dump "$node")" || fail "$what: reading the store failed"
	if [[ "$want" == "$got" ]]; then
		check "$what: all ${#MODEL[@]} keys with their values and mod_revisions" true
	else
		check "$what: all ${#MODEL[@]} keys with their values and mod_revisions" false
		diff <(echo "$want") <(echo "$got") | head -n 10 | sed 's/^/#   model vs store: /'
	fi
	check_eq "$what: store revision" "$MAXREV" "$(store_rev "$node")"
}

# restart_ready NODE: restart_node + wait_ready.
restart_ready() {
	restart_node "$1"
	wait_ready "$1"
}

# log_since_start NODE: the node's log since its last start.
log_since_start() {
	awk '/^=== .* start: /{buf=""} {buf = buf $0 "\n"} END {printf "%s", buf}' "$(node_log "$1")"
}

# ------------------------------------------------------ byte surgery ---

# last_segment NODE: path of the newest WAL segment.
last_segment() {
	local segs
	segs="$(find "$(node_dir "$1")/member/wal" -maxdepth 1 -name '*.wal' | LC_ALL=C sort)"
	[[ -n "$segs" ]] || fail "no WAL segment in $(node_dir "$1")/member/wal"
	tail -n 1 <<<"$segs"
}

# wal_walk FILE: "offset len type back" for each record, in order, up to
# the first all-zero header. Stops (and says so on stderr) at a header
# that makes no sense.
wal_walk() {
	local f="$1" off=0 size w0 w1 w2 w3 len type n=0
	size="$(stat -c %s "$f")"
	while ((off + 16 <= size && n < 100000)); do
		read -r w0 w1 w2 w3 < <(od -An -tu4 -j "$off" -N 16 -v "$f")
		if ((w0 == 0 && w1 == 0 && w2 == 0 && w3 == 0)); then
			return 0
		fi
		len="$w0"
		type=$((w1 & 255))
		if ((type < 1 || type > 3 || off + 16 + len > size)); then
			echo "wal_walk: $f: bad header at offset $off" >&2
			return 1
		fi
		printf '%d %d %d %d\n' "$off" "$len" "$type" $((w1 >> 8))
		off=$((off + 16 + ((len + 7) / 8) * 8))
		n=$((n + 1))
	done
}

# poke FILE OFFSET HEX: overwrite bytes at OFFSET with HEX ("deadbeef").
poke() {
	local esc
	# shellcheck disable=SC2001 # every two hex digits, not one pattern
	esc="$(sed 's/../\\x&/g' <<<"$3")"
	# shellcheck disable=SC2059 # the format is the escaped bytes
	printf "$esc" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# byte_at FILE OFFSET: the byte there, as two hex digits.
byte_at() {
	od -An -tx1 -j "$2" -N 1 -v "$1" | tr -d ' \n'
}

# flip FILE OFFSET: invert every bit of one byte.
flip() {
	local b
	b="$(byte_at "$1" "$2")"
	poke "$1" "$2" "$(printf '%02x' $((0x$b ^ 0xff)))"
}

# fg_start NODE TAG: start NODE's command line in the foreground (at most
# FG_LIMIT_S seconds); stderr to $E2E_TMP/TAG.err, exit status to FG_RC.
FG_RC=0
fg_start() {
	local id="$1" tag="$2"
	FG_RC=0
	timeout -k 2 "$FG_LIMIT_S" "$CETCD_BIN" --name "$id" --data-dir "$(node_dir "$id")" \
		--listen-client-urls "$(node_url "$id")" --advertise-client-urls "$(node_url "$id")" \
		--initial-advertise-peer-urls "$(node_peer_url "$id")" \
		</dev/null >"$E2E_TMP/$tag.out" 2>"$E2E_TMP/$tag.err" || FG_RC=$?
}

no_sanitizer_report() {
	! grep -qE "$SANITIZER_RE" "$1" 2>/dev/null
}

# ---------------------------------------------------- (a) SIGTERM ---

START=$SECONDS
log_info "(a) puts, SIGTERM, restart"
start_cetcd srv
wait_ready srv
TERM0="$(raft_term srv)"
check "raftTerm after the first start is a number ($TERM0)" test "${TERM0:-x}" -ge 1
MAXREV="$(store_rev srv)"
bad=0
for ((i = 1; i <= 20; i++)); do
	PREV=$MAXREV
	mput srv "r/a/$(printf '%02d' "$i")" "value-a-$i"
	((PUT_REV == PREV + 1)) || bad=$((bad + 1))
done
check_eq "(a) 20 puts got consecutive revisions" 0 "$bad"
FIRST_REV_01="$(jq -r '.kvs[0].create_revision' <<<"$(ctl srv get r/a/01 -w json)")"
mput srv r/a/01 value-a-1-second
mput srv r/a/01 value-a-1-third
mput srv r/a/gone soon-deleted
mdel srv r/a/gone
mput srv r/a/empty ""
verify srv "(a) before SIGTERM"
stop_node srv TERM
restart_ready srv
verify srv "(a) after SIGTERM"
KV01="$(ctl srv get r/a/01 -w json)"
check_eq "(a) r/a/01 keeps its create_revision" "$FIRST_REV_01" "$(jq -r '.kvs[0].create_revision' <<<"$KV01")"
check_eq "(a) r/a/01 keeps its version" 3 "$(jq -r '.kvs[0].version' <<<"$KV01")"
check_eq "(a) raftTerm went up by one" $((TERM0 + 1)) "$(raft_term srv)"
PREV=$MAXREV
mput srv r/a/next after-restart
check_eq "(a) the next put gets the next revision" $((PREV + 1)) "$PUT_REV"

# ---------------------------------------------------- (b) SIGKILL ---

log_info "(b) puts, SIGKILL right after the last acknowledgement, restart"
T="$(raft_term srv)"
for ((i = 1; i <= 20; i++)); do
	mput srv "r/b/$(printf '%02d' "$i")" "value-b-$i"
done
kill_node srv
restart_ready srv
verify srv "(b) after SIGKILL"
check_eq "(b) raftTerm went up by one" $((T + 1)) "$(raft_term srv)"
PREV=$MAXREV
mput srv r/b/next after-kill
check_eq "(b) the next put gets the next revision" $((PREV + 1)) "$PUT_REV"

if [[ "$IS_ETCD" != 1 ]]; then
	# -------------------------------------------- (c) torn tails ---

	# torn_case NAME HOW: put 5 keys (the last with a long value), stop,
	# damage the last segment as HOW says, restart, check.
	#   "in the middle of the last record": the last put is lost, nothing
	#   else; "right after the last record", "4 KiB after the last record":
	#   a batch never acknowledged, nothing lost.
	torn_case() {
		local name="$1" how="$2" seg recs last off len type end t torn i lastkey want_cut
		log_info "(c) torn tail '$name': garbage $how"
		for ((i = 1; i <= 4; i++)); do
			mput srv "r/$name/$i" "value-$name-$i"
		done
		lastkey="r/$name/5"
		mput srv "$lastkey" "$(printf 'L%.0s' {1..300})"
		LOST_REV=$PUT_REV
		t="$(raft_term srv)"
		stop_node srv TERM
		seg="$(last_segment srv)"
		recs="$(wal_walk "$seg")" || fail "cannot walk $seg"
		last="$(tail -n 1 <<<"$recs")"
		read -r off len type _ <<<"$last"
		end=$((off + 16 + ((len + 7) / 8) * 8))
		check_eq "($name) the last record is an entry" 2 "$type"
		check "($name) the last record holds the last put ($lastkey)" \
			eval "dd if='$seg' bs=1 skip=$off count=$((16 + len)) status=none | grep -qaF '$lastkey'"
		check "($name) the file is zero after the records" \
			eval "[[ \$(od -An -tx1 -j $end -N 8192 -v '$seg' | tr -d ' \n0') == '' ]]"
		# want_cut: the bytes from the end of the valid records to the
		# last nonzero byte (see TORN-TAIL RULE in wal.c); the last put's
		# value ends in 'L', so its record's last payload byte is nonzero.
		case "$how" in
		in*)
			poke "$seg" $((off + 16 + len / 2)) deadbeefcafebabe0123456789abcdef
			want_cut=$((16 + len))
			;;
		right*)
			poke "$seg" "$end" 5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a
			want_cut=18
			;;
		4*)
			poke "$seg" $((end + 4096)) a5a5a5a5a5a5a5a5
			want_cut=$((4096 + 8))
			;;
		esac
		restart_ready srv
		torn="$(log_since_start srv | grep -oE 'cut a torn tail of [0-9]+ bytes' || true)"
		check_eq "($name) the log says it cut a torn tail" \
			"cut a torn tail of $want_cut bytes" "$torn"
		if [[ "$how" == in* ]]; then
			# The last put's record is cut: it must be gone, all else there.
			unset "MODEL[$lastkey]"
			MAXREV=$((LOST_REV - 1))
		fi
		verify srv "($name) after the cut"
		check_eq "($name) raftTerm went up by one" $((t + 1)) "$(raft_term srv)"
		PREV=$MAXREV
		for ((i = 1; i <= 3; i++)); do
			mput srv "r/$name/new$i" "new-$name-$i"
		done
		check_eq "($name) new puts continue the revisions" $((PREV + 3)) "$PUT_REV"
		stop_node srv TERM
		restart_ready srv
		verify srv "($name) new puts survive another restart"
		check "($name) no torn tail the second time" \
			eval "! log_since_start srv | grep -q 'torn tail'"
	}
	torn_case c1 "in the middle of the last record"
	torn_case c2 "right after the last record"
	torn_case c3 "4 KiB after the last record"

	# ---------------------------------------- (d) corrupt middle ---

	log_info "(d) a flipped byte in an early record, valid records after it"
	stop_node srv TERM
	SEG="$(last_segment srv)"
	RECS="$(wal_walk "$SEG")" || fail "cannot walk $SEG"
	# Every run so far appended to this one segment: META, then the first
	# start's records (hard state, the leader's empty entry, this member's
	# published attributes, commit records), then r/a/01's first put: the
	# first entry record holding that key.
	OFF="" LEN="" TYPE=""
	while read -r o l t _; do
		[[ "$t" == 2 ]] || continue
		if dd if="$SEG" bs=1 skip="$o" count=$((16 + l)) status=none | grep -qaF r/a/01; then
			OFF="$o" LEN="$l" TYPE="$t"
			break
		fi
	done <<<"$RECS"
	check_eq "(d) an entry record holds the put of r/a/01" 2 "$TYPE"
	check "(d) it is among the first records" \
		test "$(grep -n "^$OFF " <<<"$RECS" | cut -d: -f1)" -le 10
	check "(d) many valid records follow it" test "$(wc -l <<<"$RECS")" -gt 20
	SUM_BEFORE="$(sha256sum <"$SEG")"
	flip "$SEG" $((OFF + 16 + LEN - 2))
	SUM_BAD="$(sha256sum <"$SEG")"
	fg_start srv corrupt
	check "(d) the start fails by itself (exit $FG_RC)" test "$FG_RC" -ne 0 -a "$FG_RC" -ne 124
	WANT="$(realpath "$SEG"): corrupt record at offset $OFF"
	check "(d) stderr says '$WANT'" grep -qF -- "$WANT" "$E2E_TMP/corrupt.err"
	head -n 3 "$E2E_TMP/corrupt.err" | sed 's/^/#   stderr: /'
	check "(d) no sanitizer report from the failed start" no_sanitizer_report "$E2E_TMP/corrupt.err"
	check_eq "(d) the failed start left the segment as it was" "$SUM_BAD" "$(sha256sum <"$SEG")"
	check "(d) nothing listens on the client port" \
		eval "! (exec 3<>/dev/tcp/127.0.0.1/${NODE_CPORT[srv]}) 2>/dev/null"
	flip "$SEG" $((OFF + 16 + LEN - 2))
	check_eq "(d) the byte restored" "$SUM_BEFORE" "$(sha256sum <"$SEG")"
	restart_ready srv
	verify srv "(d) after restoring the byte"
fi

# ------------------------------------------- (e) many restarts ---

log_info "(e) 5 restarts in a row"
for ((n = 1; n <= 5; n++)); do
	T="$(raft_term srv)"
	PREV=$MAXREV
	mput srv "r/e/$n" "value-e-$n"
	check_eq "(e$n) the put got the next revision" $((PREV + 1)) "$PUT_REV"
	if ((n % 2)); then how=TERM; else how=KILL; fi
	stop_node srv "$how"
	restart_ready srv
	check_eq "(e$n) after SIG$how raftTerm went up by one" $((T + 1)) "$(raft_term srv)"
	verify srv "(e$n) after SIG$how"
done

if [[ "$IS_ETCD" != 1 ]]; then
	# -------------------------------------------- (f) two segments ---

	log_info "(f) a log of two segments"
	# etcdctl sends at most 2 MiB per request: 34 puts of 2 MB fill more
	# than one 64 MiB segment.
	start_cetcd roll --max-request-bytes 3000000
	wait_ready roll
	head -c 2000000 /dev/zero | tr '\0' R >"$E2E_TMP/big"
	BIGSUM="$(sha256sum <"$E2E_TMP/big")"
	for ((i = 1; i <= 34; i++)); do
		ctl roll put "r/f/$i" <"$E2E_TMP/big" >/dev/null || fail "(f) big put $i failed"
	done
	ctl roll put r/f/last small >/dev/null
	REV_ROLL="$(store_rev roll)"
	T="$(raft_term roll)"
	NSEG="$(find "$(node_dir roll)/member/wal" -maxdepth 1 -name '*.wal' | wc -l)"
	check "(f) the log has 2 segments (has $NSEG)" test "$NSEG" -ge 2
	kill_node roll
	restart_ready roll
	check_eq "(f) store revision after restart" "$REV_ROLL" "$(store_rev roll)"
	check_eq "(f) raftTerm went up by one" $((T + 1)) "$(raft_term roll)"
	check_eq "(f) all 35 keys there" 35 "$(ctl roll get --prefix r/f/ --keys-only -w json | jq -r '.count')"
	bad=0
	for i in 1 17 34; do
		[[ "$(ctl roll get "r/f/$i" --print-value-only | head -c 2000000 | sha256sum)" == "$BIGSUM" ]] ||
			bad=$((bad + 1))
	done
	check_eq "(f) big values read back intact (first, middle, last)" 0 "$bad"
	check_eq "(f) the last small key" small "$(ctl roll get r/f/last --print-value-only)"
	stop_node roll

	# --------------------------------- (g) one data dir, two servers ---

	log_info "(g) a second cetcd on the data dir of a running one"
	P2="$(free_port)"
	"$CETCD_BIN" --name srv --data-dir "$(node_dir srv)" \
		--listen-client-urls "http://127.0.0.1:$P2" --advertise-client-urls "http://127.0.0.1:$P2" \
		--initial-advertise-peer-urls "$(node_peer_url srv)" \
		</dev/null >"$E2E_TMP/second.log" 2>&1 &
	SECOND=$!
	# shellcheck disable=SC2016 # expanded at exit
	e2e_on_cleanup '[[ -n "${SECOND:-}" ]] && kill -KILL "$SECOND"'
	served=0
	deadline=$((SECONDS + 5))
	while ((SECONDS < deadline)) && kill -0 "$SECOND" 2>/dev/null; do
		if timeout -k 1 5 "$ETCDCTL_BIN" --endpoints="http://127.0.0.1:$P2" --dial-timeout=1s \
			--command-timeout=1s endpoint status >/dev/null 2>&1; then
			served=1
			break
		fi
		sleep 0.1
	done
	check "(g) the second server does not serve the data dir in use" test "$served" = 0
	# Writes through the first one meanwhile, and through the second if it
	# serves (both would be appending to the same segment).
	mput srv r/g/1 first
	if ((served)); then
		timeout -k 1 10 "$ETCDCTL_BIN" --endpoints="http://127.0.0.1:$P2" --command-timeout=2s \
			put r/g/2 second >/dev/null 2>&1 || true
	fi
	mput srv r/g/3 first
	if kill -0 "$SECOND" 2>/dev/null; then
		kill -TERM "$SECOND" 2>/dev/null || true
		deadline=$((SECONDS + E2E_STOP_S))
		while kill -0 "$SECOND" 2>/dev/null && ((SECONDS < deadline)); do
			sleep 0.05
		done
		kill -KILL "$SECOND" 2>/dev/null || true
	else
		log_info "(g) the second server exited: $(head -n 1 "$E2E_TMP/second.log")"
	fi
	wait "$SECOND" 2>/dev/null || true
	SECOND=""
	check "(g) no sanitizer report from the second server" no_sanitizer_report "$E2E_TMP/second.log"
	stop_node srv TERM
	restart_node srv
	deadline=$((SECONDS + E2E_READY_S))
	while ((SECONDS < deadline)) && node_alive srv &&
		! ctl srv endpoint status >/dev/null 2>&1; do
		sleep 0.1
	done
	if node_alive srv; then
		verify srv "(g) the first server's data after both stopped"
	else
		check "(g) the first server restarts on its data dir" false
		log_since_start srv | tail -n 3 | sed 's/^/#   log: /'
	fi
fi

log_info "$((SECONDS - START)) s"
e2e_finish
