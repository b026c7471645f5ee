#!/usr/bin/env bash
# tests/e2e/test_cluster.sh: a 3-member cluster on loopback, started the way
# etcd's clustering guide starts one:
#   --name infra0 --initial-advertise-peer-urls http://127.0.0.1:P0
#   --listen-peer-urls http://127.0.0.1:P0
#   --initial-cluster infra0=http://127.0.0.1:P0,infra1=...,infra2=...
#   --initial-cluster-state new --initial-cluster-token <token>
#
# Checks, each bounded in time:
#  (a) one leader, the same for every member, within a few election
#      timeouts of the start; member and cluster IDs as etcd derives them;
#  (b) writes through every member (followers forward them), and every
#      member answers linearizable reads with every acknowledged write;
#  (c) kill -9 of the leader: a new leader within 3 election timeouts,
#      every acknowledged write readable on both survivors, writes go on;
#  (d) the old leader restarts and catches up (its serializable reads show
#      the writes made while it was down);
#  (e) one member alone (the two others stopped) has no quorum: a write
#      fails with etcd's error instead of hanging, and the cluster works
#      again once a second member is back;
#  (g) (run before f) a member down while the others write 7000 entries
#      (--snapshot-count 1000) catches up by the leader's snapshot: same
#      revision, values and HashKV as the others;
#  (h) (run before f) a fourth member added as a learner joins with
#      --initial-cluster-state existing, catches up, is promoted; a voter
#      is removed and stops by itself; another is removed while down and
#      stops by itself when it comes back;
#  (i) (run before f) five members: writes through each; with the leader
#      and one more killed, the other three elect a leader, take writes and
#      read every acknowledged one;
#  (f) a second cluster with the same settings given as YAML config files
#      (--config-file, etcd's keys): a leader, `member list` names every
#      member with its URLs, writes through one member read through another.
#
# Env: CETCD_BIN (set by meson); E2E_CETCD_IS_ETCD=1 runs it against real
# etcd.
# shellcheck disable=SC2317 # helpers run through check and eval
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

ELECTION_MS=1000
NODES=(infra0 infra1 infra2)
declare -A PPORT
cluster=""
for n in "${NODES[@]}"; do
	PPORT[$n]="$(free_port)"
	cluster+="${cluster:+,}$n=http://127.0.0.1:${PPORT[$n]}"
done
token="cetcd-e2e-cluster-$$"

start_member() {
	local n="$1" p="${PPORT[$1]}"
	E2E_PEER_URL="http://127.0.0.1:$p" start_cetcd "$n" \
		--listen-peer-urls "http://127.0.0.1:$p" \
		--initial-cluster "$cluster" --initial-cluster-state new \
		--initial-cluster-token "$token" --election-timeout "$ELECTION_MS" \
		--heartbeat-interval 100 --snapshot-count 1000
}

# status_field NODE FIELD: one field of `endpoint status -w json` (decimal).
status_field() {
	ctl "$1" endpoint status -w json 2>/dev/null |
		jq -r ".[0].Status.$2 // .[0].Status.header.$2 // empty" 2>/dev/null || true
}

# leader_of NODE: the leader ID NODE reports (empty or 0 if none).
leader_of() { status_field "$1" leader; }
member_of() { status_field "$1" member_id; }

# wait_leader MS NODE..: until every NODE reports the same non-zero leader,
# at most MS milliseconds; prints the leader's node name.
wait_leader() {
	local ms="$1" deadline l first n id
	shift
	deadline=$(($(date +%s%3N) + ms))
	while (($(date +%s%3N) < deadline)); do
		first=""
		for n in "$@"; do
			l="$(leader_of "$n")"
			if [[ -z "$l" || "$l" == 0 || (-n "$first" && "$l" != "$first") ]]; then
				first=""
				break
			fi
			first="$l"
		done
		if [[ -n "$first" ]]; then
			for n in "$@"; do
				id="$(member_of "$n")"
				if [[ "$id" == "$first" ]]; then
					echo "$n"
					return 0
				fi
			done
		fi
		sleep 0.1
	done
	return 1
}

