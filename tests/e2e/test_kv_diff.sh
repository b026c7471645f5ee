#!/usr/bin/env bash
# tests/e2e/test_kv_diff.sh: differential test of the whole KV API (issue 3).
# One script of etcdctl commands (and a few raw gRPC calls etcdctl cannot
# express) runs against a fresh real etcd and a fresh cetcd; the transcripts
# (stdout+stderr and exit code of every command, and the stdin of every txn)
# must be identical once the values that legitimately differ are replaced by
# placeholders (normalize() below lists every rule).
#
# Covers: get with every flag (--prefix, --from-key, --rev at compacted,
# current and future revisions, --limit, --order, --sort-by for each target,
# --keys-only, --print-value-only, --consistency, -w json/fields/simple);
# put --prev-kv/--ignore-value/--ignore-lease and their errors; del
# --prefix/--from-key/--prev-kv; txn (every compare target with = != > <,
# success and failure branches with puts, gets and dels, -w json/fields,
# -i, the txn errors); raw Txn for what etcdctl 3.4 cannot say (range
# compares, LEASE compares, nested txns); compaction and compaction
# --physical, then reads at compacted revisions; endpoint hashkv (with
# --rev); defrag; alarm list and disarm with no alarm; Maintenance/Hash.
#
# Not here: the quota (etcd counts the bbolt file, cetcd its memory: see
# test_kv_limits.sh); -w protobuf (binary); `endpoint hash` (not in etcdctl
# 3.4); lease compares through etcdctl (3.4's parser panics on them).
#
# Both servers get the same --name and --initial-advertise-peer-urls so the
# member list matches. Revisions are NOT normalized: both start at 1 and must
# move in lock step (the "# rev N" comments are etcd's).
#
# Env: CETCD_BIN (server under test), ETCD_BIN (default etcd), ETCDCTL_BIN,
#      GRPCRAW_BIN.
#      E2E_CETCD_IS_ETCD=1 runs etcd on both sides (checks the normalization).
#      E2E_KEEP=1 keeps the transcripts in $E2E_TMP.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

command -v "$ETCDCTL_BIN" >/dev/null 2>&1 || skip "etcdctl not installed"
command -v "$ETCD_BIN" >/dev/null 2>&1 || skip "etcd not installed"
[[ -x "$GRPCRAW_BIN" ]] || fail "grpcraw not found: $GRPCRAW_BIN (set GRPCRAW_BIN)"

NAME=kvdiffnode
PEER_URL="http://127.0.0.1:$(free_port)"
KV=/etcdserverpb.KV

