#!/usr/bin/env bash
# Differential test: one etcdctl script runs against a fresh real etcd and a
# fresh cetcd; the transcripts (stdout+stderr and exit code of every command)
# must be identical once the values that legitimately differ are replaced by
# placeholders (see normalize() below: every rule is listed there).
#
# Both servers get the same --name and --initial-advertise-peer-urls so the
# member list matches. Revisions are NOT normalized: both start at 1 and must
# move in lock step.
#
# Env: CETCD_BIN (server under test), ETCD_BIN (default etcd), ETCDCTL_BIN.
#      E2E_CETCD_IS_ETCD=1 runs etcd on both sides (checks the normalization).
#      E2E_KEEP=1 keeps the transcripts in $E2E_TMP.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

command -v "$ETCDCTL_BIN" >/dev/null 2>&1 || skip "etcdctl not installed"
command -v "$ETCD_BIN" >/dev/null 2>&1 || skip "etcd not installed"

NAME=diffnode
PEER_URL="http://127.0.0.1:$(free_port)"

# ------------------------------------------------------------------ script ---
# The etcdctl script. Each `c ARGS..` is one etcdctl invocation; its output
# and exit code go to the transcript. Keep sorted ranges under 12 keys: etcd
# sorts with Go's sort.Sort, which is only stable (ties keep key order) for
# slices that short.
script() {
	# Initial state: revision 1, nothing stored.
	c get foo
	c get foo -w json
	c get --prefix "" -w json
	# Build some data (revisions 2..).
	c put foo bar                            # rev 2
	c put foo baz                            # rev 3, overwrite
	c put foo1 one                           # rev 4
	c put foo2 two                           # rev 5
	c put fo short                           # rev 6
	c put /app/config/a 1                    # rev 7
	c put /app/config/b 2                    # rev 8
	c put /app/config/ab x                   # rev 9
	c put /app/db/host localhost             # rev 10
	c put /app/db/port 5432                  # rev 11
	c put /apple fruit                       # rev 12
	c put /app/config/a 10                   # rev 13, overwrite
	c put /app/config/a 100 --prev-kv        # rev 14, overwrite, prints prev
	c put spaced "hello world"               # rev 15
	c put empty ""                           # rev 16, empty value
	c put -- -dash v                         # rev 17, key starting with '-'
	c put foo qux --prev-kv -w json          # rev 18
	c put newkey v --prev-kv                 # rev 19, no previous: just OK
	c put zeta z -w json                     # rev 20
	# Plain gets.
	c get foo
	c get foo -w json
	c get foo -w fields
	c get foo -w simple
	c get missing
	c get missing -w json
	c get missing -w fields
	c get /app/config/a /app/config/c        # explicit range_end
	c get --prefix /app
	c get --prefix /app/config -w json
	c get --prefix /app/ --keys-only
	c get --prefix /app/ --keys-only -w json
	c get --prefix /app/ --print-value-only
	c get --prefix fo --hex
	c get --from-key foo
	c get --from-key "" --keys-only
	c get --prefix "" --keys-only
	c get --prefix /app/ --limit 2
	c get --prefix /app/ --limit 2 -w json
	c get --prefix /app/ --limit -1 --keys-only
	c get foo --rev -1
	# Sorting (ties: etcd keeps ascending key order, also for DESCEND).
	c get --prefix /app/ --order DESCEND
	c get --prefix /app/ --order ASCEND --sort-by KEY
	c get --prefix /app/ --order DESCEND --sort-by KEY --keys-only
	c get --prefix /app/ --sort-by VERSION --keys-only
	c get --prefix /app/ --order DESCEND --sort-by VERSION -w json
	c get --prefix /app/ --order ASCEND --sort-by CREATE --keys-only
	c get --prefix /app/ --order DESCEND --sort-by CREATE --keys-only
	c get --prefix /app/ --order ASCEND --sort-by MODIFY --keys-only
	c get --prefix /app/ --order DESCEND --sort-by MODIFY --keys-only
	c get --prefix /app/ --order ASCEND --sort-by VALUE
	c get --prefix /app/ --order DESCEND --sort-by VALUE
	c get --prefix /app/ --sort-by VALUE --limit 2 -w json
	c get --prefix fo --order DESCEND --sort-by MODIFY --limit 2
	# Old revisions.
	c get foo --rev 1
	c get foo --rev 2
	c get foo --rev 3 -w json
	c get --prefix /app/config --rev 9 -w json
	c get --prefix "" --rev 6 --keys-only
	c get foo --rev 20
	# Deletes.
	c del missing                            # no revision change
	c del missing -w json
	c del foo2                               # rev 21
	c del --prev-kv foo1                     # rev 22
	c del --prefix /app/db                   # rev 23
	c del --prefix /app/db -w json           # nothing left: no new revision
	c del --prev-kv --prefix /app/config -w json   # rev 24
	c get --prefix /app -w json
	c del foo                                # rev 25
	c get foo
	c put foo reborn                         # rev 26, re-created
	c get foo -w json                        # create_revision 26, version 1
	c get foo --rev 25
	c get foo --rev 24 -w json
	c del --from-key spaced --prev-kv        # rev 27: spaced, zeta
	c get --from-key "" -w json
	c put a 1                                # rev 28
	c put b 2                                # rev 29
	c del a c                                # rev 30, explicit range_end
	c get --prefix "" --keys-only
	# Errors.
	c put "" x
	c get ""
	c del ""
	c get foo --rev 31
	c get foo --rev 1000 -w json
	c get --prefix --from-key a              # client-side checks
	c get x --order=sideways
	c get x --sort-by=colour
	# Maintenance and cluster.
	c endpoint status
	c endpoint status -w table
	c endpoint status -w json
	c endpoint status -w fields
	c endpoint health
	c member list
	c member list -w table
	c member list -w json
	c member list -w fields
	c get --prefix "" -w json                # final state
}