for n in "${NODES[@]}"; do
	start_member "$n"
done
for n in "${NODES[@]}"; do
	wait_ready "$n"
done

# (a) ---------------------------------------------------------------------
leader="$(wait_leader $((10 * ELECTION_MS)) "${NODES[@]}")" ||
	fail "no common leader after $((10 * ELECTION_MS)) ms"
log_info "leader: $leader"
check "a leader is elected and every member agrees" test -n "$leader"
ids=""
for n in "${NODES[@]}"; do
	ids+="$(member_of "$n") "
done
check "three distinct member IDs" test "$(echo "$ids" | tr ' ' '\n' | sort -u | grep -c .)" = 3

# (b) ---------------------------------------------------------------------
declare -A MODEL
writes=0
for round in 1 2 3; do
	for n in "${NODES[@]}"; do
		k="k-$n-$round"
		if ctl "$n" put "$k" "v$round" >/dev/null 2>&1; then
			MODEL[$k]="v$round"
			writes=$((writes + 1))
		fi
	done
done
check_eq "9 writes through all members acknowledged" 9 "$writes"

# all_readable NODE: every acknowledged key has its value, read
# linearizably through NODE.
all_readable() {
	local n="$1" k got
	for k in "${!MODEL[@]}"; do
		got="$(ctl "$n" get "$k" --print-value-only 2>/dev/null)" || return 1
		[[ "$got" == "${MODEL[$k]}" ]] || {
			log_info "$n: $k is '$got', want '${MODEL[$k]}'"
			return 1
		}
	done
}
for n in "${NODES[@]}"; do
	check "linearizable reads on $n see every acknowledged write" all_readable "$n"
done
revs=""
for n in "${NODES[@]}"; do
	revs+="$(ctl "$n" get k --prefix --consistency=s -w json | jq -r .header.revision) "
done
check "every member reaches the same revision" \
	test "$(echo "$revs" | tr ' ' '\n' | sort -u | grep -c .)" = 1

table="$(ctl "${NODES[0]}" endpoint status --cluster -w table 2>&1 || true)"
check "endpoint status --cluster lists every member once" \
	test "$(grep -c '^| http://127.0.0.1:' <<<"$table")" = 3
check "endpoint status --cluster shows exactly one leader" \
	test "$(grep -c '| *true *| *false *|' <<<"$table")" = 1
list="$(ctl "${NODES[1]}" member list 2>&1 || true)"
for n in "${NODES[@]}"; do
	check "member list shows $n started with its peer URL" \
		grep -qF "started, $n, http://127.0.0.1:${PPORT[$n]}, " <<<"$list"
done

target="$(for n in "${NODES[@]}"; do [[ "$n" != "$leader" ]] && echo "$n" && break; done)"
# (IDs from `member list`: jq would round 64-bit numbers.)
hex_id() { ctl "${NODES[0]}" member list | awk -F', ' -v n="$1" '$3 == n { print $1 }'; }
tid_hex="$(hex_id "$target")"
out="$(timeout -k 2 30 "$ETCDCTL_BIN" --endpoints="$(node_url "${NODES[0]}"),$(node_url "${NODES[1]}"),$(node_url "${NODES[2]}")" \
	--command-timeout=10s move-leader "$tid_hex" 2>&1 || true)"
check "move-leader to $target" grep -q "Leadership transferred" <<<"$out"
check "$target leads now" test "$(wait_leader $((10 * ELECTION_MS)) "${NODES[@]}")" = "$target"
leader="$target"
out="$(ctl "$leader" member update "$(hex_id "${NODES[0]}")" \
	--peer-urls="http://127.0.0.1:${PPORT[${NODES[0]}]}" 2>&1 || true)"