# ------------------------------------------------------------------ script ---
# `c ARGS..` is one etcdctl invocation (stdin: /dev/null); `ci ARGS.. <<EOF`
# feeds the here-document to etcdctl (txn) and records it in the transcript;
# `r DESC PATH HEX` is one raw gRPC call through grpcraw, of which only the
# status line is recorded (response sizes differ with the header ids), so
# its effect is then checked with etcdctl. Keep sorted ranges under 12 keys:
# etcd sorts with Go's sort.Sort, only stable for slices that short.
script() {
	# ---------------------------------------------------------- empty store
	c endpoint hashkv -w json                # compact_revision before any compaction
	c get --prefix "" -w json
	c txn                                    # no input at all: client EOF error
	ci txn -w json <<'EOF'



EOF
	# ------------------------------------------------------------- data
	c put /s/a 30                            # rev 2
	c put /s/b 10                            # rev 3
	c put /s/c 20                            # rev 4
	c put /s/a 31                            # rev 5, /s/a version 2
	c put /s/d 00                            # rev 6
	c put /s/b 11                            # rev 7, /s/b version 2
	c put /s/a 32                            # rev 8, /s/a version 3
	c put /t/x x                             # rev 9
	c put /t/y y                             # rev 10
	c put u u                                # rev 11
	# -------------------------------------------------------------- get
	c get /s/a
	c get /s/a -w json
	c get /s/a -w fields
	c get /s/a -w simple
	c get /s/a -w table                      # client-side error
	c get /s/a --print-value-only
	c get /s/a --keys-only
	c get /s/a --keys-only -w json
	c get /s/a --consistency=s
	c get /s/a --consistency=l -w json
	c get --prefix /s/ --consistency=s -w json
	c get /s/a --consistency=x
	c get /s/a /s/c                          # [/s/a, /s/c)
	c get /s/c /s/a                          # empty: end before key
	c get --prefix /s/
	c get --prefix /s/ -w fields
	c get --prefix /s/ --print-value-only
	c get --prefix /s/ --keys-only --print-value-only
	c get --prefix /s/ --limit 2
	c get --prefix /s/ --limit 2 -w json      # more, count
	c get --prefix /s/ --limit 4 -w json      # exactly all: more false
	c get --prefix /s/ --limit 1 --keys-only -w json
	c get --from-key /s/c
	c get --from-key /t --keys-only
	c get --from-key "" --limit 3 -w json
	c get --from-key v                       # past the last key
	# Sorting: every target, both orders, and the defaults.
	c get --prefix /s/ --order ASCEND
	c get --prefix /s/ --order DESCEND
	c get --prefix /s/ --order DESCEND --limit 2 -w json
	c get --prefix /s/ --sort-by KEY --keys-only
	c get --prefix /s/ --sort-by KEY --order DESCEND --keys-only
	c get --prefix /s/ --sort-by VERSION --keys-only
	c get --prefix /s/ --sort-by VERSION --order ASCEND --keys-only
	c get --prefix /s/ --sort-by VERSION --order DESCEND -w json
	c get --prefix /s/ --sort-by CREATE --order ASCEND --keys-only
	c get --prefix /s/ --sort-by CREATE --order DESCEND --keys-only
	c get --prefix /s/ --sort-by MODIFY --order ASCEND --keys-only
	c get --prefix /s/ --sort-by MODIFY --order DESCEND --keys-only
	c get --prefix /s/ --sort-by MODIFY --order DESCEND --limit 2 -w json
	c get --prefix /s/ --sort-by VALUE --order ASCEND
	c get --prefix /s/ --sort-by VALUE --order DESCEND
	c get --prefix /s/ --sort-by VALUE --limit 3 -w json
	c get --from-key "" --sort-by CREATE --order DESCEND --limit 3 --keys-only
	c get --prefix /s/ --order sideways
	c get --prefix /s/ --sort-by colour
	# Revisions.
	c get /s/a --rev 1
	c get /s/a --rev 2
	c get /s/a --rev 4 -w json
	c get /s/a --rev 5 -w fields
	c get --prefix /s/ --rev 6 -w json
	c get --prefix "" --rev 9 --keys-only
	c get /s/a --rev 11
	c get /s/a --rev 12                      # future
	c get /s/a --rev 1000 -w json            # future
	c get --prefix /s/ --rev 7 --limit 1 --sort-by VALUE --order DESCEND -w json
	# -------------------------------------------------------------- put
	c put /s/a 33 --prev-kv                  # rev 12
	c put /s/a 34 --prev-kv -w json          # rev 13
	c put /new n --prev-kv                   # rev 14: no previous, just OK
	c put /new n2 --prev-kv -w fields        # rev 15
	c put /s/a --ignore-value                # rev 16: keeps 34, version 6
	c get /s/a -w json
	c put /s/a --ignore-value --prev-kv -w json   # rev 17
	c put /nokey --ignore-value
	c put /nokey --ignore-value -w json
	c put /s/a 35 --ignore-lease             # rev 18
	c put /s/a 36 --ignore-lease --prev-kv -w json   # rev 19
	c put /s/a --ignore-value --ignore-lease # rev 20
	c put /nokey v --ignore-lease
	c put /s/a v --lease=1234 --ignore-lease
	c put /s/a v --lease=1234
	c put /s/a --ignore-value --lease=1234
	c put /s/a v --ignore-value              # client-side error
	c put "" --ignore-value
	c put /s/a                               # no value, empty stdin
	c get /s/a -w json                       # value 36, version 9, mod 20
	# -------------------------------------------------------------- txn
	# Simple output, both branches. Comments above a txn say what it does.
	# Success: rev 21.
	ci txn <<'EOF'
value("/s/a") = "36"

put /s/a 37
get /s/b

put /t/fail 1

EOF
	# Failure: the failure branch writes /t/fail, rev 22.
	ci txn <<'EOF'
value("/s/a") = "36"

put /s/a 38

put /t/fail 1
get /s/b

EOF
	# -w json with prev_kv in responses: rev 23.
	ci txn -w json <<'EOF'
value("/s/a") = "37"

put /s/a 39 --prev-kv
del /t/fail --prev-kv
get /s/ --prefix --keys-only

get /s/a

EOF
	# -w fields: rev 24 (/s/c = 21).
	ci txn -w fields <<'EOF'
version("/s/a") = "12"

put /s/c 21
get /s/c

get /s/c

EOF
	# -i prompts; success, but deleting nothing writes nothing: still rev 24.
	ci txn -i <<'EOF'
mod("/s/c") = "24"

get /s/c --print-value-only
del /s/nothing

put /t/never x

EOF
	# Failure with an empty failure branch: no responses, "succeeded" absent.
	ci txn -i -w json <<'EOF'
mod("/s/c") != "24"

put /t/never x


EOF
	# Every target with = != > <; a true and a false case for most.
	# /s/a: version 12, create 2, mod 23, value 39 (after rev 23).
	tx_cmp 'version("/s/a") = "12"'
	tx_cmp 'version("/s/a") = "11"'
	tx_cmp 'version("/s/a") != "11"'
	tx_cmp 'version("/s/a") != "12"'
	tx_cmp 'version("/s/a") > "11"'
	tx_cmp 'version("/s/a") > "12"'
	tx_cmp 'version("/s/a") < "13"'
	tx_cmp 'version("/s/a") < "12"'
	tx_cmp 'create("/s/a") = "2"'
	tx_cmp 'create("/s/a") != "2"'
	tx_cmp 'create("/s/a") > "1"'
	tx_cmp 'create("/s/a") < "2"'
	tx_cmp 'mod("/s/a") = "23"'
	tx_cmp 'mod("/s/a") != "22"'
	tx_cmp 'mod("/s/a") > "23"'
	tx_cmp 'mod("/s/a") < "24"'
	tx_cmp 'value("/s/a") = "39"'
	tx_cmp 'value("/s/a") != "39"'
	tx_cmp 'value("/s/a") > "38"'
	tx_cmp 'value("/s/a") > "4"'
	tx_cmp 'value("/s/a") < "3"'
	tx_cmp 'value("/s/a") < "390"'
	tx_cmp 'value("/s/d") = "00"'
	tx_cmp 'value("/s/d") > "0"'
	# A missing key compares as a zero key-value, except by value.
	tx_cmp 'version("/nokey") = "0"'
	tx_cmp 'create("/nokey") < "1"'
	tx_cmp 'mod("/nokey") > "0"'
	tx_cmp 'value("/nokey") = ""'
	tx_cmp 'value("/nokey") != "x"'
	# Several compares: all must hold.
	ci txn <<'EOF'
version("/s/a") = "12"
create("/s/b") = "3"
mod("/s/d") = "6"
value("/s/c") = "21"

get /s/ --prefix --keys-only

get /s/a

EOF
	ci txn <<'EOF'
version("/s/a") = "12"
value("/s/c") = "nope"

get /s/a

get /s/ --prefix --keys-only --order DESCEND --sort-by VALUE --limit 2

EOF
	# A txn sees its own earlier writes: rev 25.
	ci txn -w json <<'EOF'

put /t/z 1
get /t/z
del /t/x
get /t/ --prefix
del /t/x
del /t/y /t/z


EOF
	ci txn <<'EOF'

del /s/nothing
get /s/nothing


EOF
	# Only reads: the revision does not move.
	ci txn -w json <<'EOF'
value("/s/a") = "39"

get /s/a
get /s/b --rev 3


EOF
	# Errors.
	ci txn <<'EOF'

put /d 1
put /d 2


EOF
	ci txn <<'EOF'

put /d1 1
del /d --prefix


EOF
	ci txn <<'EOF'
value("/s/a") = "nope"

put /d 1

put /d 1
put /d 2

EOF
	ci txn <<'EOF'

del /d
put /d 1


EOF
	ci txn <<'EOF'

put /s/a 1 --lease=1234


EOF
	ci txn <<'EOF'

put /nokey --ignore-value


EOF
	ci txn <<'EOF'

put /s/a v --ignore-lease --lease=22


EOF
	ci txn <<'EOF'

get /s/a --rev 1000


EOF
	ci txn <<'EOF'
foo("/s/a") = "1"



EOF
	ci txn <<'EOF'
version("/s/a") = "x"



EOF
	ci txn <<'EOF'

frob /s/a


EOF
	ci txn <<'EOF'

put /s/a 1
EOF
	tx_many 128 0 0                          # rev 26
	tx_many 129 0 0
	tx_many 0 129 0
	tx_many 0 0 129
	tx_many 128 128 128
	c get --prefix /m/ --keys-only --limit 3 -w json
	c del --prefix /m/                       # rev 27
	# ------------------------------------------------------- raw txn
	# Range compares ([key, range_end)), LEASE compares, nested txns.
	# Each success/failure branch puts a marker under /r/ (rev 28..).
	rt "version > 0 over [/s/a, /s/e)" "$(pb_cmp '>' version /s/a 0 /s/e)" /r/1
	rt "value = 39 over [/s/a, /s/e)" "$(pb_cmp '=' value /s/a 39 /s/e)" /r/2
	rt "value < 9 over the prefix /s/" "$(pb_cmp '<' value /s/ 9 /s0)" /r/3
	rt "value != 11 over [/s/b, /s/d)" "$(pb_cmp != value /s/b 11 /s/d)" /r/4
	rt "mod = 0 over an empty range" "$(pb_cmp '=' mod /q/1 0 /q/2)" /r/5
	rt "value = '' over an empty range" "$(pb_cmp '=' value /q/1 '' /q/2)" /r/6
	rt "create < 5 over [/s/a, /s/e)" "$(pb_cmp '<' create /s/a 5 /s/e)" /r/7
	rt "mod > 6 over [/s/a, /s/e)" "$(pb_cmp '>' mod /s/a 6 /s/e)" /r/8
	rt "version != 1 over [/s/a, /s/e)" "$(pb_cmp != version /s/a 1 /s/e)" /r/9
	rt "create > 0 from /s/c to the end (range_end \\0)" \
		"$(pb_len 1 "$(pb_int 1 1)$(pb_int 2 1)$(pb_str 3 /s/c)$(pb_int 5 0)$(pb_len 64 00)")" /r/10
	rt "lease = 0 on a key" "$(pb_cmp '=' lease /s/a 0)" /r/11
	rt "lease = 0 on a missing key" "$(pb_cmp '=' lease /nokey 0)" /r/12
	rt "lease > 0 on a key" "$(pb_cmp '>' lease /s/a 0)" /r/13
	rt "lease != 5 over [/s/a, /s/e)" "$(pb_cmp != lease /s/a 5 /s/e)" /r/14
	rt "lease < 0 on a key" "$(pb_cmp '<' lease /s/a 0)" /r/15
	c get --prefix /r/ -w json
	# Nested: branches are chosen on the state before the txn, so the inner
	# compare does not see the outer put of /n/1.
	r "nested txn: inner compare on the pre-txn state" $KV/Txn \
		"$(pb_then "$(pb_op_put /n/1 a)" "$(pb_op_txn "$(pb_cmp '>' version /n/1 0)$(pb_then \
			"$(pb_op_put /n/2 inner-then)")$(pb_else "$(pb_op_put /n/2 inner-else)" \
			"$(pb_op_range /n/1)")")")"
	r "nested txn two levels deep in the failure branch" $KV/Txn \
		"$(pb_cmp '=' value /n/nokey x)$(pb_else "$(pb_op_put /n/3 outer-else)" \
			"$(pb_op_txn "$(pb_then "$(pb_op_txn "$(pb_then "$(pb_op_put /n/4 deep)" \
				"$(pb_op_del /n/1)")")")")")"
	c get --prefix /n/ -w json
	r "nested: the same key in an inner txn's then and else" $KV/Txn \
		"$(pb_then "$(pb_op_txn "$(pb_then "$(pb_op_put /n/5 t)")$(pb_else "$(pb_op_put /n/5 e)")")")"
	r "nested dup: outer put, inner put of the same key" $KV/Txn \
		"$(pb_then "$(pb_op_put /n/6 a)" "$(pb_op_txn "$(pb_then "$(pb_op_put /n/6 b)")")")"
	r "nested dup: inner delete over an outer put" $KV/Txn \
		"$(pb_then "$(pb_op_put /n/6 a)" "$(pb_op_txn "$(pb_then "$(pb_op_del /n/ /n0)")")")"
	r "nested dup: two inner txns put the same key" $KV/Txn \
		"$(pb_then "$(pb_op_txn "$(pb_then "$(pb_op_put /n/7 a)")")" \
			"$(pb_op_txn "$(pb_then "$(pb_op_put /n/7 b)")")")"
	r "outer then and else put the same key" $KV/Txn \
		"$(pb_then "$(pb_op_put /n/8 t)")$(pb_else "$(pb_op_put /n/8 e)")"
	c get --prefix /n/ -w json
	# ------------------------------------------------------------- del
	c del /nokey
	c del /nokey -w json
	c del /s/d                               # rev 48
	c del --prev-kv /s/c
	c del --prev-kv /s/c -w json             # nothing left
	c del --prefix /t/ --prev-kv -w json
	c del --prefix /r/1                      # /r/1, /r/10..15
	c del /r/2 /r/5 --prev-kv                # [/r/2, /r/5)
	c del --from-key u -w json               # only u sorts after /...
	c del --prefix --from-key /r
	c del "" --from-key=false
	c get --from-key "" -w json
	# ------------------------------------------------------ compaction
	c endpoint hashkv
	c endpoint hashkv                        # same state: same hash
	c endpoint hashkv -w json
	c endpoint hashkv -w fields
	c endpoint hashkv -w table
	c endpoint hashkv --rev 8 -w json
	c endpoint hashkv --rev 1000
	c put /s/b 12                            # new revision
	c endpoint hashkv                        # new hash
	c endpoint hashkv --rev 8                # same hash as before
	c compaction 5                           # hides /s/a@2, compacted revision 5
	c compaction 5
	c compaction 3
	c compaction 1000
	c compaction x
	c get /s/a --rev 4
	c get /s/a --rev 4 -w json
	c get /s/a --rev 5 -w json               # the compact revision itself
	c get --prefix /s/ --rev 6 -w json
	c get --prefix "" --rev 5 --keys-only
	c get /s/a --rev 0 -w json
	ci txn <<'EOF'

get /s/a --rev 3


EOF
	c endpoint hashkv --rev 4
	c endpoint hashkv --rev 5 -w json
	c endpoint hashkv -w json
	c put /s/a 40
	c put /s/a 41
	c compaction --physical 12               # hides more of /s/a
	c compaction --physical 12
	c get /s/a --rev 11
	c get --prefix /s/ --rev 12 -w json
	c get /s/b --rev 13 -w json
	c endpoint hashkv -w json
	c endpoint hashkv --rev 12
	c compaction 0
	# -------------------------------------------------- maintenance
	c defrag
	c defrag -w json
	c get --prefix /s/ -w json               # data survives defrag
	c alarm list
	c alarm list -w json                     # {}: no header in etcd's answer
	c alarm disarm
	c alarm disarm -w json
	r "Maintenance/Hash" /etcdserverpb.Maintenance/Hash ""
	r "Maintenance/Alarm GET" /etcdserverpb.Maintenance/Alarm ""
	r "KV/Compact below the compact revision" $KV/Compact "$(pb_int 1 3)"
	r "KV/Compact of a future revision" $KV/Compact "$(pb_int 1 100000)"
	c endpoint status -w json
	c get --prefix "" -w json                # final state
}

