#!/usr/bin/env bash
# tests/e2e/test_linearizable.sh: linearizability of a 3-member cluster
# under faults, checked by lincheck (tests/e2e/lincheck.c).
#
# Each run starts netproxy (tests/e2e/netproxy.c) and a fresh 3-member
# cluster whose advertised peer URLs (--initial-advertise-peer-urls,
# --initial-cluster) are the proxy's ports while --listen-peer-urls are the
# real ones, so every Raft peer connection goes through the proxy. Then
# `lincheck run` drives concurrent clients (puts, linearizable gets,
# compare-and-set Txns on a few keys) for LIN_DURATION_S seconds while a
# fault loop, every 1.5-3 s, does one of: kill -9 or SIGSTOP a member
# (never more than one down) / restart or SIGCONT it, isolate a member
# (symmetric partition), a one-way partition, a slow link, heal all; half
# of the faults aim at the current leader. At the end everything is healed and
# restarted, the members must agree on a leader, and `lincheck check
# --final` reads every key once more and checks the whole history.
#
# Checks per run: lincheck's verdict is "linearizable" (no stale read, no
# lost acknowledged write, no double CAS winner...); at least LIN_MIN_OK
# operations succeeded (else the run proved little); no member died unless
# killed; no assertion failure in any log. e2e_finish adds: no sanitizer
# report in any log.
#
# Env: LINCHECK_BIN NETPROXY_BIN CETCD_BIN (set by meson);
#   LIN_SEED     base seed (default $RANDOM); run r uses LIN_SEED + r - 1.
#                Replay run r alone: LIN_SEED=<its seed> LIN_RUNS=1.
#   LIN_RUNS     runs (default 2; 1 in sanitizer builds)
#   LIN_DURATION_S  seconds of load per run (default 25; 20 sanitized)
#   LIN_CLIENTS LIN_KEYS   lincheck's load (default 6 clients, 4 keys)
#   LIN_MIN_OK   minimum ok operations per run (default 300; 100 sanitized)
#   LIN_SERIALIZABLE=1  serializable (stale-capable) gets: the test must
#                then FAIL; a check that it can catch stale reads
#   E2E_KEEP=1   keep histories, proxy and member logs ($E2E_TMP)
# shellcheck disable=SC2317 # helpers run through check and eval
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

: "${LINCHECK_BIN:=$E2E_ROOT/build/tests/e2e/lincheck}"
: "${NETPROXY_BIN:=$E2E_ROOT/build/tests/e2e/netproxy}"
[[ -x "$LINCHECK_BIN" ]] || fail "lincheck not found: $LINCHECK_BIN (set LINCHECK_BIN)"
[[ -x "$NETPROXY_BIN" ]] || fail "netproxy not found: $NETPROXY_BIN (set NETPROXY_BIN)"

ELECTION_MS=1000
if [[ "${E2E_SANITIZED:-0}" == 1 ]]; then
	: "${LIN_RUNS:=1}" "${LIN_DURATION_S:=20}" "${LIN_MIN_OK:=100}"
else
	: "${LIN_RUNS:=2}" "${LIN_DURATION_S:=25}" "${LIN_MIN_OK:=300}"
fi
: "${LIN_CLIENTS:=6}" "${LIN_KEYS:=4}"
FAULTS_MAX=20
base_seed="${LIN_SEED:-$RANDOM}"
log_info "seed $base_seed: $LIN_RUNS run(s) of ${LIN_DURATION_S}s, $LIN_CLIENTS clients, $LIN_KEYS keys"
log_info "replay: LIN_SEED=$base_seed LIN_RUNS=$LIN_RUNS $0"

PROXY_PIDS=()
PAUSED_PID=""
# shellcheck disable=SC2016 # expanded by the cleanup eval
e2e_on_cleanup '[[ -z "$PAUSED_PID" ]] || kill -CONT "$PAUSED_PID" 2>/dev/null || true'
# shellcheck disable=SC2016 # expanded by the cleanup eval
e2e_on_cleanup 'for p in "${PROXY_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done'

# ----------------------------------------------------------- self-test ---
if "$LINCHECK_BIN" --selftest >"$E2E_TMP/selftest.log" 2>&1; then
	check "lincheck --selftest" true
else
	sed 's/^/#   /' "$E2E_TMP/selftest.log"
	check "lincheck --selftest" false
	e2e_finish
fi

# ------------------------------------------------------------- helpers ---
status_field() {
	ctl "$1" endpoint status -w json 2>/dev/null |
		jq -r ".[0].Status.$2 // .[0].Status.header.$2 // empty" 2>/dev/null || true
}

# wait_leader MS NODE..: until every NODE reports the same non-zero leader.
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
		[[ -n "$first" ]] && return 0
		sleep 0.1
	done
	return 1
}

ms_now() { date +%s%3N; }