check "member update (same peer URLs)" grep -q "updated in cluster" <<<"$out"
check "member update of an unknown ID: etcd's error" \
	grep -q "etcdserver: member not found" <<<"$(ctl "$leader" member update 1234 --peer-urls=http://127.0.0.1:1 2>&1)"

# (c) ---------------------------------------------------------------------
survivors=()
for n in "${NODES[@]}"; do
	[[ "$n" == "$leader" ]] || survivors+=("$n")
done
t0=$(date +%s%3N)
kill_node "$leader"
new_leader="$(wait_leader $((10 * ELECTION_MS)) "${survivors[@]}")" ||
	fail "no new leader after the old one was killed"
t1=$(date +%s%3N)
log_info "new leader $new_leader after $((t1 - t0)) ms"
check "a new leader within 3 election timeouts ($((t1 - t0)) ms)" \
	test $((t1 - t0)) -le $((3 * ELECTION_MS + 1000))
for n in "${survivors[@]}"; do
	check "every acknowledged write readable on $n after the leader died" all_readable "$n"
done
writes=0
for n in "${survivors[@]}"; do
	for round in 4 5; do
		k="k-$n-$round"
		if ctl "$n" put "$k" "v$round" >/dev/null 2>&1; then
			MODEL[$k]="v$round"
			writes=$((writes + 1))
		fi
	done
done
check_eq "writes go on with two members" 4 "$writes"

# (d) ---------------------------------------------------------------------
restart_node "$leader"
wait_ready "$leader"
caught_up() {
	local n="$1" k got
	for k in "${!MODEL[@]}"; do
		got="$(ctl "$n" get "$k" --print-value-only --consistency=s 2>/dev/null)" || return 1
		[[ "$got" == "${MODEL[$k]}" ]] || return 1
	done
}
ok=0
for _ in $(seq 1 100); do
	if caught_up "$leader"; then
		ok=1
		break
	fi
	sleep 0.1
done
check "the restarted member caught up (serializable reads)" test "$ok" = 1
check "the restarted member serves linearizable reads" all_readable "$leader"
wait_leader $((10 * ELECTION_MS)) "${NODES[@]}" >/dev/null ||
	fail "the three members do not agree on a leader after the restart"

# (e) ---------------------------------------------------------------------
alone="${NODES[0]}"
for n in "${NODES[@]:1}"; do
	stop_node "$n"
done
t0=$(date +%s)
out="$(ctl "$alone" put lonely x 2>&1 || true)"
t1=$(date +%s)
log_info "a write without quorum answered after $((t1 - t0)) s: $out"
check "a write without quorum fails (no hang)" test -n "$out"
check "a write without quorum fails with a timeout or no-leader error" \
	grep -qE 'etcdserver: (request timed out|no leader)|context deadline exceeded' <<<"$out"
restart_node "${NODES[1]}"
wait_ready "${NODES[1]}"
wait_leader $((10 * ELECTION_MS)) "$alone" "${NODES[1]}" >/dev/null ||
	fail "no leader once a second member is back"
check "writes work again with a quorum" ctl "$alone" put back-again y
check "and are readable through the other member" \
	test "$(ctl "${NODES[1]}" get back-again --print-value-only)" = y

# (g) ---------------------------------------------------------------------
# A member down while the others write more than --snapshot-count plus the
# log kept behind a snapshot for slow followers (5000 entries) catches up
# by receiving the leader's snapshot, then the rest of the log.
command -v h2load >/dev/null 2>&1 || fail "h2load not found (nghttp2-client)"
lagger="${NODES[2]}"
stop_node "$lagger"
leader="$(wait_leader $((10 * ELECTION_MS)) "${NODES[0]}" "${NODES[1]}")" ||
	fail "no leader with two members before the snapshot catch-up"