# tx_cmp COMPARE: one txn whose branches show which one ran.
tx_cmp() {
	ci txn <<EOF
$1

get /s/d --print-value-only

get /s/b --print-value-only

EOF
}

# tx_many NCMP NTHEN NELSE: a txn with that many compares (always true) and
# puts of distinct keys /m/NNN in each branch (etcd's default --max-txn-ops
# is 128). Recorded in the transcript as one line.
tx_many() {
	local i in=""
	for ((i = 0; i < $1; i++)); do in+="version(\"/m/$i\") = \"0\""$'\n'; done
	in+=$'\n'
	for ((i = 0; i < $2; i++)); do in+="put /m/$i t"$'\n'; done
	in+=$'\n'
	for ((i = 0; i < $3; i++)); do in+="put /m/e$i e"$'\n'; done
	in+=$'\n'
	printf '$ etcdctl txn # %d compares, %d then-puts, %d else-puts\n' "$1" "$2" "$3" >>"$OUT"
	TX_QUIET=1 ci txn <<<"$in"
}

# rt DESC COMPARE-HEX MARKER: raw Txn with one compare; the success branch
# puts MARKER=then, the failure branch MARKER=else.
rt() {
	r "$1" $KV/Txn "$2$(pb_then "$(pb_op_put "$3" "then")")$(pb_else "$(pb_op_put "$3" "else")")"
}

