#!/usr/bin/env python3
"""Independent reference peers for the two wire protocols (interop test partner).

Written from these three documents alone, without looking at any other
implementation:
  * seeds/002_99646c86532195e9.txt  text protocol v1.1 (manager / runner)
  * seeds/000_27a899e3d5c1b755.txt  binary protocol "1.0" (owner / node)
  * protocol-notes.md                gap fixes; where it disagrees, it wins

Subcommands: text-runner, text-manager, node, owner (see --help of each).
Python 3.11, standard library only.

Interpretations of things the drafts and notes leave open
---------------------------------------------------------
Text protocol
 T1. Bad hail, or a reply other than KOMPRENAS after VERSIO: the manager writes
     one `ERARO <reason>` line and closes (the draft only says "terminate").
 T2. In state Wait the manager accepts only PETO and REZULTO; in WaitClose only
     PETO (answered FINO again), REZULTO and FINO ANKAU. Anything else, a
     malformed REZULTO, STATUS outside 0-255, SIZE over 16 GiB, a line over
     64 KiB or invalid UTF-8: `ERARO <reason>`, then close.
 T3. A line limit of 64 KiB means the line content without its terminator.
 T4. A job counts as settled only once all <SIZE> output bytes have arrived
     (the .out file is written, then the results.jsonl line, then RICEVIS is
     sent). A connection lost before that puts the job back at the queue front.
 T5. REZULTO for a name that is in flight several times on one connection
     settles the oldest such instance (earliest line handed out).
 T6. Job file: lines are split on "\\n" only, a trailing "\\r" is dropped,
     lines whose strip() is empty or that start with '#' (column 1) are
     skipped, everything else is sent verbatim (leading/trailing blanks kept).
     Refused at load time (exit 2, message naming the line): a name that is
     exactly FINO, contains "\\r", or is `ERARO` / starts with `ERARO ` (a runner
     could not tell such a job from the error line).
 T7. results.jsonl is truncated when the manager starts; .out files are
     written to `.<n>.out.part` and renamed when complete.
 T8. Once every job is settled the manager answers held PETOs with FINO and
     waits up to 5 s for the open connections to close, then exits anyway.
 T9. The runner follows the draft literally: MASTERSTOP is checked before the
     lock is taken, so a worker may still send PETO after another worker got
     FINO (the manager's WaitClose answers FINO again). Any line starting with
     `ERARO` is an error from the manager (print, exit 1). Any other non-empty
     line is a job; an empty line is a protocol error.
 T10. The runner runs `/bin/sh -c JOB` with stdin from /dev/null, in a new
     session (process group), in the runner's cwd, output spooled to an
     unnamed temp file (stdout and stderr share one file description). If
     /bin/sh itself cannot be started the status is 127 and the output is the
     error text. On a fatal error running jobs are SIGKILLed before exit.
 T11. The runner accepts `VERSIO v` when v's first dot-separated field is "1"
     and all fields are decimal; otherwise it closes and exits 3.
Binary protocol
 B1. Node status: idle (1) right after Accept; waiting-for-input (2) from the
     first File/Run/Ret; ready (3) after Wait; working (4) after Start;
     finished (5) from the moment Finished is sent until the session ends.
 B2. File, Run and Ret are accepted in any order and mix while idle/waiting
     for input; after Wait they are "not valid in the current state"
     (Disconnect). Start when not ready -> Reject (the notes allow Reject for
     Start); Stop when not working -> Reject. Wait after Wait -> Disconnect.
 B3. A File whose name is rejected (or that cannot be written) is still read
     off the wire in full, then Rejected. Re-sending an existing name
     overwrites it. Run must name a file staged earlier in this session.
 B4. Write paths (File, logfile) must not traverse any symlink (each directory
     component is checked with lstat, the final open uses O_NOFOLLOW). Read
     paths (Run program, Ret) may be symlinks only if they resolve inside the
     task directory; a Ret that escapes, is not a regular file or does not
     exist is sent as missing (0xFFFFFFFF).
 B5. A logfile is truncated the first time it is used in a session and
     appended to by later runs naming the same log. If a program cannot be
     started (missing, exec error, log cannot be opened) the run status is 127
     and the reason is written to the log when possible; it stops later runs.
 B6. Stop: Accept is sent before the SIGTERM to the process group; SIGKILL to
     the group 2 s later if the program is still alive; then Finished carries
     the status of the stopped run (143 for a plain SIGTERM death). No later
     runs start. If the program leader has exited, the group gets a final
     SIGKILL so stray children do not outlive the task.
 B7. Results are sent only for Rets that were Accepted (a Rejected Ret gets
     no Result). The owner's "results" map holds accepted Rets only.
 B8. Join reply handling on the node: Reject -> exit 3; Disconnect "no more
     tasks" -> exit 0; other Disconnect -> exit 1. Connection refused / closed
     when joining: exit 0 except on the very first join of a session loop
     (exit 1). A Disconnect or protocol error in mid-session ends that loop
     with exit 1 (it does not rejoin). With --workers N the process exits 1 if
     any loop ended 1, else 3 if any ended 3, else 0.
 B9. Task directories are `DIR/task-XXXXXXXX` (mkdtemp) and are kept.
 B10. The owner requires version exactly "1.0" and a ';' in Join; TASK.json
     may carry an optional "modules" list that a Join must cover (else
     Reject). The owner does not validate File/Run/Ret names it sends (so it
     can probe a node's checks); Result names are validated before it writes
     DIR/<name>. The owner requires the Status reply to be idle (the draft
     only defines the idle path). A Rejected Start is fatal (Disconnect, exit
     1). Reject reasons (File/Run/Ret/Stop) are listed in "rejects" in order.
     A TASK.json that cannot be loaded (missing src, bad shape, name over
     65535 bytes) makes the owner exit 2 before it listens.
 B11. Stop race on the owner: Stop is sent only if nothing arrived within MS
     ms after the Start reply. Until Finished arrives an Accept/Reject is the
     Stop reply; if Finished came first, the owner sends Accept and then reads
     the Stop reply (which the node sends before its Results).
 B12. Reason strings (Reject/Disconnect) are limited to 1 MiB, Join payloads
     to 64 KiB; the 16 GiB File/Result limit cannot be exceeded by a u32.
     A Result file longer than 0xFFFFFFFE bytes is a node-side error.
"""
import argparse
import json
import os
import re
import select
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from datetime import datetime, timezone