printf '\x00\x00\x00\x00\x0e\x0a\x07lag/key\x12\x03val' >"$E2E_TMP/lagput.body"
PUTS=7000
timeout -k 5 120 h2load -t 1 -c 2 -m 16 -n "$PUTS" -d "$E2E_TMP/lagput.body" \
	-H 'content-type: application/grpc' -H 'te: trailers' \
	"$(node_url "$leader")/etcdserverpb.KV/Put" >"$E2E_TMP/lag.h2load" 2>&1 || true
check "$PUTS puts while $lagger is down" grep -q "$PUTS succeeded" "$E2E_TMP/lag.h2load"
want_rev="$(ctl "$leader" get lag/key -w json | jq -r .header.revision)"
restart_node "$lagger"
wait_ready "$lagger"
ok=0
got_rev=""
for _ in $(seq 1 150); do
	got_rev="$(ctl "$lagger" get lag/key --consistency=s -w json 2>/dev/null | jq -r '.header.revision' 2>/dev/null || true)"
	if [[ -n "$got_rev" && "$got_rev" -ge "$want_rev" ]]; then
		ok=1
		break
	fi
	sleep 0.1
done
check "$lagger caught up to revision $want_rev (has $got_rev)" test "$ok" = 1
check "$lagger installed a snapshot from the leader" \
	grep -q "installed the leader's snapshot" "$(node_log "$lagger")"
check "$lagger has the value written while it was down" \
	test "$(ctl "$lagger" get lag/key --consistency=s --print-value-only)" = val
check "$lagger keeps every earlier write" caught_up "$lagger"
check "the hashes of all members agree at revision $want_rev" \
	test "$(for n in "${NODES[@]}"; do ctl "$n" endpoint hashkv --rev "$want_rev" -w json | jq -r '.[0].HashKV.hash'; done | sort -u | wc -l)" = 1
kill_node "$lagger"
restart_node "$lagger"
wait_ready "$lagger"
check "after kill -9 and restart, $lagger starts from the installed snapshot" \
	test "$(ctl "$lagger" get lag/key --consistency=s -w json | jq -r .header.revision)" -ge "$want_rev"
check "and still has every earlier write" caught_up "$lagger"

# (h) ---------------------------------------------------------------------
# Membership: a fourth member is added as a learner and joins with
# --initial-cluster-state existing, catches up, refuses linearizable reads
# as a learner, is promoted; then a voter is removed and stops by itself.
P3="$(free_port)"
U3="http://127.0.0.1:$P3"
out="$(ctl "${NODES[0]}" member add infra3 --peer-urls="$U3" --learner 2>&1 || true)"
check "member add --learner" grep -qE "^Member +[0-9a-f]+ added to cluster" <<<"$out"
check "member add prints the join settings" grep -qF 'ETCD_INITIAL_CLUSTER_STATE="existing"' <<<"$out"
id3="$(ctl "${NODES[0]}" member list | awk -F', ' -v u="$U3" '$4 == u { print $1 }')"
check "the new member is listed, unstarted, as a learner" \
	grep -qE "^$id3, unstarted, , $U3, , true" <<<"$(ctl "${NODES[0]}" member list)"
E2E_PEER_URL="$U3" start_cetcd infra3 --listen-peer-urls "$U3" \
	--initial-cluster "$cluster,infra3=$U3" --initial-cluster-state existing \
	--initial-cluster-token "$token" --election-timeout "$ELECTION_MS" --heartbeat-interval 100
wait_ready infra3
ok=0
for _ in $(seq 1 100); do
	if caught_up infra3; then
		ok=1
		break
	fi
	sleep 0.1
done
check "the learner caught up (serializable reads)" test "$ok" = 1
out="$("$GRPCRAW_BIN" range "127.0.0.1:${NODE_CPORT[infra3]}" "k-infra0-1" 2>&1 || true)"
check "the learner refuses a linearizable read with etcd's error" \
	grep -q "rpc not supported for learner" <<<"$out"