# leader_name NODE..: the name of the leader the first answering NODE
# reports (bounded to ~2 s per node); empty if none knows.
leader_name() {
	local n l id
	for n in "$@"; do
		node_alive "$n" || continue
		l="$(timeout -k 1 2 "$ETCDCTL_BIN" --endpoints="$(node_url "$n")" \
			--dial-timeout=1s --command-timeout=1s endpoint status -w json 2>/dev/null |
			jq -r '.[0].Status.leader // .[0].Status.header.leader // empty' 2>/dev/null || true)"
		[[ -n "$l" && "$l" != 0 ]] || continue
		for id in "${!MID[@]}"; do
			if [[ "${MID[$id]}" == "$l" ]]; then
				echo "$id"
				return 0
			fi
		done
	done
}

# set_rules TEXT: replace the proxy's rules (atomic rename, then SIGHUP).
set_rules() {
	printf '%s\n' "$1" >"$RULES.tmp"
	mv -f "$RULES.tmp" "$RULES"
	kill -HUP "$PROXY_PID" 2>/dev/null || true
}

# fault LABEL: note one step of the schedule.
fault() {
	local line d
	d=$(($(ms_now) - T0))
	line="$(printf 't=+%d.%ds %s' $((d / 1000)) $((d % 1000 / 100)) "$*")"
	SCHEDULE+=("$line")
	log_info "fault $line"
}

# bring_back NODE KIND: restart a killed member, resume a paused one.
bring_back() {
	if [[ "$2" == pause ]]; then
		fault "resume $1 (SIGCONT)"
		kill -CONT "$PAUSED_PID" 2>/dev/null || true
		PAUSED_PID=""
	else
		fault "restart $1"
		restart_node "$1"
	fi
}

