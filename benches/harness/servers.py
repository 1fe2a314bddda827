"""The servers scripts/bench compares: how to install, start, address and stop each one.

Every server is started fresh for each measurement on a port the OS picks (or, for nginx, one
found free just before), pinned to one core, and stopped by the pid this module started.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NCHAN_MODULES = ["/usr/lib/nginx/modules/ngx_nchan_module.so",
                 "/usr/share/nginx/modules/ngx_nchan_module.so"]

# Long-poll URLs differ: halley takes a cursor in the query, Nchan and the floor use locations.
# Node's sse-channel has no long-poll, so it has none.
URLS = {
    "floor": {"ready": "/lp/{channel}", "wait": "/lpw/{channel}"},
    "nchan": {"ready": "/lp/{channel}", "wait": "/lpw/{channel}"},
    "node": {},
    "halley": {"ready": "/sub/{channel}?transport=longpoll&since=earliest",
               "wait": "/sub/{channel}?transport=longpoll"},
}
URLS["halley-base"] = URLS["halley"]

# `scripts/bench --baseline PATH` sets this: an earlier build of halley, measured in the same run
# as `halley-base`, so a change to the hot path states its before and after side by side.
BASELINE = None


class Skip(Exception):
    """A server that cannot run here; the reason is printed and the run goes on without it."""


class Server:
    def __init__(self, name, proc, port, cleanup=None):
        self.name, self.proc, self.port, self.cleanup = name, proc, port, cleanup

    @property
    def pid(self):
        return self.proc.pid

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.cleanup:
            self.cleanup()


def read_listening_line(proc, timeout=10.0):
    """The port from the `listening on 127.0.0.1:PORT` line the floor, halley and node print."""
    result = []

    def read():
        for line in proc.stdout:
            if line.startswith("listening on "):
                result.append(int(line.strip().rsplit(":", 1)[1]))
                return

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout)
    if not result:
        try:
            code = proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            code = None
        proc.kill()
        proc.wait()
        if code is not None:
            raise Skip(f"exited with status {code} before printing `listening on ADDR`")
        raise Skip("did not print `listening on ADDR` within %.0f s" % timeout)
    # Keep draining stdout so the server never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return result[0]


def wait_for_port(port, proc, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Skip("exited at start-up")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise Skip("did not accept connections within %.0f s" % timeout)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name, pin):
    """Starts server `name` under the `pin` command prefix (taskset) and returns a Server."""
    starters = {"floor": start_floor, "halley": start_halley, "halley-base": start_halley_base,
                "nchan": start_nchan, "node": start_node}
    return starters[name](pin)


def spawn(cmd, **kw):
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, **kw)


def start_floor(pin):
    proc = spawn(pin + [os.path.join(ROOT, "target/release/halley-floor"), "--listen", "127.0.0.1:0"])
    return Server("floor", proc, read_listening_line(proc))


def start_halley(pin, name="halley", exe=os.path.join(ROOT, "target/release/halley")):
    if not exe or not os.path.exists(exe):
        raise Skip(f"{exe} does not exist")
    proc = spawn(pin + [exe, "--listen", "127.0.0.1:0"], env=dict(os.environ, RUST_LOG="error"))
    port = read_listening_line(proc)
    wait_for_port(port, proc)
    return Server(name, proc, port)


def start_halley_base(pin):
    if BASELINE is None:
        raise Skip("no --baseline given")
    return start_halley(pin, "halley-base", BASELINE)


def start_node(pin):
    here = os.path.join(ROOT, "benches/node")
    if not shutil.which("node"):
        raise Skip("node is not installed")
    proc = spawn(pin + ["node", os.path.join(here, "server.js"), "--listen", "127.0.0.1:0"])
    return Server("node", proc, read_listening_line(proc))


def nchan_module():
    return next((m for m in NCHAN_MODULES if os.path.exists(m)), None)


def start_nchan(pin):
    module = nchan_module()
    if not shutil.which("nginx") or not module:
        raise Skip("nginx or its nchan module is missing (apt-get install -y nginx libnginx-mod-nchan)")
    prefix = tempfile.mkdtemp(prefix="halley-bench-nchan-")
    os.makedirs(os.path.join(prefix, "tmp"))
    port = free_port()
    with open(os.path.join(ROOT, "benches/nchan/nginx.conf.template")) as f:
        conf = f.read().replace("@MODULE@", module).replace("@PREFIX@", prefix).replace("@PORT@", str(port))
    with open(os.path.join(prefix, "nginx.conf"), "w") as f:
        f.write(conf)
    proc = spawn(pin + ["nginx", "-p", prefix, "-c", os.path.join(prefix, "nginx.conf")])
    wait_for_port(port, proc)
    return Server("nchan", proc, port, cleanup=lambda: shutil.rmtree(prefix, ignore_errors=True))


def install(names, log):
    """Installs what the chosen peers need: Debian's nginx + nchan, the Node fixture's packages."""
    if "nchan" in names and (not shutil.which("nginx") or not nchan_module()):
        log("installing nginx and libnginx-mod-nchan with apt-get")
        cmd = ["apt-get", "install", "-y", "nginx", "libnginx-mod-nchan"]
        if subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["apt-get", "update"], stdout=subprocess.DEVNULL)
            subprocess.run(cmd, stdout=subprocess.DEVNULL)
    if "node" in names and shutil.which("npm"):
        here = os.path.join(ROOT, "benches/node")
        if not os.path.isdir(os.path.join(here, "node_modules", "sse-channel")):
            log("installing the Node fixture's packages with npm ci")
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=here, stdout=subprocess.DEVNULL)
