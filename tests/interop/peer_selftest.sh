#!/usr/bin/env bash
# Self test: runs the peers of peer.py against each other on 127.0.0.1.
# Exits 0 only if every check passes.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
PEER="$HERE/peer.py"
T=$(mktemp -d "${TMPDIR:-/tmp}/peer-selftest.XXXXXX")
PIDS=()
FAILS=0
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    if [ "$FAILS" -eq 0 ]; then rm -rf "$T"; else echo "(artifacts kept in $T)"; fi
}
trap cleanup EXIT

ok()   { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; FAILS=$((FAILS + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }

# wait_port FILE: print the port from the "LISTENING <port>" line of FILE
wait_port() {
    local i p
    for i in $(seq 1 100); do
        p=$(sed -n 's/^LISTENING \([0-9][0-9]*\)$/\1/p' "$1" 2>/dev/null)
        if [ -n "$p" ]; then echo "$p"; return 0; fi
        sleep 0.1
    done
    return 1
}
# wait_pid PID SECONDS: wait for a background job with a deadline; exit code in RC
wait_pid() {
    local pid=$1 i
    for i in $(seq 1 $(($2 * 10))); do
        if ! kill -0 "$pid" 2>/dev/null; then wait "$pid"; RC=$?; return; fi
        sleep 0.1
    done
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; RC=timeout
}

########################################################## text protocol
echo "# text protocol: manager vs two runners"
TX=$T/text; mkdir -p "$TX"
cat >"$TX/jobs.txt" <<'EOF'
# comment lines and blank lines are skipped
echo hello
echo "spaces   and 'single quotes'" "a  b"  

printf '\000\377'
exit 3
yes 0123456789abcdef | head -c 3000000
echo to-stdout; echo to-stderr 1>&2; echo again
kill -9 $$
no_such_command_xyz_42
echo hello
sleep 0.3; echo slow
for i in 1 2 3; do echo "n=$i"; done
printf 'no trailing newline'
true
false
printf 'tab\there\n'
echo ünïcödé ✓
seq 1 2000
printf 'a\nb\r\nc'
echo "dollar \$HOME stays literal"
dd if=/dev/zero bs=1024 count=100 2>/dev/null | tr '\0' x
echo done
EOF
"$PEER" text-manager --jobs "$TX/jobs.txt" --port 0 --results "$TX/res" >"$TX/mgr.out" 2>"$TX/mgr.err" &
MGR=$!; PIDS+=("$MGR")
PORT=$(wait_port "$TX/mgr.out") || { fail "text-manager did not print LISTENING"; exit 1; }
"$PEER" text-runner --manager "127.0.0.1:$PORT" --workers 2 --name alpha >"$TX/r1.out" 2>"$TX/r1.err" &
R1=$!; PIDS+=("$R1")
"$PEER" text-runner --manager "127.0.0.1:$PORT" --workers 1 --name "beta host" >"$TX/r2.out" 2>"$TX/r2.err" &
R2=$!; PIDS+=("$R2")
wait_pid $R1 60; check "runner alpha (2 workers) exits 0" [ "$RC" = 0 ]
wait_pid $R2 60; check "runner beta exits 0" [ "$RC" = 0 ]
wait_pid $MGR 30; check "manager exits 1 (some statuses non-zero)" [ "$RC" = 1 ]
check "manager stdout is exactly one LISTENING line" [ "$(wc -l <"$TX/mgr.out")" = 1 ]

# Expected outputs, computed independently with the local shell.
python3 - "$TX" <<'EOF'
import json, subprocess, sys, os
d = sys.argv[1]
lines = open(os.path.join(d, 'jobs.txt'), encoding='utf-8').read().split('\n')
jobs = {n: l for n, l in enumerate(lines, 1) if l.strip() and not l.startswith('#')}
got = [json.loads(l) for l in open(os.path.join(d, 'res', 'results.jsonl'))]
bad = 0
def err(m):
    global bad; bad += 1; print('  mismatch:', m)
if sorted(r['line'] for r in got) != sorted(jobs):
    err('settled lines %s != %s' % (sorted(r['line'] for r in got), sorted(jobs)))
for r in got:
    n = r['line']
    p = subprocess.run(['/bin/sh', '-c', jobs[n]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    st = p.returncode if p.returncode >= 0 else 128 - p.returncode
    out = open(os.path.join(d, 'res', '%d.out' % n), 'rb').read()
    if r['job'] != jobs[n]: err('line %d job %r' % (n, r['job']))
    if r['status'] != st: err('line %d status %r != %r' % (n, r['status'], st))
    if r['size'] != len(out) or out != p.stdout: err('line %d output differs' % n)
    if r['host'] not in ('alpha', 'beta host'): err('line %d host %r' % (n, r['host']))
byline = {r['line']: r for r in got}
want = {5: (0, b'\x00\xff'), 6: (3, b''), 9: (137, b''), 10: (127, None)}
for n, (st, out) in want.items():
    if byline[n]['status'] != st: err('line %d: status %r, want %r' % (n, byline[n]['status'], st))
    if out is not None and open(os.path.join(d, 'res', '%d.out' % n), 'rb').read() != out:
        err('line %d: output' % n)
if byline[7]['size'] != 3000000: err('big output size %r' % byline[7]['size'])
if open(os.path.join(d, 'res', '3.out'), 'rb').read() != b"spaces   and 'single quotes' a  b\n":
    err('quoted job output')
if len(got) != 21: err('%d results, want 21' % len(got))
sys.exit(1 if bad else 0)
EOF
check "text results: 21 jobs, statuses, exact output bytes" [ $? = 0 ]

echo "# text protocol: PETO hold, ERARO on unknown job, requeue after drop"
printf 'echo one\necho two\n' >"$TX/jobs2.txt"
"$PEER" text-manager --jobs "$TX/jobs2.txt" --port 0 --results "$TX/res2" >"$TX/mgr2.out" 2>"$TX/mgr2.err" &
MGR=$!; PIDS+=("$MGR")
PORT=$(wait_port "$TX/mgr2.out") || { fail "text-manager 2 did not print LISTENING"; exit 1; }
# A hand-written runner takes "echo one" and sits on it until the real runner has
# settled "echo two" (its next PETO must then be held, not answered FINO), then
# sends a REZULTO for a job it does not hold: ERARO + close, "echo one" is requeued
# and must reach the held PETO.
python3 - "$PORT" "$TX" <<'EOF2' &
import socket, sys, time, os
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
f = s.makefile('rb')
s.sendall(b'SALUTON; MI rogue\r\n')          # CRLF must be accepted
assert f.readline() == b'VERSIO 1.1\n'
s.sendall(b'KOMPRENAS\nPETO\n')
assert f.readline() == b'echo one\n'
open(sys.argv[2] + '/took', 'w').close()
jl = sys.argv[2] + '/res2/results.jsonl'
for _ in range(200):
    if os.path.exists(jl) and open(jl).read().count('\n') == 1: break
    time.sleep(0.05)
time.sleep(0.5)
s.sendall(b'REZULTO echo nope 0 1\n')
line = f.readline()
assert line.startswith(b'ERARO '), line
assert f.read() == b'', 'connection not closed after ERARO'
EOF2
FAKE=$!; PIDS+=("$FAKE")
for i in $(seq 1 50); do [ -e "$TX/took" ] && break; sleep 0.1; done
"$PEER" text-runner --manager "127.0.0.1:$PORT" --workers 1 >"$TX/r3.out" 2>"$TX/r3.err"
check "runner exits 0" [ $? = 0 ]
wait_pid $FAKE 10; check "unknown job answered with ERARO + close" [ "$RC" = 0 ]
wait_pid $MGR 20; check "manager exits 0 (all statuses 0)" [ "$RC" = 0 ]
check "requeued job went to the held PETO" \
    [ "$(cat "$TX/res2/1.out" "$TX/res2/2.out")" = "$(printf 'one\ntwo')" ]
check "results.jsonl: 2 lines, both by the real runner, line 2 first" [ "$(python3 -c '
import json,sys; print([(j["line"], j["host"]) for j in map(json.loads, open(sys.argv[1]))] == [(2, sys.argv[2]), (1, sys.argv[2])])' "$TX/res2/results.jsonl" "$(python3 -c "import socket; print(socket.gethostname())")")" = True ]

echo "# text protocol: runner version check"
FAKE_MGR='
import socket, sys
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
print("LISTENING %d" % srv.getsockname()[1], flush=True)
c, _ = srv.accept(); f = c.makefile("rb")
assert f.readline().startswith(b"SALUTON; MI ")
c.sendall(b"VERSIO " + sys.argv[1].encode() + b"\n")
for line in f:
    if line == b"PETO\n": c.sendall(b"FINO\n")
    elif line == b"FINO ANKAU\n": print("ANKAU", flush=True); break
'
python3 -c "$FAKE_MGR" 2.0 >"$TX/fake1.out" &
F=$!; PIDS+=("$F")
PORT=$(wait_port "$TX/fake1.out")
"$PEER" text-runner --manager "127.0.0.1:$PORT" --workers 2 2>/dev/null
check "runner exits 3 on VERSIO 2.0" [ $? = 3 ]
wait_pid $F 5
python3 -c "$FAKE_MGR" 1.7 >"$TX/fake2.out" &
F=$!; PIDS+=("$F")
PORT=$(wait_port "$TX/fake2.out")
"$PEER" text-runner --manager "127.0.0.1:$PORT" --workers 4 2>/dev/null
RRC=$?; wait_pid $F 5
check "runner accepts VERSIO 1.7, ends with FINO ANKAU, exits 0" \
    [ $RRC = 0 -a "$RC" = 0 -a "$(tail -1 "$TX/fake2.out")" = ANKAU ]

######################################################## binary protocol
BX=$T/bin; mkdir -p "$BX/src"
# run_owner NAME STOPARGS... : start owner NAME, set OWNER pid and PORT
run_owner() {
    local name=$1; shift
    "$PEER" owner --port 0 --task "$BX/$name.json" --out "$BX/$name.res" "$@" \
        >"$BX/$name.out" 2>"$BX/$name.err" &
    OWNER=$!; PIDS+=("$OWNER")
    PORT=$(wait_port "$BX/$name.out") || { fail "owner $name did not print LISTENING"; exit 1; }
}
owner_json() { grep '^{' "$BX/$1.out"; }

echo "# binary protocol: staged files, logs, missing ret, big file, bad names"
printf 'echo stdout-line\necho stderr-line >&2\nmkdir -p out\ntr a-z A-Z <data/input.txt >out/result.txt\n' \
    >"$BX/src/prog.sh"                               # no #! line: run by /bin/sh
printf '#!/bin/sh\necho "second run in $(basename "$(dirname "$PWD")")"\n' >"$BX/src/second"
printf 'hello world\n' >"$BX/src/input.txt"
head -c 67108864 /dev/urandom >"$BX/src/big.bin"     # 64 MiB, streamed both ways
cat >"$BX/main.json" <<EOF
{"files": [{"src": "$BX/src/prog.sh", "name": "bin/prog.sh"},
           {"src": "$BX/src/input.txt", "name": "data/input.txt"},
           {"src": "$BX/src/second", "name": "tools/deep/second"},
           {"src": "$BX/src/big.bin", "name": "data/big.bin"},
           {"src": "$BX/src/input.txt", "name": "../evil"},
           {"src": "$BX/src/input.txt", "name": "a//b"}],
 "runs": [{"program": "bin/prog.sh", "log": "logs/run1.log"},
          {"program": "tools/deep/second", "log": "logs/second.log"},
          {"program": "not/staged.sh", "log": "x.log"}],
 "rets": ["logs/run1.log", "out/result.txt", "missing.txt", "data/big.bin",
          "logs/second.log", "/etc/passwd"]}
EOF
run_owner main
"$PEER" node --manager "127.0.0.1:$PORT" --work-dir "$BX/work" --workers 2 --modules sh >"$BX/node1.out" 2>"$BX/node1.err"
check "node (2 session loops) exits 0" [ $? = 0 ]
wait_pid $OWNER 20; check "owner exits 0" [ "$RC" = 0 ]
python3 - "$BX" <<'EOF'
import json, sys, re
d = sys.argv[1]
j = json.loads([l for l in open(d + '/main.out') if l.startswith('{')][0])
bad = []
if j['status'] != 0: bad.append('status %r' % j['status'])
if not re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z', j['start_time']): bad.append('time %r' % j['start_time'])
want = {'logs/run1.log': 24, 'out/result.txt': 12, 'missing.txt': None, 'data/big.bin': 67108864,
        'logs/second.log': len('second run in work\n')}
if j['results'] != want: bad.append('results %r' % j['results'])
if len(j['rejects']) != 4: bad.append('rejects %r' % j['rejects'])
sys.exit(print('  mismatch:', bad) or 1 if bad else 0)
EOF
check "owner JSON: status 0, time format, result sizes, null for missing, 4 rejects" [ $? = 0 ]
check "run log holds stdout+stderr" [ "$(cat "$BX/main.res/logs/run1.log")" = "$(printf 'stdout-line\nstderr-line')" ]
check "program output file returned" [ "$(cat "$BX/main.res/out/result.txt")" = "HELLO WORLD" ]
check "64 MiB file round-trips intact" cmp -s "$BX/src/big.bin" "$BX/main.res/data/big.bin"
check "nothing written outside the task directory" [ ! -e "$BX/work/evil" ]
check "missing ret not written" [ ! -e "$BX/main.res/missing.txt" ]

echo "# binary protocol: Stop while working (SIGTERM)"
printf '#!/bin/sh\necho started\nsleep 30\necho never\n' >"$BX/src/loop.sh"
printf 'echo after >after.txt\n' >"$BX/src/after.sh"
cat >"$BX/stop.json" <<EOF
{"files": [{"src": "$BX/src/loop.sh", "name": "loop.sh"}, {"src": "$BX/src/after.sh", "name": "after.sh"}],
 "runs": [{"program": "loop.sh", "log": "logs/loop.log"}, {"program": "after.sh", "log": "logs/after.log"}],
 "rets": ["logs/loop.log", "after.txt", "logs/after.log"]}
EOF
run_owner stop --stop-after-ms 700
START=$(date +%s)
"$PEER" node --manager "127.0.0.1:$PORT" --work-dir "$BX/work" >"$BX/node2.out" 2>"$BX/node2.err"
check "node exits 0" [ $? = 0 ]
wait_pid $OWNER 20; check "owner exits 0" [ "$RC" = 0 ]
check "stopped well before the 30 s sleep" [ $(( $(date +%s) - START )) -lt 10 ]
check "status 143, later run skipped, log returned, no rejects" [ "$(owner_json stop | python3 -c '
import json,sys; j=json.load(sys.stdin)
print(j["status"], j["results"], j["rejects"])')" = "143 {'logs/loop.log': 8, 'after.txt': None, 'logs/after.log': None} []" ]
check "stopped run's log content" [ "$(cat "$BX/stop.res/logs/loop.log")" = started ]

echo "# binary protocol: Stop of a program ignoring SIGTERM (SIGKILL after 2 s)"
printf "trap '' TERM\necho stubborn\nsleep 30\n" >"$BX/src/stubborn.sh"
cat >"$BX/kill.json" <<EOF
{"files": [{"src": "$BX/src/stubborn.sh", "name": "s/stubborn.sh"}],
 "runs": [{"program": "s/stubborn.sh", "log": "s.log"}], "rets": ["s.log"]}
EOF
run_owner kill --stop-after-ms 300
START=$(date +%s)
"$PEER" node --manager "127.0.0.1:$PORT" --work-dir "$BX/work" >"$BX/node3.out" 2>"$BX/node3.err"
check "node exits 0" [ $? = 0 ]
wait_pid $OWNER 20; check "owner exits 0" [ "$RC" = 0 ]
check "status 137 after the grace period" [ "$(owner_json kill | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')" = 137 ]
check "took between 2 and 10 s" [ $(( $(date +%s) - START )) -ge 2 -a $(( $(date +%s) - START )) -lt 10 ]

echo "# binary protocol: Reject on modules, failing run stops the rest"
printf 'echo failing; exit 2\n' >"$BX/src/fail.sh"
cat >"$BX/fail.json" <<EOF
{"modules": ["python3"],
 "files": [{"src": "$BX/src/fail.sh", "name": "fail.sh"}, {"src": "$BX/src/after.sh", "name": "after.sh"}],
 "runs": [{"program": "fail.sh", "log": "f.log"}, {"program": "after.sh", "log": "a.log"}],
 "rets": ["f.log", "after.txt"]}
EOF
run_owner fail --stop-after-ms 5000
"$PEER" node --manager "127.0.0.1:$PORT" --work-dir "$BX/work" --modules sh 2>"$BX/node4.err"
check "node without the module is rejected: exit 3" [ $? = 3 ]
"$PEER" node --manager "127.0.0.1:$PORT" --work-dir "$BX/work" --modules sh,python3 2>"$BX/node5.err"
check "node with the module exits 0" [ $? = 0 ]
wait_pid $OWNER 20; check "owner exits 0" [ "$RC" = 0 ]
check "status 2, second run skipped" [ "$(owner_json fail | python3 -c '
import json,sys; j=json.load(sys.stdin); print(j["status"], j["results"])')" = "2 {'f.log': 8, 'after.txt': None}" ]
"$PEER" node --manager "127.0.0.1:$PORT" --work-dir "$BX/work" 2>/dev/null
check "node exits 1 when nothing listens on its first join" [ $? = 1 ]

echo
if [ "$FAILS" -eq 0 ]; then echo "ALL PASSED"; exit 0; fi
echo "$FAILS CHECK(S) FAILED"; exit 1
