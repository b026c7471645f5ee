#!/usr/bin/env bash
# tests/e2e/test_lease.sh: the Lease service (issue 5).
#
# Part 1, differential: one script of etcdctl commands (and raw gRPC calls
# for what etcdctl cannot say: a grant with a chosen ID, a TTL past etcd's
# maximum) runs against a fresh real etcd and a fresh cetcd; the normalized
# transcripts must be identical. Covers lease grant (TTL raised to the
# minimum), put --lease, get -w json (the lease field), lease timetolive
# [--keys] [-w json], lease list, a put without lease / --ignore-lease /
# del / txn put and del moving keys on and off a lease, lease revoke (its
# keys gone in one revision), errors for unknown lease IDs (put, txn,
# revoke, timetolive), "lease already exists", "too large lease TTL", and
# a lease of TTL 2 expiring on its own (its key deleted) within TTL+2.5 s.
#
# Normalization (besides the ids of test_kv_diff.sh): each lease ID the
# server chose (hex and decimal) -> <LEASE#n> in order of grant;
# "remaining(Ns)" and timetolive's "ttl":N -> placeholders (etcd answers
# N-1 just after a grant, a clock measure both sides take at different
# moments; cetcd's values are checked on their own below); a lease's key
# list is sorted (etcd 3.4 gives it in Go map order).
#
# Part 2, cetcd only:
#  - leases, their keys and their deadline survive a restart (WAL replay)
#    and a snapshot (--snapshot-count 5: the LEASES snapshot section).
#  - three members with --experimental-enable-lease-checkpoint and cetcd's
#    --lease-checkpoint-interval-ms 1000: after a checkpoint, the leader is
#    killed; the new leader continues the lease from its checkpointed
#    remaining TTL (plus etcd's election-timeout extension) instead of
#    resetting it to the full TTL, and the lease then expires on time.
#
# Env: CETCD_BIN, ETCD_BIN, ETCDCTL_BIN, GRPCRAW_BIN; E2E_KEEP=1.
# shellcheck disable=SC2317 # helpers run through check and eval
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

command -v "$ETCDCTL_BIN" >/dev/null 2>&1 || skip "etcdctl not installed"
command -v "$ETCD_BIN" >/dev/null 2>&1 || skip "etcd not installed"
command -v jq >/dev/null 2>&1 || skip "jq not installed"
[[ -x "$GRPCRAW_BIN" ]] || fail "grpcraw not found: $GRPCRAW_BIN (set GRPCRAW_BIN)"

NAME=leasediffnode
PEER_URL="http://127.0.0.1:$(free_port)"
LEASE=/etcdserverpb.Lease

# ------------------------------------------------------------------ script ---
# c, ci and r as in test_kv_diff.sh; `g ARGS..` is `c lease grant ARGS..`
# that also sets LID to the ID granted.
script() {
	g 100
	A="$LID"
	c put --lease="$A" k1 v1
	c put --lease="$A" k2 v2
	c put k3 v3
	c get k1 -w json
	c get --prefix k -w json
	c lease timetolive "$A"
	c lease timetolive "$A" --keys
	c lease timetolive "$A" --keys -w json
	c lease list
	c lease list -w json
	# a put without a lease detaches; --ignore-lease keeps the attachment
	c put k2 v2b
	c lease timetolive "$A" --keys
	c put --lease="$A" k3 v3b
	c put --ignore-lease k3 v3c
	c get k3 -w json
	c lease timetolive "$A" --keys
	c del k3 --prev-kv -w json
	c lease timetolive "$A" --keys
	# txn puts attach, txn deletes detach
	ci txn -w json <<EOF
value("k1") = "v1"

put t1 x --lease=$A
put t2 y --lease=$A
del k2


EOF
	c lease timetolive "$A" --keys
	ci txn <<EOF


del t2


EOF
	c lease timetolive "$A" --keys
	# unknown leases
	c put --lease=1234 x y
	ci txn <<'EOF'


put x y --lease=1234


EOF
	c lease timetolive 1234
	c lease timetolive 1234 -w json
	c lease revoke 1234
	c get --prefix "" -w json
	# revoke: every attached key goes, in one revision
	c lease revoke "$A"
	c get --prefix "" -w json
	c lease timetolive "$A"
	c lease list
	c lease revoke "$A"
	# a chosen ID; already exists; too large a TTL
	r "grant ID 119 TTL 60" "$LEASE/LeaseGrant" 083c1077
	r "grant ID 119 again" "$LEASE/LeaseGrant" 083c1077
	r "grant TTL 9000000001" "$LEASE/LeaseGrant" 0881b4c4c3211078
	c lease list
	c lease timetolive 77
	c put --lease=77 p q
	c get p -w json
	c lease revoke 77
	c get p
	# a short lease expires on its own: TTL 1 is raised to etcd's minimum
	# (2 s with the default 100 ms heartbeat and 1 s election timeout)
	g 1
	B="$LID"
	c put --lease="$B" e1 x
	c put --lease="$B" e2 y
	sleep 4.5
	c get --prefix e -w json
	c lease timetolive "$B"
	c lease list
	c get --prefix "" -w json
}

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
	{
		printf '$ etcdctl'
		printf ' %q' "$@"
		printf ' <<EOF\n'
		sed 's/^/> /' "$in"
		printf 'EOF\n'
	} >>"$OUT"
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