# -------------------------------------------------------------- execution ---

# run_side ID OUT: run script() against node ID, transcript to OUT.
run_side() {
	local id="$1"
	OUT="$2"
	: >"$OUT"
	SIDE_DEAD=0
	SIDE_ADDR="127.0.0.1:${NODE_CPORT[$id]}"
	SIDE_ID="$id"
	script
	check "'$id' survived the script" test "$SIDE_DEAD" = 0
}

side_check_alive() {
	if ! node_alive "$SIDE_ID"; then
		printf '[server exited; script stopped]\n' >>"$OUT"
		SIDE_DEAD=1
	fi
}

c() {
	local rc=0
	((SIDE_DEAD == 0)) || return 0
	{
		printf '$ etcdctl'
		printf ' %q' "$@"
		printf '\n'
	} >>"$OUT"
	ctl "$SIDE_ID" "$@" </dev/null >>"$OUT" 2>&1 || rc=$?
	printf '[exit %d]\n' "$rc" >>"$OUT"
	side_check_alive
}

ci() {
	local rc=0 in="$E2E_TMP/stdin"
	cat >"$in"
	((SIDE_DEAD == 0)) || return 0
	if [[ -z "${TX_QUIET:-}" ]]; then
		{
			printf '$ etcdctl'
			printf ' %q' "$@"
			printf ' <<EOF\n'
			sed 's/^/> /' "$in"
			printf 'EOF\n'
		} >>"$OUT"
	fi
	ctl "$SIDE_ID" "$@" <"$in" >>"$OUT" 2>&1 || rc=$?
	printf '[exit %d]\n' "$rc" >>"$OUT"
	side_check_alive
}

