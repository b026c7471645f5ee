#!/usr/bin/env bash
# Durability under kill -9: no acknowledged write is ever lost.
#
# Each cycle: W concurrent writers run `etcdctl put -w json` in tight loops
# and record every ACKNOWLEDGED put (key, value, revision from the response
# header); after a bounded, randomized time the server gets SIGKILL mid-stream;
# it restarts on the same data dir and we check, for every write acknowledged
# in this or any earlier cycle:
#   - the key exists with the acknowledged value and mod_revision == the
#     acknowledged revision (unique keys, written once);
#   - for each writer's "hot" key, overwritten on every put: the stored value
#     is the last acknowledged one or a later (in-flight) one, never older;
#   - no two acknowledged puts got the same revision;
#   - the store's revision is >= the highest acknowledged revision, and a new
#     put after restart gets a higher one.
# A last cycle stops the server with SIGTERM instead (clean shutdown path).
#
# Env: CETCD_BIN; E2E_CETCD_IS_ETCD=1 runs it against real etcd.
#      DUR_CYCLES (default 4), DUR_WRITERS (default 4), DUR_RUN_MS_MAX
#      (longest write phase per cycle, default 3000).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

command -v jq >/dev/null 2>&1 || skip "jq not installed"

CYCLES="${DUR_CYCLES:-4}"
WRITERS="${DUR_WRITERS:-4}"
RUN_MS_MAX="${DUR_RUN_MS_MAX:-3000}"
PUTS_MAX=5000      # per writer per cycle: a bound even if the kill never comes
TEST_LIMIT_S=120   # whole test, hard bound

ACKS="$E2E_TMP/acks"       # "key value revision", one line per acked put
mkdir -p "$E2E_TMP/w"
: >"$ACKS"
WRITER_PIDS=()

kill_writers() {
	local p
	for p in "${WRITER_PIDS[@]}"; do
		kill -KILL "$p" 2>/dev/null || true
	done
	for p in "${WRITER_PIDS[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	WRITER_PIDS=()
}
e2e_on_cleanup kill_writers

# writer CYCLE I: put unique keys dur/cCYCLE/wI/N, and every 4th put also
# overwrite the hot key dur/hot/wI, until a put fails (the server died) or
# PUTS_MAX puts. Appends acknowledged puts to its own file.
writer() {
	local cycle="$1" i="$2" n k v out rev url pad
	local acks="$E2E_TMP/w/c$cycle.w$i" hot="$E2E_TMP/w/hot.w$i"
	url="$(node_url srv)"
	pad="$(printf '%040d' 0)"
	for ((n = 1; n <= PUTS_MAX; n++)); do
		k="dur/c$cycle/w$i/$(printf '%05d' "$n")"
		v="v$cycle.$i.$n.$pad"
		out="$(timeout -k 1 10 "$ETCDCTL_BIN" --endpoints="$url" \
			--dial-timeout=1s --command-timeout=2s put -w json "$k" "$v" 2>/dev/null)" || return 0
		rev="$(grep -oE '"revision":[0-9]+' <<<"$out" | head -n1 | cut -d: -f2)"
		[[ -n "$rev" ]] || return 0
		printf '%s %s %s\n' "$k" "$v" "$rev" >>"$acks"
		if ((n % 4 == 0)); then
			v="$cycle.$n"
			out="$(timeout -k 1 10 "$ETCDCTL_BIN" --endpoints="$url" \
				--dial-timeout=1s --command-timeout=2s put -w json "dur/hot/w$i" "$v" 2>/dev/null)" || return 0
			rev="$(grep -oE '"revision":[0-9]+' <<<"$out" | head -n1 | cut -d: -f2)"
			[[ -n "$rev" ]] || return 0
			# Hot-key acks: "cycle n revision"; the value encodes cycle.n.
			printf '%s %s %s\n' "$cycle" "$n" "$rev" >>"$hot"
			printf 'dur/hot/w%s %s %s\n' "$i" "$v" "$rev" >>"$E2E_TMP/w/hotall"
		fi
	done
}

# dump_store: "key value mod_revision" of every dur/c* key, sorted by key.
dump_store() {
	ctl srv get --prefix dur/c -w json |
		jq -r '.kvs // [] | .[] | "\(.key|@base64d) \((.value // "")|@base64d) \(.mod_revision)"' |
		LC_ALL=C sort
}

store_revision() {
	ctl srv get dur/none -w json | grep -oE '"revision":[0-9]+' | head -n1 | cut -d: -f2
}