# -------------------------------------------------------------- execution ---

# run_side ID OUT: run script() against node ID, transcript to OUT.
run_side() {
	local id="$1" out="$2"
	: >"$out"
	SIDE_DEAD=0
	c() {
		local rc=0
		((SIDE_DEAD == 0)) || return 0
		{
			printf '$ etcdctl'
			printf ' %q' "$@"
			printf '\n'
		} >>"$out"
		ctl "$id" "$@" >>"$out" 2>&1 || rc=$?
		printf '[exit %d]\n' "$rc" >>"$out"
		if ! node_alive "$id"; then
			printf '[server exited; script stopped]\n' >>"$out"
			SIDE_DEAD=1
		fi
	}
	script
	unset -f c
	check "'$id' survived the script" test "$SIDE_DEAD" = 0
}

# ---------------------------------------------------------- normalization ---
# Rules, applied to one side's transcript with that side's own values:
#  1. [http://]127.0.0.1:<its client port>  -> <CLIENT>
#  2. its member id (decimal and %x hex)    -> <MEMBER_ID>
#     its cluster id (decimal)               -> <CLUSTER_ID>
#  3. JSON / fields raft term:   "raft_term":N, "raftTerm":N, "RaftTerm" : N -> <TERM>
#  4. JSON / fields status numbers: dbSize, dbSizeInUse, raftIndex,
#     raftAppliedIndex (and DBSize, RaftIndex, RaftAppliedIndex)  -> <N>;
#     "version":"..." / "Version" : "..." (status only)           -> <VERSION>
#  5. endpoint status simple and table rows: VERSION, DB SIZE, RAFT TERM,
#     RAFT INDEX, RAFT APPLIED INDEX columns -> placeholders (IS LEADER and
#     IS LEARNER are kept).
#  6. client log lines: "ts":"..." -> <TS>; client-<uuid> -> client-<UUID>.
#  7. endpoint health: "took = <duration>" -> took = <DURATION>.
#  8. table lines (starting with + or |): runs of spaces and of '-' collapse
#     to one, since column widths follow the (normalized) values.
# Everything else, revisions included, must match byte for byte.
normalize() {
	local id="$1" in="$2" out="$3" st mdec mhex cdec
	if ! node_alive "$id"; then
		cp "$in" "$out"
		return 0
	fi
	st="$(ctl "$id" endpoint status -w json)" || fail "endpoint status on '$id' failed"
	# Raw text, not jq: ids are uint64 and jq would round them.
	mdec="$(grep -oE '"member_id":[0-9]+' <<<"$st" | head -n1 | cut -d: -f2)"
	cdec="$(grep -oE '"cluster_id":[0-9]+' <<<"$st" | head -n1 | cut -d: -f2)"
	[[ -n "$mdec" && -n "$cdec" ]] || fail "no member_id/cluster_id in status of '$id': $st"
	mhex="$(ctl "$id" endpoint status | cut -d, -f2 | tr -d ' ')"
	[[ -n "$mhex" ]] || fail "no hex member id in status of '$id'"
	log_info "'$id': member_id $mdec ($mhex) cluster_id $cdec"
	sed -E \
		-e "s#(http://)?127\\.0\\.0\\.1:${NODE_CPORT[$id]}([^0-9]|\$)#<CLIENT>\\2#g" \
		-e "s/(^|[^0-9a-z])${mdec}([^0-9]|\$)/\\1<MEMBER_ID>\\2/g" \
		-e "s/(^|[^0-9a-z])${mhex}([^0-9a-z]|\$)/\\1<MEMBER_ID>\\2/g" \
		-e "s/(^|[^0-9a-z])${cdec}([^0-9]|\$)/\\1<CLUSTER_ID>\\2/g" \
		-e 's/"(raft_term|raftTerm)":[0-9]+/"\1":<TERM>/g' \
		-e 's/"RaftTerm" : [0-9]+/"RaftTerm" : <TERM>/g' \
		-e 's/"(dbSize|dbSizeInUse|raftIndex|raftAppliedIndex)":[0-9]+/"\1":<N>/g' \
		-e 's/"(DBSize|RaftIndex|RaftAppliedIndex)" : [0-9]+/"\1" : <N>/g' \
		-e 's/"version":"[^"]*"/"version":"<VERSION>"/g' \
		-e 's/^"Version" : "[^"]*"/"Version" : "<VERSION>"/' \
		-e 's/^(<CLIENT>, <MEMBER_ID>), [^,]+, [^,]+, (true|false), (true|false), [0-9]+, [0-9]+, [0-9]+, /\1, <VERSION>, <DBSIZE>, \2, \3, <TERM>, <INDEX>, <APPLIED>, /' \
		-e '/^[+|]/s/ +/ /g' \
		-e '/^[+|]/s/-+/-/g' \
		-e 's/^(\| <CLIENT> \| <MEMBER_ID> \|)[^|]+\|[^|]+\|( (true|false) \| (true|false) \|)[^|]+\|[^|]+\|[^|]+\|/\1 <VERSION> | <DBSIZE> |\2 <TERM> | <INDEX> | <APPLIED> |/' \
		-e 's/"ts":"[^"]*"/"ts":"<TS>"/g' \
		-e 's/client-[0-9a-f-]{36}/client-<UUID>/g' \
		-e 's/took = [^ ]+$/took = <DURATION>/' \
		"$in" >"$out"
}