r() {
	local desc="$1" path="$2" hex="$3" rc=0 out
	((SIDE_DEAD == 0)) || return 0
	printf '$ grpcraw call %s  # %s\n' "$path" "$desc" >>"$OUT"
	out="$(timeout -k 2 15 "$GRPCRAW_BIN" call "$SIDE_ADDR" "$path" "$hex" --timeout 5 2>&1)" || rc=$?
	grep -v '^resp ' <<<"$out" >>"$OUT" || true
	printf '[exit %d]\n' "$rc" >>"$OUT"
	side_check_alive
}

# ---------------------------------------------------------- normalization ---
# Rules, applied to one side's transcript with that side's own values (the
# first eight are test_etcdctl_diff.sh's):
#  1. [http://]127.0.0.1:<its client port>  -> <CLIENT>
#  2. its member id (decimal and %x hex)    -> <MEMBER_ID>
#     its cluster id (decimal)               -> <CLUSTER_ID>
#  3. raft term: "raft_term":N, "raftTerm":N, "RaftTerm" : N -> <TERM>, for
#     N > 0 only (the headers inside Txn responses carry 0 and must keep it)
#  4. status numbers: dbSize, dbSizeInUse, raftIndex, raftAppliedIndex (and
#     DBSize, RaftIndex, RaftAppliedIndex) -> <N>; "version":"..." (status
#     only) -> <VERSION>
#  5. endpoint status simple and table rows: VERSION, DB SIZE, RAFT TERM,
#     RAFT INDEX, RAFT APPLIED INDEX columns -> placeholders
#  6. client log lines: "ts":"..." -> <TS>; client-<uuid> -> client-<UUID>
#  7. endpoint health: "took = <duration>" -> took = <DURATION>
#  8. table lines (starting with + or |): runs of spaces and of '-' collapse
#  9. HashKV hashes (simple, json, fields and table output) -> <HASH#n>, n
#     numbering the distinct values in order of first appearance: cetcd's
#     hash function is its own, but equal states must still hash equal and
#     different ones differently. The revision fields are kept.
# Everything else, revisions included, must match byte for byte.
# side_ids ID: read ID's member and cluster ids (before the script runs, so
# that a transcript can be normalized even if the server dies in it).
declare -A MDEC MHEX CDEC
side_ids() {
	local id="$1" st
	st="$(ctl "$id" endpoint status -w json)" || fail "endpoint status on '$id' failed"
	# Raw text, not jq: ids are uint64 and jq would round them.
	MDEC[$id]="$(grep -oE '"member_id":[0-9]+' <<<"$st" | head -n1 | cut -d: -f2)"
	CDEC[$id]="$(grep -oE '"cluster_id":[0-9]+' <<<"$st" | head -n1 | cut -d: -f2)"
	[[ -n "${MDEC[$id]}" && -n "${CDEC[$id]}" ]] || fail "no member_id/cluster_id in status of '$id': $st"
	MHEX[$id]="$(ctl "$id" endpoint status | cut -d, -f2 | tr -d ' ')"
	[[ -n "${MHEX[$id]}" ]] || fail "no hex member id in status of '$id'"
	log_info "'$id': member_id ${MDEC[$id]} (${MHEX[$id]}) cluster_id ${CDEC[$id]}"
}

