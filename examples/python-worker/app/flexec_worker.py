"""A flexec worker runtime for Python, standard library only.

Written from docs/PROTOCOL.md alone (protocol version 1). A job app calls
``run_job(run, handlers)``; this module connects to the parent, says hello,
reports Started, runs ``run(ctx)`` on the main thread while a reader thread
answers the parent's requests, reports Stopped and exits with ``run``'s result.

    from flexec_worker import run_job

    def run(ctx):
        ctx.set_stats("training", {"round": 1})
        return 0

    run_job(run, handlers={"app": {"echo": lambda value, ctx: value}})

Exit codes (PROTOCOL.md section 11): ``run``'s int result (0 when None),
ConfigError -> 103, UnsafeComponentError -> 102, any other exception -> 101,
parent unreachable -> 104.
"""

import hashlib
import hmac
import json
import os
import re
import socket
import ssl
import struct
import sys
import threading
import time
from datetime import datetime, timezone

PROTOCOL_VERSION = 1
MAX_HEADER = 64 * 1024
DEFAULT_MAX_FRAME = 128 * 1024 * 1024
RECONNECT_S = float(os.environ.get("FLEXEC_RECONNECT_MS", "10000")) / 1000
ABORT_GRACE_S = float(os.environ.get("FLEXEC_ABORT_GRACE_MS", "2000")) / 1000
LEVELS = ("debug", "info", "warning", "error", "critical")
SECRETS = ("FLEXEC_CHANNEL_TOKEN", "FLEXEC_CHANNEL_CERT_SHA256", "FLEXEC_JOB_AUTH_TOKEN", "FLEXEC_JOB_TOKEN_SIGNATURE", "FLEXEC_JOB_SSID")

EXIT_EXCEPTION, EXIT_UNSAFE, EXIT_CONFIG, EXIT_INFRA = 101, 102, 103, 104


class ConfigError(Exception):
    """Raise from ``run`` for a configuration problem: exit code 103."""


class UnsafeComponentError(Exception):
    """Raise from ``run`` when a component is refused: exit code 102."""


class RequestFailed(Exception):
    """A request to the parent was answered with a non-ok rc (``.rc``, ``.value``)."""

    def __init__(self, rc, value):
        super().__init__("%s: %s" % (rc, value))
        self.rc, self.value = rc, value


class Disconnected(ConnectionError):
    """The connection to the parent is gone."""


# ---- frames (sections 3-5) --------------------------------------------------

def encode_frame(header, payload=b""):
    """One frame: u32 BE length | u32 BE header length | header JSON | payload."""
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(head) > MAX_HEADER:
        raise ValueError("header larger than 64 KiB")
    return struct.pack(">II", 4 + len(head) + len(payload), len(head)) + head + payload


def encode_value(value):
    """(enc, bytes) of a payload value: None -> none, bytes -> bytes, else JSON."""
    if value is None:
        return "none", b""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "bytes", bytes(value)
    return "json", json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")


def decode_value(header, payload):
    enc = header.get("enc", "none")
    if enc == "json":
        return json.loads(payload.decode("utf-8"))
    if enc == "bytes":
        return payload
    if enc == "none":
        if payload:
            raise ValueError("payload with enc none")
        return None
    raise ValueError("unknown enc %r" % (enc,))


def _recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise Disconnected("the parent closed the connection")
        buf += chunk
    return bytes(buf)