# --------------------------------------------------------------- a run ---
run_once() {
	local r="$1" seed="$2" i id cluster="" eps=() hist lin_pid rc out ok_ops
	local down="" down_kind="" down_steps=0 nfaults=0 end a b l pick
	local -a M
	declare -A PP RP
	declare -A MID
	SCHEDULE=()
	for i in 0 1 2; do
		M[i]="r${r}m$i"
		PP[${M[i]}]="$(free_port)"
		RP[${M[i]}]="$(free_port)"
		cluster+="${cluster:+,}${M[i]}=http://127.0.0.1:${PP[${M[i]}]}"
	done
	RULES="$E2E_TMP/r$r.rules"
	: >"$RULES"
	"$NETPROXY_BIN" --control "$RULES" \
		"${M[0]}=${PP[${M[0]}]}:${RP[${M[0]}]}" \
		"${M[1]}=${PP[${M[1]}]}:${RP[${M[1]}]}" \
		"${M[2]}=${PP[${M[2]}]}:${RP[${M[2]}]}" >"$E2E_TMP/r$r.proxy.log" 2>&1 &
	PROXY_PID=$!
	PROXY_PIDS+=("$PROXY_PID")
	for _ in $(seq 1 50); do
		grep -q 'rules:' "$E2E_TMP/r$r.proxy.log" 2>/dev/null && break
		kill -0 "$PROXY_PID" 2>/dev/null || break
		sleep 0.05
	done
	kill -0 "$PROXY_PID" 2>/dev/null || fail "run $r: netproxy did not start: $(cat "$E2E_TMP/r$r.proxy.log")"
	for id in "${M[@]}"; do
		E2E_PEER_URL="http://127.0.0.1:${PP[$id]}" start_cetcd "$id" \
			--listen-peer-urls "http://127.0.0.1:${RP[$id]}" \
			--initial-cluster "$cluster" --initial-cluster-state new \
			--initial-cluster-token "lin-$$-$r" --election-timeout "$ELECTION_MS" \
			--heartbeat-interval 100
	done
	for id in "${M[@]}"; do
		wait_ready "$id"
		eps+=("127.0.0.1:${NODE_CPORT[$id]}")
	done
	wait_leader $((10 * ELECTION_MS)) "${M[@]}" || fail "run $r: no common leader at start"
	for id in "${M[@]}"; do
		MID[$id]="$(status_field "$id" member_id)"
	done

	hist="$E2E_TMP/r$r.history"
	log_info "run $r: seed $seed; lincheck for ${LIN_DURATION_S}s against ${eps[*]}"
	timeout -k 5 $((LIN_DURATION_S + 30)) "$LINCHECK_BIN" run --duration "$LIN_DURATION_S" \
		--clients "$LIN_CLIENTS" --keys "$LIN_KEYS" --prefix "lin/$r/" --seed "$seed" \
		${LIN_SERIALIZABLE:+--serializable} \
		--history "$hist" "${eps[@]}" >"$E2E_TMP/r$r.run.log" 2>&1 &
	lin_pid=$!

	# The fault loop: deterministic choices from the seed (timing is not).
	RANDOM=$seed
	T0=$(ms_now)
	end=$((T0 + LIN_DURATION_S * 1000 - 1500))
	while kill -0 "$lin_pid" 2>/dev/null && (($(ms_now) < end)) && ((nfaults < FAULTS_MAX)); do
		sleep "$(printf '%d.%03d' 1 $((500 + RANDOM % 1500)))"
		(($(ms_now) < end)) || break
		nfaults=$((nfaults + 1))
		for id in "${M[@]}"; do
			if [[ "$id" != "$down" ]] && ! node_alive "$id"; then
				check "run $r: $id still running (it was not killed)" false
				grep -E 'Assertion|panic|fatal|ERROR' "$(node_log "$id")" | tail -n 5 | sed 's/^/#   /' || true
				fail "run $r: $id died (seed $seed)"
			fi
		done
		if [[ -n "$down" ]]; then
			down_steps=$((down_steps + 1))
			# A pause outlasts an election timeout (>= 2 steps): the
			# others elect a new leader before the old one wakes up.
			if ((down_steps >= 2)) || { [[ "$down_kind" == kill ]] && ((RANDOM % 2 == 0)); }; then
				bring_back "$down" "$down_kind"
				down=""
				continue
			fi
		fi
		pick=$((RANDOM % 10))
		a="${M[RANDOM % 3]}"
		b="${M[RANDOM % 3]}"
		# Half the faults hit the leader: that is where stale reads and
		# lost writes would come from.
		if ((RANDOM % 2 == 0)); then
			l="$(leader_name "${M[@]}")"
			a="${l:-$a}"
		fi
		while [[ "$b" == "$a" ]]; do b="${M[RANDOM % 3]}"; done
		if ((pick < 3)) && [[ -z "$down" ]]; then
			down="$a"
			down_steps=0
			if ((RANDOM % 3 == 0)); then
				# A paused member (a long GC pause, a stalled VM) wakes up
				# believing what it believed: a leader must not serve
				# reads from that belief.
				fault "pause $a (SIGSTOP)"
				down_kind=pause
				PAUSED_PID="$(node_pid "$a")"
				kill -STOP "$PAUSED_PID"
			else
				fault "kill -9 $a"
				down_kind="kill"
				kill_node "$a"
			fi
		elif ((pick < 6)); then
			fault "isolate $a"
			set_rules "$(printf 'drop %s *\ndrop * %s' "$a" "$a")"
		elif ((pick < 8)); then
			fault "one-way $a->$b"
			set_rules "drop $a $b"
		elif ((pick < 9)); then
			fault "slow link $a->$b 300ms"
			set_rules "delay $a $b 300"
		else
			fault "heal"
			set_rules ""
		fi
	done
	fault "heal all"
	set_rules ""
	if [[ -n "$down" ]]; then
		bring_back "$down" "$down_kind"
	fi
	rc=0
	wait "$lin_pid" || rc=$?
	sed 's/^/# /' "$E2E_TMP/r$r.run.log"
	check_eq "run $r: lincheck run exited cleanly" 0 "$rc"
	for id in "${M[@]}"; do
		wait_ready "$id"
	done
	check "run $r: a common leader after healing" wait_leader $((15 * ELECTION_MS)) "${M[@]}"
	log_info "run $r: fault schedule (seed $seed): ${SCHEDULE[*]}"

	rc=0
	timeout -k 5 120 "$LINCHECK_BIN" check --history "$hist" --final "${eps[@]}" \
		>"$E2E_TMP/r$r.check.log" 2>&1 || rc=$?
	sed 's/^/# /' "$E2E_TMP/r$r.check.log"
	check_eq "run $r: history linearizable, no lost acknowledged write (lincheck exit)" 0 "$rc"
	out="$(grep -o 'ok_ops=[0-9]*' "$E2E_TMP/r$r.check.log" || true)"
	ok_ops="${out#ok_ops=}"
	check "run $r: at least $LIN_MIN_OK ok operations (${ok_ops:-none})" \
		test "${ok_ops:-0}" -ge "$LIN_MIN_OK"
	for id in "${M[@]}"; do
		if grep -qE 'Assertion .* failed|panic' "$(node_log "$id")"; then
			check "run $r: no assertion failure in $id's log" false
			grep -E 'Assertion .* failed|panic' "$(node_log "$id")" | head -n 5 | sed 's/^/#   /'
		fi
	done
	if ((rc != 0)); then
		log_info "run $r FAILED: seed $seed; replay with LIN_SEED=$seed LIN_RUNS=1;" \
			"history $hist (E2E_KEEP=1 keeps it)"
	fi
	for id in "${M[@]}"; do
		stop_node "$id"
	done
	check "run $r: netproxy survived the run" kill -0 "$PROXY_PID"
	kill -TERM "$PROXY_PID" 2>/dev/null || true
	grep -c 'close ' "$E2E_TMP/r$r.proxy.log" | sed "s/^/# run $r: connections closed by netproxy rules: /" || true
}

for ((run = 1; run <= LIN_RUNS; run++)); do
	run_once "$run" $((base_seed + run - 1))
done

e2e_finish