normalize() {
	local id="$1" in="$2" out="$3" mdec="${MDEC[$1]}" mhex="${MHEX[$1]}" cdec="${CDEC[$1]}"
	sed -E \
		-e "s#(http://)?127\\.0\\.0\\.1:${NODE_CPORT[$id]}([^0-9]|\$)#<CLIENT>\\2#g" \
		-e "s/(^|[^0-9a-z])${mdec}([^0-9]|\$)/\\1<MEMBER_ID>\\2/g" \
		-e "s/(^|[^0-9a-z])${mhex}([^0-9a-z]|\$)/\\1<MEMBER_ID>\\2/g" \
		-e "s/(^|[^0-9a-z])${cdec}([^0-9]|\$)/\\1<CLUSTER_ID>\\2/g" \
		-e 's/"(raft_term|raftTerm)":[1-9][0-9]*/"\1":<TERM>/g' \
		-e 's/"RaftTerm" : [1-9][0-9]*/"RaftTerm" : <TERM>/g' \
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
		-e 's/^<CLIENT>, ([0-9]+)$/<CLIENT>, <HASH:\1>/' \
		-e 's/"hash":([0-9]+)/"hash":<HASH:\1>/g' \
		-e 's/^"Hash" : ([0-9]+)$/"Hash" : <HASH:\1>/' \
		-e 's/^\| <CLIENT> \| ([0-9]+) \|$/| <CLIENT> | <HASH:\1> |/' \
		"$in" |
		awk '{
			while (match($0, /<HASH:[0-9]+>/)) {
				v = substr($0, RSTART + 6, RLENGTH - 7)
				if (!(v in n)) n[v] = ++k
				$0 = substr($0, 1, RSTART - 1) "<HASH#" n[v] ">" substr($0, RSTART + RLENGTH)
			}
			print
		}' >"$out"
}

