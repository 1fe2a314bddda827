"""The servers scripts/bench compares: how to install, start, address and stop each one.

Every server is started fresh for each measurement on a port the OS picks (or, for nginx and
Redis, one found free just before), pinned to one core, and stopped by the pid this module started.
`halley-redis` is a cluster: a private redis-server and two halley nodes on it, all three on the
server's core; subscribers are split over both nodes and messages published to the first.
`halley-workers` and `nchan-workers` are one port served by several processes (issue 10):
`halley --workers N` on a private Redis, and nginx with `worker_processes N`, each socket of
theirs bound with SO_REUSEPORT so the kernel spreads connections alike; N comes from the tier.
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

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
URLS["halley-redis"] = URLS["halley"]
URLS["halley-workers"] = URLS["halley"]
URLS["nchan-workers"] = URLS["nchan"]

# The cluster's size: two nodes are the least that shows a message crossing from one to another.
REDIS_NODES = 2

# `scripts/bench --baseline PATH` sets this: an earlier build of halley, measured in the same run
# as `halley-base`, so a change to the hot path states its before and after side by side.
BASELINE = None


class Skip(Exception):
    """A server that cannot run here; the reason is printed and the run goes on without it."""


class Server:
    """One server process: it takes the subscribers and the publishes, and its CPU is measured."""

    def __init__(self, name, proc, port, cleanup=None):
        self.name, self.proc, self.port, self.cleanup = name, proc, port, cleanup

    @property
    def pids(self):
        """The server's processes, measured as the server (summed) and, when several, one by one."""
        return [self.proc.pid]

    @property
    def aux_pids(self):
        """Processes the server needs whose CPU is reported apart from the server's (Redis)."""
        return []

    def url(self, path):
        """Where messages are published."""
        return f"http://127.0.0.1:{self.port}{path}"

    def sub_urls(self, path):
        """Where subscribers subscribe, shared half and half when there are several."""
        return [self.url(path)]

    def poll_url(self, path):
        """Where long-polls wait."""
        return self.url(path)

    def figures(self):
        """What the server itself reports after a run, added to the generator's result."""
        return {}

    def stop(self):
        stop_proc(self.proc)
        if self.cleanup:
            self.cleanup()


class Cluster(Server):
    """halley nodes on one Redis. Publishes go to the first node; SSE subscribers are split over
    all of them and long-polls wait on the last, so every measured message crosses Redis."""

    def __init__(self, name, redis, nodes, cleanup):
        super().__init__(name, nodes[0][0], nodes[0][1], cleanup)
        self.redis, self.nodes = redis, nodes

    @property
    def pids(self):
        return [proc.pid for proc, _ in self.nodes]

    @property
    def aux_pids(self):
        return [self.redis.pid]

    def sub_urls(self, path):
        return [f"http://127.0.0.1:{port}{path}" for _, port in self.nodes]

    def poll_url(self, path):
        return f"http://127.0.0.1:{self.nodes[-1][1]}{path}"

    def figures(self):
        """The publishing node's round trip to Redis over the run's publishes (its /stats)."""
        try:
            with urllib.request.urlopen(self.url("/stats"), timeout=5) as r:
                redis = json.load(r).get("redis", {})
        except (OSError, ValueError):
            return {}
        rtt = redis.get("publish_rtt_us", {})
        return {"publish_rtt_mean_us": rtt.get("mean", 0), "publish_rtt_max_us": rtt.get("max", 0),
                "redis_publishes": redis.get("publishes", 0),
                "redis_publish_failures": redis.get("publish_failures", 0)}

    def stop(self):
        # Nodes first, so none is left reconnecting to a Redis that is gone.
        for proc, _ in self.nodes:
            stop_proc(proc)
        stop_proc(self.redis)
        self.cleanup()


class Workers(Server):
    """One port, several processes: a supervisor (halley's, or nginx's master) and its workers,
    measured together (the generator adds a --server-pid's descendants), and halley's Redis apart."""

    def __init__(self, name, proc, port, workers, redis=None, cleanup=None):
        super().__init__(name, proc, port, cleanup)
        self.workers, self.redis = workers, redis

    @property
    def aux_pids(self):
        return [self.redis.pid] if self.redis else []

    def figures(self):
        """How the kernel spread the run's connections: each halley worker's accepted count, read
        from /stats over fresh connections until every worker has answered."""
        if self.redis is None:
            return {"workers": self.workers}
        seen = worker_stats(self.port, self.workers)
        accepted = [seen[k].get("connections_accepted", 0) for k in sorted(seen)]
        return {"workers": self.workers, "worker_accepted": accepted,
                "worker_accepted_min": min(accepted, default=0),
                "worker_accepted_max": max(accepted, default=0)}

    def stop(self):
        # The supervisor passes SIGTERM on and waits for its workers; Redis goes last.
        stop_proc(self.proc, timeout=60)
        if self.redis:
            stop_proc(self.redis)
        if self.cleanup:
            self.cleanup()


def worker_stats(port, n, tries=400):
    """Each halley worker's /stats by its number, read over fresh connections (the kernel picks
    the worker of each) until all n have answered or `tries` connections were made."""
    seen = {}
    for _ in range(tries):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as r:
                s = json.load(r)
        except (OSError, ValueError):
            continue
        seen[s.get("worker", 1)] = s
        if len(seen) == n:
            break
    return seen


def stop_proc(proc, timeout=10):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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