ok=0
for _ in $(seq 1 50); do
	if ctl "${NODES[0]}" member promote "$id3" 2>&1 | grep -q "promoted"; then
		ok=1
		break
	fi
	sleep 0.2
done
check "member promote" test "$ok" = 1
check "infra3 is a started voter" \
	grep -qE "^$id3, started, infra3, $U3, http://127.0.0.1:${NODE_CPORT[infra3]}, false" \
	<<<"$(ctl "${NODES[0]}" member list)"
check "infra3 serves linearizable reads" all_readable infra3
victim="${NODES[1]}"
idv="$(ctl "${NODES[0]}" member list | awk -F', ' -v n="$victim" '$3 == n { print $1 }')"
check "member remove $victim" grep -q "removed from cluster" <<<"$(ctl infra3 member remove "$idv" 2>&1)"
ok=0
for _ in $(seq 1 100); do
	if ! node_alive "$victim"; then
		ok=1
		break
	fi
	sleep 0.1
done
check "the removed member stopped by itself" test "$ok" = 1
check "three members left" test "$(ctl infra3 member list | grep -c started)" = 3
# (Removing the leader makes the others elect a new one first.)
wait_leader $((10 * ELECTION_MS)) "${NODES[0]}" "${NODES[2]}" infra3 >/dev/null ||
	fail "no leader among the three left"
check "writes go on without it" ctl infra3 put after-remove yes
check "read back through ${NODES[0]}" \
	test "$(ctl "${NODES[0]}" get after-remove --print-value-only)" = yes
# A member removed while it is down learns it from the others when it
# comes back (etcd answers it 410 Gone) and stops by itself.
down="${NODES[2]}"
idd="$(ctl "${NODES[0]}" member list | awk -F', ' -v n="$down" '$3 == n { print $1 }')"
stop_node "$down"
check "member remove $down while it is down" \
	grep -q "removed from cluster" <<<"$(ctl infra3 member remove "$idd" 2>&1)"
restart_node "$down"
ok=0
for _ in $(seq 1 100); do
	if ! node_alive "$down"; then
		ok=1
		break
	fi
	sleep 0.1
done
check "$down, removed while down, stops by itself once back" test "$ok" = 1
check "$down says why" grep -q "this member was removed from the cluster" "$(node_log "$down")"
check "two members left, and they take writes" ctl infra3 put two-left yes
stop_node infra3

# (i) ---------------------------------------------------------------------
# Five members: any two may fail.
FIVE=(five0 five1 five2 five3 five4)
declare -A P5
cluster5=""
for n in "${FIVE[@]}"; do
	P5[$n]="$(free_port)"
	cluster5+="${cluster5:+,}$n=http://127.0.0.1:${P5[$n]}"
done
for n in "${FIVE[@]}"; do
	E2E_PEER_URL="http://127.0.0.1:${P5[$n]}" start_cetcd "$n" \
		--listen-peer-urls "http://127.0.0.1:${P5[$n]}" \
		--initial-cluster "$cluster5" --initial-cluster-state new \
		--initial-cluster-token "five-$token" --election-timeout "$ELECTION_MS" \
		--heartbeat-interval 100
done
for n in "${FIVE[@]}"; do
	wait_ready "$n"
done
lead5="$(wait_leader $((10 * ELECTION_MS)) "${FIVE[@]}")" || fail "five members: no leader"
check "five members agree on a leader" test -n "$lead5"
writes=0
for n in "${FIVE[@]}"; do
	ctl "$n" put "five/$n" "$n" >/dev/null 2>&1 && writes=$((writes + 1))
done
check_eq "a write through each of the five" 5 "$writes"
# Kill the leader and one more.
other="${FIVE[0]}"
[[ "$other" != "$lead5" ]] || other="${FIVE[1]}"
kill_node "$lead5"
kill_node "$other"
alive=()
for n in "${FIVE[@]}"; do
	[[ "$n" == "$lead5" || "$n" == "$other" ]] || alive+=("$n")