def recv_frame(sock, max_frame):
    """(header, payload); payload is None for an oversize frame, whose bytes are skipped."""
    length, header_len = struct.unpack(">II", _recv_exact(sock, 8))
    if length < 4 or header_len == 0 or header_len > MAX_HEADER or header_len > length - 4:
        raise ValueError("malformed frame")
    header = json.loads(_recv_exact(sock, header_len).decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError("malformed header")
    rest = length - 4 - header_len
    if length > max_frame:
        while rest > 0:
            rest -= len(_recv_exact(sock, min(rest, 1 << 20)))
        return header, None
    return header, _recv_exact(sock, rest)


# ---- the job's context ------------------------------------------------------

class Context:
    """What ``run`` and the handlers get."""

    def __init__(self, worker, job_id, client_name, settings):
        self._worker = worker
        self.job_id = job_id
        self.client_name = client_name
        self.set = settings
        self.abort = threading.Event()  # set when the job is aborted (its current task too)
        self.log_level = "info"
        self._task = threading.Event()
        self._lock = threading.Lock()
        self._stats = {}
        self._errors = {}

    @property
    def aborted(self):
        return self.abort.is_set()

    def task_signal(self):
        """The current task's abort event; after ``abort_task`` the next call returns a fresh one."""
        with self._lock:
            if self._task.is_set():
                self._task = threading.Event()
            return self._task

    def set_stats(self, group, value):
        with self._lock:
            self._stats[group] = value

    def report_error(self, message, group="general", level="error"):
        stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        with self._lock:
            self._errors.setdefault(group, {})[level] = "%s: %s" % (stamp, message)

    def request(self, channel, topic, value=None, timeout=30.0):
        """A request to the parent's handlers; returns the reply's value or raises RequestFailed."""
        return self._worker.request(channel, topic, value, timeout)


# ---- the worker -------------------------------------------------------------

def _parse_url(url):
    """("unix", path) or ("tcp"|"tls", (host, port)) from FLEXEC_PARENT_URL; ConfigError otherwise."""
    if url.startswith("unix://") and len(url) > len("unix://"):
        return "unix", url[len("unix://"):]
    match = re.fullmatch(r"(tcp|tls)://(\[[0-9A-Fa-f:.]+\]|[^:/?#@\[\]\s]+):(\d{1,5})", url)
    if match is None or not 1 <= int(match.group(3)) <= 65535:
        raise ConfigError("FLEXEC_PARENT_URL must be unix://<path>, tcp://<host>:<port> or tls://<host>:<port>, got %r" % url)
    return match.group(1), (match.group(2).strip("[]"), int(match.group(3)))


class _Pending:
    def __init__(self):
        self.done = threading.Event()
        self.result = None  # (rc, value) or an exception


class Worker:
    def __init__(self, handlers=None):
        env = os.environ
        try:
            self.url = env["FLEXEC_PARENT_URL"]
            self.job_id = env["FLEXEC_JOB_ID"]
            self.token = env["FLEXEC_CHANNEL_TOKEN"]
            pin = env.get("FLEXEC_CHANNEL_CERT_SHA256")
            settings = json.loads(env.get("FLEXEC_SET", "{}"))
        except (KeyError, ValueError) as error:
            raise ConfigError("bad flexec environment: %s" % error)
        for name in SECRETS:  # read once, then gone: children do not inherit them
            env.pop(name, None)
        if not isinstance(settings, dict):
            raise ConfigError("FLEXEC_SET is not a JSON object")
        self.address = _parse_url(self.url)
        if self.address[0] == "tls":
            if pin is None or not re.fullmatch(r"[0-9A-Fa-f]{64}", pin):
                raise ConfigError("a tls:// parent needs FLEXEC_CHANNEL_CERT_SHA256 (64 hex digits)")
            self.pin = pin.lower()
        self.ctx = Context(self, self.job_id, env.get("FLEXEC_CLIENT_NAME", ""), settings)
        self.handlers = handlers or {}
        self.status = 1
        self.max_frame = DEFAULT_MAX_FRAME
        self.sock = None
        self.connected = threading.Event()
        self.lost = threading.Event()  # the parent is gone for good
        self.closing = False
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._pending = {}
        self._next_id = 1

    # -- connection ---------------------------------------------------------
    def _open(self):
        """A connected stream socket to the parent (section 1); over TLS only once the pin matched."""
        scheme, where = self.address
        if scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(10.0)
                sock.connect(where)
            except Exception:
                sock.close()
                raise
            return sock
        sock = socket.create_connection(where, timeout=10.0)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if scheme == "tcp":
            return sock
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.check_hostname = False  # the pin authenticates the parent, not a CA or a name
        context.verify_mode = ssl.CERT_NONE
        try:
            sock = context.wrap_socket(sock, server_hostname=None)
            der = sock.getpeercert(binary_form=True)
        except Exception:
            sock.close()
            raise
        if der is None or not hmac.compare_digest(hashlib.sha256(der).hexdigest(), self.pin):
            sock.close()
            raise ConfigError("the parent at %s did not present the certificate FLEXEC_CHANNEL_CERT_SHA256 pins" % self.url)
        return sock

    def _connect_once(self):
        sock = self._open()
        try:
            sock.sendall(encode_frame({"kind": "hello", "version": PROTOCOL_VERSION, "jobId": self.job_id, "token": self.token}))
            header, _ = recv_frame(sock, 4 + MAX_HEADER)
            if header.get("kind") != "hello_ok":
                raise Disconnected("no hello_ok")
            sock.settimeout(None)
        except Exception:
            sock.close()
            raise
        self.max_frame = int(header.get("maxFrame", DEFAULT_MAX_FRAME))
        self.sock = sock
        self.connected.set()

    def connect(self):
        """Connects, retrying for the reconnect window (section 9); False if it never worked."""
        deadline, pause = time.monotonic() + RECONNECT_S, 0.05
        while True:
            try:
                self._connect_once()
                return True
            except (OSError, ValueError):
                if time.monotonic() + pause > deadline:
                    return False
                time.sleep(pause)  # back-off between attempts, as section 9 asks
                pause = min(pause * 2, 1.0)

    def _send(self, header, value=None):
        enc, data = encode_value(value)
        header["enc"] = enc
        frame = encode_frame(header, data)
        if len(frame) - 4 > self.max_frame:
            raise RequestFailed("msg_too_big", {"size": len(frame) - 4, "max": self.max_frame})
        sock = self.sock
        if sock is None or not self.connected.is_set():
            raise Disconnected("not connected")
        with self._write_lock:
            sock.sendall(frame)

    def request(self, channel, topic, value=None, timeout=30.0):
        with self._state_lock:
            rid, self._next_id = self._next_id, self._next_id + 1
            pending = self._pending[rid] = _Pending()
        try:
            self._send({"kind": "request", "id": rid, "channel": channel, "topic": topic}, value)
            if not pending.done.wait(timeout):
                raise TimeoutError("no reply to %s/%s in %ss" % (channel, topic, timeout))
        finally:
            with self._state_lock:
                self._pending.pop(rid, None)
        if isinstance(pending.result, Exception):
            raise pending.result
        rc, result = pending.result
        if rc != "ok":
            raise RequestFailed(rc, result)
        return result

    def _fail_pending(self, error):
        with self._state_lock:
            pending, self._pending = list(self._pending.values()), {}
        for p in pending:
            p.result = error
            p.done.set()

    # -- the reader thread --------------------------------------------------
    def _reader(self):
        while True:
            try:
                while True:
                    self._dispatch(*recv_frame(self.sock, self.max_frame))
            except (OSError, ValueError):
                pass  # dropped, or a malformed frame: close and reconnect (section 9)
            self.connected.clear()
            try:
                self.sock.close()
            except OSError:
                pass
            self._fail_pending(Disconnected("connection lost"))
            try:
                again = not self.closing and self.connect()
            except ConfigError as error:
                print("config error: %s" % error, file=sys.stderr)
                again = False
            if not again:
                self.lost.set()
                if not self.closing:  # the parent is gone for good: abort ourselves
                    self.ctx.abort.set()
                    self.ctx._task.set()
                    timer = threading.Timer(ABORT_GRACE_S, _exit_now, args=(EXIT_INFRA,))
                    timer.daemon = True
                    timer.start()
                return

    def _dispatch(self, header, payload):
        kind = header.get("kind")
        if kind == "reply":
            with self._state_lock:
                pending = self._pending.get(header.get("id"))
            if pending is not None:
                pending.result = ("msg_too_big", None) if payload is None else (header.get("rc", "ok"), decode_value(header, payload))
                pending.done.set()
            return
        if kind not in ("request", "notify"):
            raise ValueError("unexpected %r frame" % (kind,))
        if kind == "request" and not isinstance(header.get("id"), int):
            raise ValueError("request without id")
        channel, topic = header.get("channel"), header.get("topic")
        if payload is None:
            self._reply(header, "msg_too_big", None)
        elif channel == "client_command":
            self._answer(header, self._builtin, topic, decode_value(header, payload))
        else:
            handler = self.handlers.get(channel, {}).get(topic) if isinstance(channel, str) else None
            if handler is None:
                self._reply(header, "invalid_request", "no handler for %s/%s" % (channel, topic))
            else:  # user handlers may block: each runs on its own thread
                value = decode_value(header, payload)
                threading.Thread(target=self._answer, args=(header, lambda _t, v: ("ok", handler(v, self.ctx)), topic, value), daemon=True).start()

    def _answer(self, header, fn, topic, value):
        try:
            rc, result = fn(topic, value)
        except Exception as error:
            rc, result = "process_exception", str(error) or type(error).__name__
        try:
            self._reply(header, rc, result)
        except (TypeError, ValueError) as error:  # not JSON-encodable
            self._reply(header, "process_exception", "reply not encodable: %s" % error)
        if rc == "ok" and header.get("channel") == "client_command":
            if topic == "abort":  # after the ack was written; the current task ends too
                self.ctx.abort.set()
                self.ctx._task.set()
            elif topic == "abort_task":
                self.ctx._task.set()

    def _reply(self, header, rc, value):
        if header.get("kind") != "request":
            return  # a notify gets no reply, whatever happens
        try:
            self._send({"kind": "reply", "id": header["id"], "rc": rc}, value)
        except (OSError, Disconnected):
            pass  # the connection is gone; the reader reconnects

    def _builtin(self, topic, value):
        ctx = self.ctx
        if topic in ("abort", "abort_task"):
            return "ok", None
        if topic == "show_stats":
            with ctx._lock:
                return "ok", dict(ctx._stats)
        if topic == "show_errors":
            with ctx._lock:
                return "ok", {g: dict(levels) for g, levels in ctx._errors.items()}
        if topic == "reset_errors":
            with ctx._lock:
                ctx._errors.clear()
            return "ok", None
        if topic == "configure_job_log":
            level = value.get("level") if isinstance(value, dict) else None
            if level not in LEVELS:
                return "process_exception", "unknown log level %r (allowed: %s)" % (level, ", ".join(LEVELS))
            ctx.log_level = level
            return "ok", None
        if topic == "check_status":
            return "ok", {"status": self.status}
        return "invalid_request", "no handler for client_command/%s" % topic

    # -- the job's life (section 10) ----------------------------------------
    def _notify_status(self, status, retry_for):
        deadline = time.monotonic() + retry_for
        while True:
            try:
                self.request("admin", "notify_job_status", {"status": status}, timeout=5.0)
                return True
            except (Disconnected, TimeoutError, OSError, RequestFailed):
                if time.monotonic() > deadline or self.lost.wait(0.5):
                    return False

    def run(self, run):
        try:
            if not self.connect():
                return EXIT_INFRA
        except ConfigError as error:  # the certificate is not the pinned one: no retry
            print("config error: %s" % error, file=sys.stderr)
            return EXIT_CONFIG
        threading.Thread(target=self._reader, name="flexec-reader", daemon=True).start()
        if not self._notify_status(2, 15.0):
            return EXIT_INFRA
        self.status = 2
        code = 0
        try:
            result = run(self.ctx)
            code = result if isinstance(result, int) and not isinstance(result, bool) else 0
        except ConfigError as error:
            code = EXIT_CONFIG
            print("config error: %s" % error, file=sys.stderr)
        except UnsafeComponentError as error:
            code = EXIT_UNSAFE
            print("unsafe component: %s" % error, file=sys.stderr)
        except Exception as error:
            code = EXIT_EXCEPTION
            print("job failed: %r" % (error,), file=sys.stderr)
        self.status = 3
        if self.lost.is_set() and code == 0:
            code = EXIT_INFRA
        elif not self.lost.is_set():
            self._notify_status(3, 5.0)
        self.closing = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return code


def _write_rc_file(code):
    """The rc file (section 11): decimal digits, created exclusively; the first writer wins."""
    job_dir = os.environ.get("FLEXEC_JOB_DIR", ".")
    try:
        fd = os.open(os.path.join(job_dir, "_process_rc.txt"), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(str(code))
    except OSError:
        pass


def _exit_now(code):
    """`run` did not return within the grace period after the parent was lost."""
    _write_rc_file(code)
    os._exit(code)


def run_job(run, handlers=None):
    """Runs the job and exits the process with its exit code; never returns."""
    try:
        worker = Worker(handlers)
    except ConfigError as error:
        print("config error: %s" % error, file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    code = worker.run(run)
    sys.stdout.flush()
    sys.stderr.flush()
    alive = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if alive:  # work still running: a forced exit could lose the code, so write it down first
        _write_rc_file(code)
        os._exit(code)
    sys.exit(code)