g() {
	c lease grant "$@"
	LID="$(grep -oE '^lease [0-9a-f]+ granted' "$OUT" | tail -n1 | cut -d' ' -f2)"
	[[ -n "$LID" ]] || LID=ffff
}

# ---------------------------------------------------------- normalization ---
declare -A MDEC MHEX CDEC
side_ids() {
	local id="$1" st
	st="$(ctl "$id" endpoint status -w json)" || fail "endpoint status on '$id' failed"
	MDEC[$id]="$(grep -oE '"member_id":[0-9]+' <<<"$st" | head -n1 | cut -d: -f2)"
	CDEC[$id]="$(grep -oE '"cluster_id":[0-9]+' <<<"$st" | head -n1 | cut -d: -f2)"
	[[ -n "${MDEC[$id]}" && -n "${CDEC[$id]}" ]] || fail "no member_id/cluster_id in status of '$id'"
	MHEX[$id]="$(ctl "$id" endpoint status | cut -d, -f2 | tr -d ' ')"
}

normalize() {
	local id="$1" in="$2" out="$3" mdec="${MDEC[$1]}" mhex="${MHEX[$1]}" cdec="${CDEC[$1]}"
	local rules=() n=0 hex
	for hex in $(grep -oE '^lease [0-9a-f]+ granted' "$in" | cut -d' ' -f2); do
		n=$((n + 1))
		rules+=(-e "s/(^|[^0-9a-z])${hex}([^0-9a-z]|\$)/\\1<LEASE#$n>\\2/g")
		rules+=(-e "s/(^|[^0-9])$((16#$hex))([^0-9]|\$)/\\1<LEASE#$n>\\2/g")
	done
	sed -E \
		-e "s#(http://)?127\\.0\\.0\\.1:${NODE_CPORT[$id]}([^0-9]|\$)#<CLIENT>\\2#g" \
		-e "s/(^|[^0-9a-z])${mdec}([^0-9]|\$)/\\1<MEMBER_ID>\\2/g" \
		-e "s/(^|[^0-9a-z])${mhex}([^0-9a-z]|\$)/\\1<MEMBER_ID>\\2/g" \
		-e "s/(^|[^0-9a-z])${cdec}([^0-9]|\$)/\\1<CLUSTER_ID>\\2/g" \
		"${rules[@]}" \
		-e 's/"raft_term":[1-9][0-9]*/"raft_term":<TERM>/g' \
		-e 's/"ts":"[^"]*"/"ts":"<TS>"/g' \
		-e 's/client-[0-9a-f-]{36}/client-<UUID>/g' \
		-e 's/remaining\([0-9]+s\)/remaining(<R>)/g' \
		-e 's/"ttl":[0-9]+/"ttl":<R>/g' \
		"$in" | sort_keys >"$out"
}

# etcd 3.4 lists a lease's keys in Go map order (random): both sides' key
# lists are sorted (text "attached keys([..])" and json "keys":[..]).
sort_keys() {
	perl -pe 's/attached keys\(\[([^\]]*)\]\)/"attached keys([" . join(" ", sort split(" ", $1)) . "])"/e;
		s/"keys":\[([^\]]*)\]/"\"keys\":[" . join(",", sort split(",", $1)) . "]"/e'
}