done
wait_leader $((10 * ELECTION_MS)) "${alive[@]}" >/dev/null ||
	fail "five members: no leader after two were killed"
check "three of five take writes" ctl "${alive[0]}" put five/after yes
ok=1
for n in "${alive[@]}"; do
	for k in "${FIVE[@]}"; do
		[[ "$(ctl "$n" get "five/$k" --print-value-only 2>/dev/null)" == "$k" ]] || ok=0
	done
	[[ "$(ctl "$n" get five/after --print-value-only 2>/dev/null)" == yes ]] || ok=0
done
check "the three survivors read every acknowledged write" test "$ok" = 1
for n in "${alive[@]}"; do
	stop_node "$n"
done

# (f) ---------------------------------------------------------------------
for n in "${NODES[@]}"; do
	stop_node "$n"
done
declare -A YC YP
ycluster=""
for n in "${NODES[@]}"; do
	YC[$n]="$(free_port)"
	YP[$n]="$(free_port)"
	ycluster+="${ycluster:+,}y$n=http://127.0.0.1:${YP[$n]}"
done
ypids=()
e2e_on_cleanup 'for p in "${ypids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done'
for n in "${NODES[@]}"; do
	cat >"$E2E_TMP/y$n.yml" <<EOF
# etcd's configuration file keys
name: 'y$n'
data-dir: $E2E_TMP/y$n.data
listen-peer-urls: http://127.0.0.1:${YP[$n]}
listen-client-urls: http://127.0.0.1:${YC[$n]}
initial-advertise-peer-urls: http://127.0.0.1:${YP[$n]}
advertise-client-urls: http://127.0.0.1:${YC[$n]}
initial-cluster: $ycluster
initial-cluster-token: yaml-$token
initial-cluster-state: new
heartbeat-interval: 100
election-timeout: $ELECTION_MS
EOF
	"$CETCD_BIN" --config-file "$E2E_TMP/y$n.yml" >"$E2E_TMP/y$n.log" 2>&1 </dev/null &
	ypids+=($!)
done
yctl() {
	local n="$1"
	shift
	timeout -k 2 30 "$ETCDCTL_BIN" --endpoints="http://127.0.0.1:${YC[$n]}" \
		--dial-timeout=2s --command-timeout=5s "$@"
}
ok=0
for _ in $(seq 1 100); do
	if yctl "${NODES[0]}" put from-yaml 1 >/dev/null 2>&1; then
		ok=1
		break
	fi
	sleep 0.1
done
check "the YAML-configured cluster takes a write" test "$ok" = 1
check "read back through another member" \
	test "$(yctl "${NODES[2]}" get from-yaml --print-value-only 2>/dev/null)" = 1
ok=0
list=""
for _ in $(seq 1 50); do
	list="$(yctl "${NODES[1]}" member list 2>/dev/null || true)"
	if [[ "$(grep -c ', started, y' <<<"$list")" == 3 ]]; then
		ok=1
		break
	fi
	sleep 0.1
done
check "member list names the three members, started" test "$ok" = 1
for n in "${NODES[@]}"; do
	check "member list has y$n with its peer and client URLs" \
		grep -qF "y$n, http://127.0.0.1:${YP[$n]}, http://127.0.0.1:${YC[$n]}" <<<"$list"
done
for p in "${ypids[@]}"; do
	kill -TERM "$p" 2>/dev/null || true
done
for p in "${ypids[@]}"; do
	for _ in $(seq 1 100); do
		kill -0 "$p" 2>/dev/null || break
		sleep 0.1
	done
done
for n in "${NODES[@]}"; do
	if grep -qE 'ERROR: (Address|Leak|Thread)Sanitizer|runtime error:|WARNING: ThreadSanitizer' "$E2E_TMP/y$n.log"; then
		check "no sanitizer report from y$n" false
	fi
done

e2e_finish