verify() {
	local what="$1" nacks missing dups maxrev rev i last cur
	nacks="$(wc -l <"$ACKS")"
	dump_store >"$E2E_TMP/store" || fail "$what: dumping the store failed"
	LC_ALL=C sort "$ACKS" >"$E2E_TMP/acks.sorted"
	# Every acked line must appear verbatim in the store dump.
	missing="$(LC_ALL=C comm -23 "$E2E_TMP/acks.sorted" "$E2E_TMP/store")"
	check "$what: all $nacks acknowledged puts present with value and mod_revision" \
		test -z "$missing"
	if [[ -n "$missing" ]]; then
		printf '#   lost or changed (showing 10 of %d):\n' "$(wc -l <<<"$missing")"
		head -n 10 <<<"$missing" | while read -r k _ r; do
			printf '#   acked %s rev %s; store has: %s\n' "$k" "$r" \
				"$(grep -F "$k " "$E2E_TMP/store" | cut -c1-80 || echo '(missing)')"
		done
	fi
	dups="$(cat "$ACKS" "$E2E_TMP/w/hotall" 2>/dev/null | awk '{print $3}' | sort -n | uniq -d | head -n 5)"
	check "$what: no two acknowledged puts share a revision" test -z "$dups"
	[[ -z "$dups" ]] || printf '#   duplicated revisions: %s\n' "$(tr '\n' ' ' <<<"$dups")"
	maxrev="$(cat "$ACKS" "$E2E_TMP/w/hotall" 2>/dev/null | awk '$3>m{m=$3} END{print m+0}')"
	rev="$(store_revision)"
	check "$what: store revision $rev >= highest acknowledged $maxrev" test "${rev:-0}" -ge "$maxrev"
	for ((i = 1; i <= WRITERS; i++)); do
		[[ -s "$E2E_TMP/w/hot.w$i" ]] || continue
		last="$(tail -n 1 "$E2E_TMP/w/hot.w$i")" # cycle n rev
		cur="$(ctl srv get "dur/hot/w$i" -w json |
			jq -r '.kvs // [] | .[] | "\((.value // "")|@base64d) \(.mod_revision)"')"
		check "hot key w$i: stored '${cur:-missing}' not older than acked '$last'" \
			hot_ok "$last" "$cur"
	done
}

# shellcheck disable=SC2317 # called through check
# hot_ok "CYCLE N REV" "CYCLE.N MODREV": the stored version is the acked one
# (same value, same revision) or a later write of the same writer.
hot_ok() {
	local ac an ar sv sr sc sn
	read -r ac an ar <<<"$1"
	read -r sv sr <<<"$2"
	[[ -n "$sv" && -n "$sr" ]] || return 1
	sc="${sv%%.*}"
	sn="${sv#*.}"
	if ((sr == ar)); then
		[[ "$sc" == "$ac" && "$sn" == "$an" ]]
		return
	fi
	((sr > ar)) && ((sc > ac || (sc == ac && sn > an)))
}

# ------------------------------------------------------------------- main ---

START=$SECONDS
start_cetcd srv
wait_ready srv

for ((cycle = 1; cycle <= CYCLES; cycle++)); do
	((SECONDS - START < TEST_LIMIT_S)) || fail "time limit ${TEST_LIMIT_S}s reached"
	for ((i = 1; i <= WRITERS; i++)); do
		writer "$cycle" "$i" &
		WRITER_PIDS+=($!)
	done
	run_ms=$((RUN_MS_MAX / 2 + RANDOM % (RUN_MS_MAX / 2 + 1)))
	sleep "$((run_ms / 1000)).$(printf '%03d' $((run_ms % 1000)))"
	if ((cycle < CYCLES)); then
		how=KILL
	else
		how=TERM
	fi
	before="$(cat "$E2E_TMP"/w/c"$cycle".w* 2>/dev/null | wc -l)"
	log_info "cycle $cycle: SIG$how after ${run_ms} ms, $before puts acknowledged so far this cycle"
	stop_node srv "$how"
	# Writers notice the dead server within their dial/command timeouts (an
	# in-flight put is retried by etcdctl until its 2 s command timeout).
	deadline=$((SECONDS + 20))
	for p in "${WRITER_PIDS[@]}"; do
		while kill -0 "$p" 2>/dev/null && ((SECONDS < deadline)); do
			sleep 0.05
		done
	done
	kill_writers
	cat "$E2E_TMP"/w/c"$cycle".w* >>"$ACKS" 2>/dev/null || true
	n="$(cat "$E2E_TMP"/w/c"$cycle".w* 2>/dev/null | wc -l)"
	check "cycle $cycle: writers got acknowledgements ($n)" test "$n" -gt 0

	restart_node srv
	wait_ready srv
	verify "cycle $cycle after SIG$how"
done

# A write after the last restart must get a revision above everything acked.
maxrev="$(cat "$ACKS" "$E2E_TMP/w/hotall" 2>/dev/null | awk '$3>m{m=$3} END{print m+0}')"
newrev="$(ctl srv put -w json dur/after x | grep -oE '"revision":[0-9]+' | cut -d: -f2)"
check "put after restart gets revision $newrev > $maxrev" test "${newrev:-0}" -gt "$maxrev"
log_info "total acknowledged puts: $(wc -l <"$ACKS") unique + $(wc -l <"$E2E_TMP/w/hotall" 2>/dev/null || echo 0) hot; $((SECONDS - START)) s"
e2e_finish