# ------------------------------------------------------ part 1: the diff ---

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

check "etcd transcript: a lease was granted" grep -q 'granted with TTL(100s)' "$E2E_TMP/etcd.txt"
check "etcd transcript: lease not found" \
	grep -q '^Error: etcdserver: requested lease not found$' "$E2E_TMP/etcd.txt"
check "etcd transcript: lease already exists" \
	grep -q 'lease already exists' "$E2E_TMP/etcd.txt"
rem="$(grep -oE 'remaining\([0-9]+s\)' "$E2E_TMP/cetcd.raw" | head -n1 | tr -dc 0-9)"
check "cetcd: remaining TTL just after a grant of 100 s is 98..100 (got $rem)" \
	test "${rem:-0}" -ge 98 -a "${rem:-0}" -le 100
if diff -u --label etcd --label cetcd "$E2E_TMP/etcd.txt" "$E2E_TMP/cetcd.txt"; then
	check "normalized transcripts are identical" true
else
	check "normalized transcripts are identical" false
fi

# ------------------------------------------- part 2: restarts, snapshots ---

# ttl_of NODE ID: the remaining TTL NODE answers for lease ID (hex).
ttl_of() {
	ctl "$1" lease timetolive "$2" -w json 2>/dev/null | jq -r '.ttl // empty' 2>/dev/null || true
}

log_info "restart and snapshot: one cetcd with --snapshot-count 5"
start_cetcd solo --snapshot-count 5
wait_ready solo
L="$(ctl solo lease grant 300 | grep -oE '^lease [0-9a-f]+' | cut -d' ' -f2)"
ctl solo put --lease="$L" sk1 v >/dev/null
ctl solo put --lease="$L" sk2 v >/dev/null
stop_node solo
restart_node solo
wait_ready solo
check_eq "after a restart (WAL replay): keys still attached" \
	"lease $L granted with TTL(300s), remaining(R), attached keys([sk1 sk2])" \
	"$(ctl solo lease timetolive "$L" --keys | sed -E 's/remaining\([0-9]+s\)/remaining(R)/')"
for i in $(seq 1 12); do ctl solo put "filler$i" v >/dev/null; done
ctl solo del sk2 >/dev/null
for i in $(seq 1 6); do ctl solo put "filler$i" w >/dev/null; done
nsnap="$(find "$(node_dir solo)/member/snap" -name '*.snap' | wc -l)"
check "snapshots were written ($nsnap)" test "$nsnap" -ge 1
stop_node solo
restart_node solo
wait_ready solo
check_eq "after a restart from a snapshot: the lease and its key" \
	"lease $L granted with TTL(300s), remaining(R), attached keys([sk1])" \
	"$(ctl solo lease timetolive "$L" --keys | sed -E 's/remaining\([0-9]+s\)/remaining(R)/')"
ctl solo lease revoke "$L" >/dev/null
check_eq "revoke after the snapshot deletes the key" "" "$(ctl solo get sk1)"
# KeepAlive (a bidirectional stream): etcd's answers for an unknown lease,
# and a lease kept alive past its TTL keeps its key.
check_eq "keep-alive --once of an unknown lease: etcd's error" \
	"Error: etcdserver: requested lease not found" \
	"$(ctl solo lease keep-alive --once 1234 2>&1 | tail -n 1)"
check_eq "keep-alive of an unknown lease: etcd's message" \
	"lease 0000000000001234 expired or revoked." \
	"$(ctl solo lease keep-alive 1234 2>&1 | tail -n 1)"
K="$(ctl solo lease grant 2 | grep -oE '^lease [0-9a-f]+' | cut -d' ' -f2)"
ctl solo put --lease="$K" kept v >/dev/null
check "keep-alive --once answers the TTL" \
	grep -q "^lease $K keepalived with TTL(2)" <<<"$(ctl solo lease keep-alive --once "$K" 2>&1)"
timeout 4 "$ETCDCTL_BIN" --endpoints="$(node_url solo)" lease keep-alive "$K" >"$E2E_TMP/ka.out" 2>&1 || true
check "keep-alive streams several answers" test "$(grep -c "keepalived with TTL(2)" "$E2E_TMP/ka.out")" -ge 2
check_eq "the key lived past its 2 s TTL" v "$(ctl solo get kept --print-value-only)"