# ------------------------------------------------------------------- main ---

log_info "side A: real etcd ($ETCD_BIN)"
E2E_NAME=$NAME E2E_PEER_URL=$PEER_URL start_etcd etcd
wait_ready etcd
side_ids etcd
run_side etcd "$E2E_TMP/etcd.raw"
normalize etcd "$E2E_TMP/etcd.raw" "$E2E_TMP/etcd.txt"
stop_node etcd

log_info "side B: cetcd ($CETCD_BIN)"
E2E_NAME=$NAME E2E_PEER_URL=$PEER_URL start_cetcd cetcd
wait_ready cetcd
side_ids cetcd
run_side cetcd "$E2E_TMP/cetcd.raw"
normalize cetcd "$E2E_TMP/cetcd.raw" "$E2E_TMP/cetcd.txt"
stop_node cetcd

ncmd="$(grep -cE '^\$ (etcdctl|grpcraw)' "$E2E_TMP/etcd.txt")"
log_info "$ncmd commands per side"
check "script ran ($ncmd commands)" test "$ncmd" -ge 220
# Guards against a normalization that hides everything: the etcd side must
# still show real data, revisions and errors.
check "etcd transcript has a txn at revision 25" grep -q '"revision":25' "$E2E_TMP/etcd.txt"
check "etcd transcript has a compacted read" \
	grep -q '^Error: etcdserver: mvcc: required revision has been compacted$' "$E2E_TMP/etcd.txt"
check "etcd transcript has the duplicate-key error" \
	grep -q '^Error: etcdserver: duplicate key given in txn request$' "$E2E_TMP/etcd.txt"
check "etcd transcript has the too-many-ops error" \
	grep -q '^Error: etcdserver: too many operations in txn request$' "$E2E_TMP/etcd.txt"
check "etcd transcript has two distinct hashes" grep -q '<HASH#2>' "$E2E_TMP/etcd.txt"
if diff -u --label etcd --label cetcd "$E2E_TMP/etcd.txt" "$E2E_TMP/cetcd.txt"; then
	check "normalized transcripts are identical" true
else
	check "normalized transcripts are identical" false
fi
e2e_finish