# ------------------------------------------------------------------- main ---

log_info "side A: real etcd ($ETCD_BIN)"
E2E_NAME=$NAME E2E_PEER_URL=$PEER_URL start_etcd etcd
wait_ready etcd
run_side etcd "$E2E_TMP/etcd.raw"
normalize etcd "$E2E_TMP/etcd.raw" "$E2E_TMP/etcd.txt"
stop_node etcd

log_info "side B: cetcd ($CETCD_BIN)"
E2E_NAME=$NAME E2E_PEER_URL=$PEER_URL start_cetcd cetcd
wait_ready cetcd
run_side cetcd "$E2E_TMP/cetcd.raw"
normalize cetcd "$E2E_TMP/cetcd.raw" "$E2E_TMP/cetcd.txt"
stop_node cetcd

ncmd="$(grep -c '^\$ etcdctl' "$E2E_TMP/etcd.txt")"
log_info "$ncmd etcdctl commands per side"
check "script ran ($ncmd commands)" test "$ncmd" -ge 60
# Guard against a normalization that hides everything: the etcd side must
# still show real data and revisions.
check "etcd transcript has revision 30" grep -q '"revision":30' "$E2E_TMP/etcd.txt"
if diff -u --label etcd --label cetcd "$E2E_TMP/etcd.txt" "$E2E_TMP/cetcd.txt"; then
	check "normalized transcripts are identical" true
else
	check "normalized transcripts are identical" false
fi
e2e_finish