def start(name, pin, workers=1):
    """Starts server `name` under the `pin` command prefix (taskset) and returns a Server; the
    -workers servers run `workers` processes."""
    if name == "halley-workers":
        return start_halley_workers(pin, workers)
    if name == "nchan-workers":
        return start_nchan(pin, workers)
    starters = {"floor": start_floor, "halley": start_halley, "halley-base": start_halley_base,
                "halley-redis": start_halley_redis, "nchan": start_nchan, "node": start_node}
    return starters[name](pin)


def spawn(cmd, **kw):
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, **kw)


def start_floor(pin):
    proc = spawn(pin + [os.path.join(ROOT, "target/release/halley-floor"), "--listen", "127.0.0.1:0"])
    return Server("floor", proc, read_listening_line(proc))


def start_halley(pin, name="halley", exe=os.path.join(ROOT, "target/release/halley"), extra=()):
    if not exe or not os.path.exists(exe):
        raise Skip(f"{exe} does not exist")
    proc = spawn(pin + [exe, "--listen", "127.0.0.1:0", *extra], env=dict(os.environ, RUST_LOG="error"))
    port = read_listening_line(proc)
    wait_for_port(port, proc)
    return Server(name, proc, port)


def start_halley_redis(pin):
    """A private redis-server (no persistence, its own temp dir) and REDIS_NODES halley nodes on it,
    returned once every node's /healthz says it reaches Redis."""
    exe = os.path.join(ROOT, "target/release/halley")
    redis, port, cleanup = start_redis(pin)
    nodes = []
    try:
        for _ in range(REDIS_NODES):
            node = start_halley(pin, "halley-redis", exe, ["--redis", f"redis://127.0.0.1:{port}"])
            nodes.append((node.proc, node.port))
        for proc, node_port in nodes:
            wait_for_health(node_port, proc)
    except Skip:
        for proc, _ in nodes:
            stop_proc(proc)
        stop_proc(redis)
        cleanup()
        raise
    return Cluster("halley-redis", redis, nodes, cleanup)


def start_redis(pin):
    """A private redis-server on a free port, without persistence, in a temp dir of its own;
    returns it, its port and what removes the dir, once it accepts connections."""
    if not shutil.which("redis-server"):
        # Not installed from here: a packaged Redis may start a system instance, which a benchmark
        # must never touch.
        raise Skip("redis-server is not installed (scripts/test installs it)")
    tmp = tempfile.mkdtemp(prefix="halley-bench-redis-")
    port = free_port()
    redis = subprocess.Popen(pin + ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                    "--save", "", "--appendonly", "no", "--dir", tmp,
                                    "--logfile", os.path.join(tmp, "redis.log")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def cleanup():
        shutil.rmtree(tmp, ignore_errors=True)

    try:
        wait_for_port(port, redis)
    except Skip:
        cleanup()
        raise
    return redis, port, cleanup


def start_halley_workers(pin, n):
    """`halley --workers n` on a private Redis, returned once every worker reaches it."""
    exe = os.path.join(ROOT, "target/release/halley")
    redis, redis_port, cleanup = start_redis(pin)
    try:
        server = start_halley(pin, "halley-workers", exe,
                              ["--workers", str(n), "--redis", f"redis://127.0.0.1:{redis_port}"])
    except Skip:
        stop_proc(redis)
        cleanup()
        raise
    workers = Workers("halley-workers", server.proc, server.port, n, redis, cleanup)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        seen = worker_stats(server.port, n)
        if len(seen) == n and all(s.get("redis", {}).get("connected") for s in seen.values()):
            return workers
        time.sleep(0.05)
    workers.stop()
    raise Skip(f"not all {n} workers reached Redis within 10 s")


def wait_for_health(port, proc, timeout=10.0):
    """Waits until a node's /healthz answers 200: it has reached Redis."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Skip("a node exited at start-up")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise Skip("a node did not reach Redis within %.0f s" % timeout)


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


def start_nchan(pin, workers=None):
    """nginx with Nchan; with `workers`, that many worker processes (`nchan-workers`), each
    with its own SO_REUSEPORT listener like halley's workers, and 20,000 descriptors each."""
    module = nchan_module()
    if not shutil.which("nginx") or not module:
        raise Skip("nginx or its nchan module is missing (apt-get install -y nginx libnginx-mod-nchan)")
    prefix = tempfile.mkdtemp(prefix="halley-bench-nchan-")
    os.makedirs(os.path.join(prefix, "tmp"))
    port = free_port()
    with open(os.path.join(ROOT, "benches/nchan/nginx.conf.template")) as f:
        conf = f.read().replace("@MODULE@", module).replace("@PREFIX@", prefix).replace("@PORT@", str(port))
    if workers is not None:
        conf = conf.replace("worker_processes 1;", f"worker_processes {workers};")
        conf = conf.replace("backlog=4096;", "backlog=4096 reuseport;")
        assert f"worker_processes {workers};" in conf and "reuseport" in conf
    with open(os.path.join(prefix, "nginx.conf"), "w") as f:
        f.write(conf)
    proc = spawn(pin + ["nginx", "-p", prefix, "-c", os.path.join(prefix, "nginx.conf")])
    wait_for_port(port, proc)
    cleanup = lambda: shutil.rmtree(prefix, ignore_errors=True)  # noqa: E731
    if workers is not None:
        return Workers("nchan-workers", proc, port, workers, cleanup=cleanup)
    return Server("nchan", proc, port, cleanup=cleanup)


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