CHUNK = 1 << 20
LINE_LIMIT = 64 * 1024
MAX_SIZE = 16 << 30
MAX_REASON = 1 << 20


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class ProtocolError(Exception):
    pass


class PeerClosed(Exception):
    pass


class Stream:
    """Buffered reader over a socket: lines, exact byte counts, streaming."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise PeerClosed('connection closed by peer')
        self.buf += data

    def readable(self, timeout):
        if self.buf:
            return True
        return bool(select.select([self.sock], [], [], timeout)[0])

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def copy_to(self, n, write):
        """Move exactly n bytes from the peer to write(), in chunks."""
        take = min(n, len(self.buf))
        if take:
            write(bytes(self.buf[:take]))
            del self.buf[:take]
            n -= take
        while n > 0:
            data = self.sock.recv(min(n, CHUNK))
            if not data:
                raise PeerClosed('connection closed in the middle of a payload')
            write(data)
            n -= len(data)

    def readline(self, limit=LINE_LIMIT):
        start = 0
        while True:
            i = self.buf.find(b'\n', start)
            if i >= 0:
                break
            if len(self.buf) > limit + 1:
                raise ProtocolError('line longer than %d bytes' % limit)
            start = len(self.buf)
            self._fill()
        line = bytes(self.buf[:i])
        del self.buf[:i + 1]
        if line.endswith(b'\r'):
            line = line[:-1]
        if len(line) > limit:
            raise ProtocolError('line longer than %d bytes' % limit)
        try:
            return line.decode('utf-8')
        except UnicodeDecodeError:
            raise ProtocolError('line is not valid UTF-8') from None


def send_file(sock, f, size):
    """Send exactly size bytes of open file f (from offset 0)."""
    sent = sock.sendfile(f, 0, size) if size else 0
    if sent < size:  # file shrank under us: keep the stream in sync
        log('warning: file shrank while sending; padding with zero bytes')
        while sent < size:
            n = min(CHUNK, size - sent)
            sock.sendall(b'\0' * n)
            sent += n


def parse_hostport(s):
    host, sep, port = s.rpartition(':')
    if not sep or not port.isdigit():
        raise SystemExit('bad HOST:PORT: %r' % s)
    return host or '127.0.0.1', int(port)


def listen(port):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(('127.0.0.1', port))
    srv.listen(64)
    print('LISTENING %d' % srv.getsockname()[1], flush=True)
    return srv


def exit_status(rc):
    return 128 - rc if rc < 0 else rc & 0xFF


def kill_group(pid, sig):
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# ===================================================================== text
class TextManager:
    def __init__(self, jobs, results_dir):
        self.cv = threading.Condition()
        self.pending = deque(jobs)          # (line number, command)
        self.total = len(jobs)
        self.settled = 0
        self.in_flight = 0
        self.all_zero = True
        self.conns = 0
        self.dir = results_dir
        self.jsonl = open(os.path.join(results_dir, 'results.jsonl'), 'w')

    # ---- shared queue
    def take(self, mine):
        """Next job for a PETO, or None for FINO (with the notes' hold rule)."""
        with self.cv:
            while True:
                if self.pending:
                    job = self.pending.popleft()
                    mine.append(job)
                    self.in_flight += 1
                    return job
                if mine or self.in_flight == 0:
                    return None
                self.cv.wait()      # jobs running elsewhere may be requeued

    def settle(self, mine, job, status, size, host):
        with self.cv:
            mine.remove(job)
            self.in_flight -= 1
            self.settled += 1
            if status != 0:
                self.all_zero = False
            self.jsonl.write(json.dumps({'line': job[0], 'job': job[1], 'status': status,
                                         'size': size, 'host': host}) + '\n')
            self.jsonl.flush()
            self.cv.notify_all()

    def requeue(self, mine):
        with self.cv:
            if mine:
                log('requeueing %d job(s): %s' % (len(mine), ', '.join(str(j[0]) for j in mine)))
                self.pending.extendleft(reversed(mine))
                self.in_flight -= len(mine)
                mine.clear()
            self.conns -= 1
            self.cv.notify_all()

    # ---- one runner connection
    def serve(self, sock, addr):
        s = Stream(sock)
        mine, host = [], None

        def send(line):
            sock.sendall(line.encode('utf-8') + b'\n')

        try:
            hail = s.readline()
            if not hail.startswith('SALUTON; MI ') or len(hail) == len('SALUTON; MI '):
                raise ProtocolError('bad hail %r' % hail[:80])
            host = hail[len('SALUTON; MI '):]
            send('VERSIO 1.1')
            ack = s.readline()
            if ack != 'KOMPRENAS':
                raise ProtocolError('expected KOMPRENAS, got %r' % ack[:80])
            closing = False                     # WaitClose
            while True:
                msg = s.readline()
                if msg == 'PETO':
                    job = None if closing else self.take(mine)
                    if job is None:
                        closing = True
                        send('FINO')
                    else:
                        send(job[1])
                elif msg.startswith('REZULTO '):
                    self.rezulto(s, sock, send, msg, mine, host)
                elif closing and msg == 'FINO ANKAU':
                    return
                else:
                    raise ProtocolError('unexpected message %r' % msg[:80])
        except ProtocolError as e:
            log('runner %s (%s): %s; dropping' % (host, addr, e))
            try:
                send('ERARO %s' % e)
            except OSError:
                pass
        except (PeerClosed, OSError) as e:
            log('runner %s (%s): %s' % (host, addr, e))
        finally:
            try:
                sock.close()
            finally:
                self.requeue(mine)

    def rezulto(self, s, sock, send, msg, mine, host):
        parts = msg[len('REZULTO '):].rsplit(' ', 2)
        if len(parts) != 3 or not parts[0] or not re.fullmatch(r'[0-9]+', parts[1]) \
                or not re.fullmatch(r'[0-9]+', parts[2]):
            raise ProtocolError('malformed REZULTO')
        name, status, size = parts[0], int(parts[1]), int(parts[2])
        job = next((j for j in mine if j[1] == name), None)
        if job is None:
            raise ProtocolError('unknown job %s' % name)
        if status > 255:
            raise ProtocolError('status %d out of range' % status)
        if size > MAX_SIZE:
            raise ProtocolError('output of %d bytes exceeds the limit' % size)
        send('PRETA')
        final = os.path.join(self.dir, '%d.out' % job[0])
        part = os.path.join(self.dir, '.%d.out.part' % job[0])
        try:
            with open(part, 'wb') as f:
                s.copy_to(size, f.write)
        except BaseException:
            os.unlink(part)
            raise
        os.replace(part, final)
        self.settle(mine, job, status, size, host)
        send('RICEVIS')


def load_jobs(path):
    with open(path, 'rb') as f:
        text = f.read().decode('utf-8')
    jobs = []
    for n, line in enumerate(text.split('\n'), 1):
        if line.endswith('\r'):
            line = line[:-1]
        if not line.strip() or line.startswith('#'):
            continue
        if line == 'FINO' or '\r' in line or line == 'ERARO' or line.startswith('ERARO '):
            raise ValueError('%s:%d: job name %r is not allowed' % (path, n, line))
        jobs.append((n, line))
    return jobs


def cmd_text_manager(args):
    try:
        jobs = load_jobs(args.jobs)
    except (OSError, ValueError) as e:          # UnicodeDecodeError is a ValueError
        log('cannot load jobs: %s' % e)
        return 2
    os.makedirs(args.results, exist_ok=True)
    mgr = TextManager(jobs, args.results)
    srv = listen(args.port)
    srv.settimeout(0.2)
    done_at = None
    while True:
        try:
            c, addr = srv.accept()
            c.setblocking(True)
            with mgr.cv:
                mgr.conns += 1
            threading.Thread(target=mgr.serve, args=(c, addr), daemon=True).start()
        except socket.timeout:
            pass
        with mgr.cv:
            done, conns = mgr.settled == mgr.total, mgr.conns
            if done:
                mgr.cv.notify_all()
        if done:
            done_at = done_at or time.monotonic()
            if conns == 0 or time.monotonic() - done_at > 5:
                break
    srv.close()
    return 0 if mgr.all_zero else 1


class TextRunner:
    def __init__(self, sock, nworkers):
        self.sock = sock
        self.s = Stream(sock)
        self.lock = threading.Lock()            # communication lock
        self.masterstop = threading.Event()
        self.nworkers = nworkers
        self.closed = 0
        self.children = set()
        self.children_lock = threading.Lock()

    def die(self, code, msg):
        log(msg)
        with self.children_lock:
            for pid in self.children:
                kill_group(pid, signal.SIGKILL)
        sys.stdout.flush()
        os._exit(code)

    def send(self, line):
        self.sock.sendall(line.encode('utf-8') + b'\n')

    def reply(self):
        line = self.s.readline()
        if line == 'ERARO' or line.startswith('ERARO '):
            self.die(1, 'manager error: %s' % line[6:])
        return line

    def expect(self, word):
        line = self.reply()
        if line != word:
            raise ProtocolError('expected %s, got %r' % (word, line[:80]))

    def run_job(self, job):
        out = tempfile.TemporaryFile()
        try:
            p = subprocess.Popen(['/bin/sh', '-c', job], stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        except (OSError, ValueError) as e:
            out.write(('cannot start /bin/sh: %s\n' % e).encode())
            out.flush()
            return 127, out
        with self.children_lock:
            self.children.add(p.pid)
        rc = p.wait()
        with self.children_lock:
            self.children.discard(p.pid)
        return exit_status(rc), out

    def worker(self):
        try:
            while not self.masterstop.is_set():
                with self.lock:
                    self.send('PETO')
                    job = self.reply()
                if job == 'FINO':
                    self.masterstop.set()
                    break
                if not job:
                    raise ProtocolError('empty job name')
                status, out = self.run_job(job)
                with out:
                    size = os.fstat(out.fileno()).st_size
                    with self.lock:
                        self.send('REZULTO %s %d %d' % (job, status, size))
                        self.expect('PRETA')
                        send_file(self.sock, out, size)
                        self.expect('RICEVIS')
            with self.lock:                      # WaitClose
                self.closed += 1
                if self.closed == self.nworkers:
                    self.send('FINO ANKAU')
                    self.sock.close()
        except PeerClosed:
            self.die(1, 'manager closed the connection')
        except (ProtocolError, OSError) as e:
            self.die(1, 'protocol error: %s' % e)


def cmd_text_runner(args):
    host, port = parse_hostport(args.manager)
    name = args.name or socket.gethostname()
    if args.workers < 1:
        log('--workers must be >= 1')
        return 2
    try:
        sock = socket.create_connection((host, port))
    except OSError as e:
        log('cannot connect to %s: %s' % (args.manager, e))
        return 1
    r = TextRunner(sock, args.workers)
    try:
        r.send('SALUTON; MI %s' % name)
        line = r.reply()
        if not line.startswith('VERSIO '):
            raise ProtocolError('expected VERSIO, got %r' % line[:80])
        fields = line[len('VERSIO '):].split('.')
        if fields[0] != '1' or not all(re.fullmatch(r'[0-9]+', f) for f in fields):
            sock.close()
            log('unsupported protocol version %r' % line[len('VERSIO '):])
            return 3
        r.send('KOMPRENAS')
    except PeerClosed:
        r.die(1, 'manager closed the connection')
    except (ProtocolError, OSError) as e:
        r.die(1, 'protocol error: %s' % e)
    threads = [threading.Thread(target=r.worker) for _ in range(args.workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return 0


# =================================================================== binary
ACCEPT, REJECT, JOIN, LEAVE, STATUS, TASK, WAIT, START, STOP = range(1, 10)
FINISHED, RESULT, DISCONNECT, FILE, RUN, RET = 0x10, 0x11, 0x12, 0x13, 0x14, 0x15
IDLE, INPUT, READY, WORKING, DONE = 1, 2, 3, 4, 5
MISSING = 0xFFFFFFFF
NO_MORE_TASKS = 'no more tasks'


def msg32(t, payload=b''):
    if isinstance(payload, str):
        payload = payload.encode('utf-8')
    return bytes([t]) + struct.pack('>I', len(payload)) + payload


def u16str(s):
    b = s.encode('utf-8') if isinstance(s, str) else s
    if len(b) > 0xFFFF:
        raise ValueError('name longer than 65535 bytes')
    return struct.pack('>H', len(b)) + b


def read_u16(s):
    return struct.unpack('>H', s.read_exact(2))[0]


def read_u32(s):
    return struct.unpack('>I', s.read_exact(4))[0]


def read_reason(s):
    n = read_u32(s)
    if n > MAX_REASON:
        raise ProtocolError('reason of %d bytes is over the limit' % n)
    return s.read_exact(n).decode('utf-8', 'replace')


def iso_now():
    d = datetime.now(timezone.utc)
    return d.strftime('%Y-%m-%dT%H:%M:%S.') + '%03dZ' % (d.microsecond // 1000)


def name_error(raw):
    """Reason why a File/Run/Ret/logfile name is unacceptable, or None."""
    try:
        name = raw.decode('utf-8') if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        return 'file name is not valid UTF-8'
    if not name:
        return 'empty file name'
    if '\0' in name or '\\' in name:
        return 'file name %r contains NUL or backslash' % name
    if name.startswith('/'):
        return 'file name %r is absolute' % name
    if any(seg in ('', '.', '..') for seg in name.split('/')):
        return 'file name %r has an empty, . or .. segment' % name
    return None


def inside(root, path):
    return path == root or path.startswith(root + os.sep)


def open_for_write(root, name, append=False):
    """Open root/name for writing, creating directories, following no symlink."""
    segs = name.split('/')
    cur = root
    for seg in segs[:-1]:
        cur = os.path.join(cur, seg)
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            os.mkdir(cur)
            continue
        if not stat.S_ISDIR(st.st_mode):        # lstat: a symlink is not a directory
            raise OSError('%s is not a plain directory' % cur[len(root) + 1:])
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if append else os.O_TRUNC)
    return os.open(os.path.join(cur, segs[-1]), flags, 0o644)


def resolve_inside(root, name):
    """Real path of root/name if it stays inside root, else None."""
    real = os.path.realpath(os.path.join(root, name))
    return real if inside(root, real) and real != root else None


class NodeSession:
    def __init__(self, sock, args):
        self.sock, self.s, self.args = sock, Stream(sock), args
        self.send_lock = threading.Lock()
        self.state_lock = threading.Lock()
        self.state = IDLE
        self.staged, self.runs, self.rets = set(), [], []
        self.proc = None
        self.stop_at = None
        self.thread = None
        self.root = None

    def send(self, data):
        with self.send_lock:
            self.sock.sendall(data)

    def reject(self, reason):
        self.send(msg32(REJECT, reason))

    def run(self, first):
        """None: session done, join again; otherwise the loop's exit code."""
        mods = self.args.modules or ''
        try:
            self.send(msg32(JOIN, '1.0;' + mods))
            t = self.s.read_exact(1)[0]
        except (PeerClosed, OSError):
            self.sock.close()
            if first:
                log('owner closed the connection on the first Join')
                return 1
            return 0
        try:
            if t == REJECT:
                log('join rejected: %s' % read_reason(self.s))
                return 3
            if t == DISCONNECT:
                reason = read_reason(self.s)
                if reason == NO_MORE_TASKS:
                    return 0
                log('owner disconnected: %s' % reason)
                return 1
            if t != ACCEPT:
                raise ProtocolError('expected Accept/Reject for Join, got 0x%02x' % t)
            self.root = os.path.realpath(tempfile.mkdtemp(prefix='task-', dir=self.args.work_dir))
            self.session()
            return None
        except ProtocolError as e:
            log('protocol error: %s; disconnecting' % e)
            try:
                self.send(msg32(DISCONNECT, str(e)))
            except OSError:
                pass
            return 1
        except (PeerClosed, OSError) as e:
            log('session ended: %s' % e)
            return 1
        finally:
            self.abort_run()
            self.sock.close()

    def abort_run(self):
        with self.state_lock:
            self.stop_at = self.stop_at or time.monotonic()
            if self.proc is not None:
                kill_group(self.proc.pid, signal.SIGKILL)

    def read_type(self):
        """Next message type; Status requests are answered here, in any state."""
        while True:
            t = self.s.read_exact(1)[0]
            if t == DISCONNECT:
                raise PeerClosed('owner sent Disconnect: %s' % read_reason(self.s))
            if t != STATUS:
                return t
            with self.state_lock:
                self.send(bytes([STATUS, self.state]))

    def need_input_state(self, what):
        if self.state not in (IDLE, INPUT):
            raise ProtocolError('%s not valid in the current state' % what)
        self.state = INPUT

    def session(self):
        while True:
            t = self.read_type()
            if t == FILE:
                self.on_file()
            elif t == RUN:
                name = self.s.read_exact(read_u16(self.s))
                logname = self.s.read_exact(read_u16(self.s))
                self.need_input_state('Run')
                err = name_error(name) or name_error(logname)
                if not err and name.decode() not in self.staged:
                    err = 'Run names %r, which was not staged with File' % name.decode()
                if err:
                    self.reject(err)
                else:
                    self.runs.append((name.decode(), logname.decode()))
                    self.send(bytes([ACCEPT]))
            elif t == RET:
                name = self.s.read_exact(read_u16(self.s))
                self.need_input_state('Ret')
                err = name_error(name)
                if err:
                    self.reject(err)
                else:
                    self.rets.append(name.decode())
                    self.send(bytes([ACCEPT]))
            elif t == WAIT:
                if self.state not in (IDLE, INPUT):
                    raise ProtocolError('Wait not valid in the current state')
                with self.state_lock:
                    self.state = READY
            elif t == START:
                with self.state_lock:
                    if self.state != READY:
                        self.send(msg32(REJECT, 'not ready to start (no Wait, or already started)'))
                        continue
                    self.state = WORKING
                    self.send(msg32(ACCEPT, iso_now()))
                    self.thread = threading.Thread(target=self.execute, daemon=True)
                    self.thread.start()
            elif t == STOP:
                with self.state_lock:
                    if self.state != WORKING:
                        self.send(msg32(REJECT, 'not working'))
                        continue
                    self.stop_at = time.monotonic()
                    self.send(bytes([ACCEPT]))
                    if self.proc is not None:
                        kill_group(self.proc.pid, signal.SIGTERM)
            elif t == ACCEPT:
                with self.state_lock:
                    if self.state != DONE:
                        raise ProtocolError('unexpected Accept')
                break
            else:
                raise ProtocolError('unexpected message type 0x%02x' % t)
        for name in self.rets:
            self.send_result(name)
        self.send(bytes([LEAVE]))
        t = self.read_type()
        if t != ACCEPT:
            raise ProtocolError('expected Accept for Leave, got 0x%02x' % t)

    def on_file(self):
        name = self.s.read_exact(read_u16(self.s))
        size = read_u32(self.s)
        self.need_input_state('File')
        err = name_error(name)
        fd = None
        if not err:
            try:
                fd = open_for_write(self.root, name.decode())
            except OSError as e:
                err = 'cannot write %r: %s' % (name.decode(), e)
        if fd is None:
            self.s.copy_to(size, lambda b: None)
            self.reject(err)
            return
        failure = []

        f = os.fdopen(fd, 'wb')

        def write(b):
            if not failure:
                try:
                    f.write(b)
                except OSError as e:
                    failure.append(e)
        try:
            self.s.copy_to(size, write)
        finally:
            try:
                f.close()
            except OSError as e:
                failure.append(e)
        if failure:
            self.reject('cannot write %r: %s' % (name.decode(), failure[0]))
        else:
            self.staged.add(name.decode())
            self.send(bytes([ACCEPT]))

    def start_program(self, prog, logname, used_logs):
        """Popen of one run, or None when it cannot be started (status 127)."""
        try:
            lfd = open_for_write(self.root, logname, append=logname in used_logs)
        except OSError as e:
            log('cannot open log %r: %s' % (logname, e))
            return None
        used_logs.add(logname)
        with os.fdopen(lfd, 'wb') as logf:
            try:
                path = resolve_inside(self.root, prog)
                if path is None:
                    raise OSError('program %r resolves outside the task directory' % prog)
                os.chmod(path, os.stat(path).st_mode | 0o111)
                with open(path, 'rb') as f:
                    shebang = f.read(2) == b'#!'
                argv = [path] if shebang else ['/bin/sh', path]
                return subprocess.Popen(argv, cwd=self.root, stdin=subprocess.DEVNULL,
                                        stdout=logf, stderr=subprocess.STDOUT,
                                        start_new_session=True)
            except OSError as e:
                logf.write(('cannot start %s: %s\n' % (prog, e)).encode())
                return None

    def execute(self):
        status, used_logs = 0, set()
        for prog, logname in self.runs:
            with self.state_lock:
                if self.stop_at is not None:
                    break
                p = self.start_program(prog, logname, used_logs)
                self.proc = p
            if p is None:
                status = 127
                break
            killed = False
            while True:
                try:
                    rc = p.wait(timeout=0.05)
                    break
                except subprocess.TimeoutExpired:
                    stop_at = self.stop_at
                    if stop_at is not None and not killed and time.monotonic() - stop_at >= 2:
                        kill_group(p.pid, signal.SIGKILL)
                        killed = True
            with self.state_lock:
                self.proc = None
                if self.stop_at is not None:
                    kill_group(p.pid, signal.SIGKILL)   # stray children of a stopped run
            status = exit_status(rc)
            if status != 0:
                break
        with self.state_lock:
            if self.state == WORKING:
                self.state = DONE
                try:
                    self.send(bytes([FINISHED, status]))
                except OSError:
                    pass

    def send_result(self, name):
        path = resolve_inside(self.root, name)
        f = None
        try:
            if path is not None and stat.S_ISREG(os.stat(path).st_mode):
                f = open(path, 'rb')     # checked first: opening a FIFO would block
        except OSError:
            f = None
        if f is None:
            self.send(bytes([RESULT]) + struct.pack('>I', MISSING))
            return
        with f:
            size = os.fstat(f.fileno()).st_size
            if size >= MISSING:
                raise ProtocolError('result %r is too large for the protocol' % name)
            with self.send_lock:
                self.sock.sendall(bytes([RESULT]) + struct.pack('>I', size))
                send_file(self.sock, f, size)


def node_loop(args, addr, codes, idx):
    first = True
    while True:
        try:
            sock = socket.create_connection(addr)
        except OSError as e:
            if first:
                log('cannot connect to %s:%d: %s' % (addr[0], addr[1], e))
                codes[idx] = 1
            else:
                codes[idx] = 0
            return
        r = NodeSession(sock, args).run(first)
        first = False
        if r is not None:
            codes[idx] = r
            return


def cmd_node(args):
    addr = parse_hostport(args.manager)
    os.makedirs(args.work_dir, exist_ok=True)
    n = max(1, args.workers)
    codes = [1] * n
    threads = [threading.Thread(target=node_loop, args=(args, addr, codes, i)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return 1 if 1 in codes else 3 if 3 in codes else 0


class OwnerError(Exception):
    pass


class NodeGone(Exception):
    pass


class Owner:
    def __init__(self, task, args):
        self.task, self.args = task, args
        self.lock = threading.Lock()
        self.taken = False
        self.done = threading.Event()
        self.outcome = None          # ('ok', dict) or ('error', message)

    def accept_loop(self, srv):
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            c.setblocking(True)
            threading.Thread(target=self.handle, args=(c,), daemon=True).start()

    def handle(self, c):
        s = Stream(c)
        serving = False
        try:
            c.settimeout(30)
            t = s.read_exact(1)[0]
            if t != JOIN:
                raise OwnerError('expected Join, got 0x%02x' % t)
            n = read_u32(s)
            if n > 65536:
                raise OwnerError('Join of %d bytes is over the limit' % n)
            payload = s.read_exact(n).decode('utf-8', 'replace')
            with self.lock:
                if self.taken:
                    c.sendall(msg32(DISCONNECT, NO_MORE_TASKS))
                    return
                version, sep, mods = payload.partition(';')
                have = set(m for m in mods.split(',') if m)
                missing = [m for m in self.task.get('modules', []) if m not in have]
                if not sep or version != '1.0':
                    c.sendall(msg32(REJECT, 'unsupported version %r (need 1.0)' % version))
                    return
                if missing:
                    c.sendall(msg32(REJECT, 'no task for these modules (missing %s)'
                                    % ','.join(missing)))
                    return
                self.taken = serving = True
            c.settimeout(None)
            self.outcome = ('ok', self.session(c, s))
        except NodeGone as e:
            if serving:
                self.outcome = ('error', str(e))
        except (PeerClosed, ConnectionError, TimeoutError) as e:
            if serving:
                self.outcome = ('error', 'connection lost: %s' % e)
        except Exception as e:          # OwnerError, ProtocolError, local I/O errors...
            try:
                c.sendall(msg32(DISCONNECT, str(e)))
            except OSError:
                pass
            if serving:
                self.outcome = ('error', str(e))
        finally:
            c.close()
            if serving:
                self.done.set()

    def read_type(self, s):
        t = s.read_exact(1)[0]
        if t == DISCONNECT:
            raise NodeGone('node sent Disconnect: %s' % read_reason(s))
        return t

    def reply(self, s, what, rejects):
        t = self.read_type(s)
        if t == ACCEPT:
            return True
        if t == REJECT:
            reason = read_reason(s)
            rejects.append(reason)
            log('%s rejected: %s' % (what, reason))
            return False
        raise OwnerError('unexpected message 0x%02x in reply to %s' % (t, what))

    def session(self, c, s):
        task, rejects = self.task, []
        c.sendall(bytes([ACCEPT]))
        c.sendall(bytes([STATUS]))
        if self.read_type(s) != STATUS:
            raise OwnerError('expected a Status reply')
        value = s.read_exact(1)[0]
        if value != IDLE:
            raise OwnerError('node status is 0x%02x, expected idle' % value)
        for f in task.get('files', []):
            with open(f['src'], 'rb') as fh:
                size = os.fstat(fh.fileno()).st_size
                if size >= 1 << 32:
                    raise OwnerError('file %s is too large' % f['src'])
                c.sendall(bytes([FILE]) + u16str(f['name']) + struct.pack('>I', size))
                send_file(c, fh, size)
            self.reply(s, 'File %s' % f['name'], rejects)
        for r in task.get('runs', []):
            c.sendall(bytes([RUN]) + u16str(r['program']) + u16str(r['log']))
            self.reply(s, 'Run %s' % r['program'], rejects)
        rets = []
        for name in task.get('rets', []):
            c.sendall(bytes([RET]) + u16str(name))
            if self.reply(s, 'Ret %s' % name, rejects):
                rets.append(name)
        c.sendall(bytes([WAIT]))
        c.sendall(bytes([START]))
        t = self.read_type(s)
        if t == REJECT:
            reason = read_reason(s)
            rejects.append(reason)
            raise OwnerError('Start rejected: %s' % reason)
        if t != ACCEPT:
            raise OwnerError('unexpected message 0x%02x in reply to Start' % t)
        start_time = read_reason(s)
        stop_pending = False
        ms = self.args.stop_after_ms
        if ms is not None and not s.readable(ms / 1000.0):
            c.sendall(bytes([STOP]))
            stop_pending = True
        status = None
        while status is None:
            t = self.read_type(s)
            if t == FINISHED:
                status = s.read_exact(1)[0]
            elif stop_pending and t in (ACCEPT, REJECT):
                stop_pending = False
                if t == REJECT:
                    rejects.append(read_reason(s))
            else:
                raise OwnerError('unexpected message 0x%02x while working' % t)
        c.sendall(bytes([ACCEPT]))
        if stop_pending:                 # Finished overtook our Stop: read its reply now
            self.reply(s, 'Stop', rejects)
        results = {}
        for name in rets:
            if self.read_type(s) != RESULT:
                raise OwnerError('expected Result for %s' % name)
            n = read_u32(s)
            if n == MISSING:
                results[name] = None
                continue
            err = name_error(name)
            if err:
                raise OwnerError('cannot store result: %s' % err)
            path = os.path.join(self.args.out, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'wb') as out:
                s.copy_to(n, out.write)
            results[name] = n
        if self.read_type(s) != LEAVE:
            raise OwnerError('expected Leave')
        c.sendall(bytes([ACCEPT]))
        return {'start_time': start_time, 'status': status, 'results': results,
                'rejects': rejects}


def cmd_owner(args):
    try:
        with open(args.task) as f:
            task = json.load(f)
        for fl in task.get('files', []):
            if not os.path.isfile(fl['src']):
                raise ValueError('no such file: %s' % fl['src'])
            u16str(fl['name'])
        for r in task.get('runs', []):
            u16str(r['program']), u16str(r['log'])
        for name in task.get('rets', []):
            u16str(name)
    except (OSError, ValueError, KeyError, TypeError) as e:
        log('bad task file: %s' % e)
        return 2
    os.makedirs(args.out, exist_ok=True)
    owner = Owner(task, args)
    srv = listen(args.port)
    threading.Thread(target=owner.accept_loop, args=(srv,), daemon=True).start()
    owner.done.wait()
    kind, value = owner.outcome or ('error', 'session ended without outcome')
    if kind != 'ok':
        log('task failed: %s' % value)
        srv.close()
        return 1
    print(json.dumps(value), flush=True)
    time.sleep(1.0)
    srv.close()
    return 0


# ====================================================================== main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = ap.add_subparsers(dest='cmd', required=True)
    p = sub.add_parser('text-runner')
    p.add_argument('--manager', required=True)
    p.add_argument('--workers', type=int, required=True)
    p.add_argument('--name')
    p = sub.add_parser('text-manager')
    p.add_argument('--jobs', required=True)
    p.add_argument('--port', type=int, required=True)
    p.add_argument('--results', required=True)
    p = sub.add_parser('node')
    p.add_argument('--manager', required=True)
    p.add_argument('--work-dir', required=True)
    p.add_argument('--modules', default='')
    p.add_argument('--workers', type=int, default=1)
    p = sub.add_parser('owner')
    p.add_argument('--port', type=int, required=True)
    p.add_argument('--task', required=True)
    p.add_argument('--out', required=True)
    p.add_argument('--stop-after-ms', type=int)
    args = ap.parse_args(argv)
    fn = {'text-runner': cmd_text_runner, 'text-manager': cmd_text_manager,
          'node': cmd_node, 'owner': cmd_owner}[args.cmd]
    return fn(args)


if __name__ == '__main__':
    sys.exit(main())