stop_node solo

# -------------------------------------- part 3: checkpoints in a cluster ---

ELECTION_MS=1000
NODES=(m0 m1 m2)
declare -A PPORT
cluster=""
for n in "${NODES[@]}"; do
	PPORT[$n]="$(free_port)"
	cluster+="${cluster:+,}$n=http://127.0.0.1:${PPORT[$n]}"
done
token="cetcd-e2e-lease-$$"
for n in "${NODES[@]}"; do
	E2E_PEER_URL="http://127.0.0.1:${PPORT[$n]}" start_cetcd "$n" \
		--listen-peer-urls "http://127.0.0.1:${PPORT[$n]}" \
		--initial-cluster "$cluster" --initial-cluster-state new \
		--initial-cluster-token "$token" --election-timeout "$ELECTION_MS" \
		--heartbeat-interval 100 --experimental-enable-lease-checkpoint \
		--lease-checkpoint-interval-ms 1000
done
for n in "${NODES[@]}"; do
	wait_ready "$n"
done

status_field() {
	ctl "$1" endpoint status -w json 2>/dev/null |
		jq -r ".[0].Status.$2 // .[0].Status.header.$2 // empty" 2>/dev/null || true
}

# wait_leader MS NODE..: prints the node every NODE names as leader.
wait_leader() {
	local ms="$1" deadline l first n
	shift
	deadline=$(($(date +%s%3N) + ms))
	while (($(date +%s%3N) < deadline)); do
		first=""
		for n in "$@"; do
			l="$(status_field "$n" leader)"
			if [[ -z "$l" || "$l" == 0 || (-n "$first" && "$l" != "$first") ]]; then
				first=""
				break
			fi
			first="$l"
		done
		if [[ -n "$first" ]]; then
			for n in "$@"; do
				if [[ "$(status_field "$n" member_id)" == "$first" ]]; then
					echo "$n"
					return 0
				fi
			done
		fi
		sleep 0.1
	done
	return 1
}

leader="$(wait_leader $((10 * ELECTION_MS)) "${NODES[@]}")" || fail "no leader"
log_info "leader: $leader"
L="$(ctl "$leader" lease grant 14 | grep -oE '^lease [0-9a-f]+' | cut -d' ' -f2)"
ctl "$leader" put --lease="$L" ck v >/dev/null
t0=$(date +%s%3N)
sleep 6
before="$(ttl_of "$leader" "$L")"
check "the leader counts the lease down (ttl $before, about 8)" test "${before:-0}" -le 9 -a "${before:-0}" -ge 6
others=()
for n in "${NODES[@]}"; do [[ "$n" != "$leader" ]] && others+=("$n"); done
fttl="$(ttl_of "${others[0]}" "$L")"
check "a follower answers from the last checkpoint (ttl $fttl, below 14)" \
	test "${fttl:-99}" -le 10 -a "${fttl:-0}" -ge 5
kill_node "$leader"
new="$(wait_leader $((10 * ELECTION_MS)) "${others[@]}")" || fail "no new leader"
log_info "new leader: $new"
after="$(ttl_of "$new" "$L")"
# Reset to the full TTL, the new leader would answer 14 (15 with the
# election-timeout extension); continued from the checkpoint, at most
# about 8 + 1.
check "the new leader continues the lease (ttl $after, not reset to 14)" \
	test "${after:-99}" -le 10 -a "${after:-0}" -ge 3
gone=""
while (($(date +%s%3N) - t0 < 20000)); do
	if [[ -z "$(ctl "$new" get ck 2>/dev/null)" ]]; then
		gone=$(($(date +%s%3N) - t0))
		break
	fi
	sleep 0.2
done
# Continued: about 14 s + the election + 1 s of extension; reset, it
# would be at least 6 + 1 + 15 = 22 s.
check "the lease expires on the new leader's clock (${gone:-never} ms after the grant, TTL 14 s)" \
	test -n "$gone" -a "${gone:-0}" -ge 13000 -a "${gone:-0}" -le 19500
check_eq "the lease is gone on every live member" "" \
	"$(ctl "${others[0]}" lease list | tail -n +2; ctl "${others[1]}" lease list | tail -n +2)"
e2e_finish
