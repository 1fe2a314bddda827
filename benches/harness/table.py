"""Turns repeated generator results into the table scripts/bench prints and records: the median
of each figure with its min-max, and each server's median as a ratio to a base server's (the
floor's, unless scripts/bench --ratio-to names another)."""

import statistics

# (result key, row label, how to scale the raw value, digits); rows whose key no result has are left out.
SSE_ROWS = [
    ("held", "subscribers held", 1, 0),
    ("connect_s", "connect all (s)", 1, 2),
    ("pss_per_conn_b", "server Pss per conn (B)", 1, 0),
    ("rss_per_conn_b", "server RSS per conn (B)", 1, 0),
    ("slab_per_conn_b", "kernel slab per conn, both ends (B)", 1, 0),
    ("fanout_p50_us", "fan-out latency p50 (ms)", 1e-3, 2),
    ("fanout_p90_us", "fan-out latency p90 (ms)", 1e-3, 2),
    ("fanout_p99_us", "fan-out latency p99 (ms)", 1e-3, 2),
    ("fanout_max_us", "fan-out latency max (ms)", 1e-3, 2),
    ("to_last_p50_us", "one broadcast, until the last has it, p50 (ms)", 1e-3, 2),
    ("to_last_max_us", "one broadcast, until the last has it, max (ms)", 1e-3, 2),
    ("deliveries_per_s", "deliveries/s, one broadcast at a time", 1, 0),
    ("server_cpu_ms_per_1k", "server CPU per 1,000 deliveries (ms)", 1, 3),
    # A cluster (halley-redis): each node's part of the server's CPU, its subscribers' latency,
    # Redis's CPU besides, and the publishing node's round trip to Redis (from its /stats).
    ("node1_cpu_ms_per_1k", "node 1 (publishes) CPU per 1,000 deliveries (ms)", 1, 3),
    ("node2_cpu_ms_per_1k", "node 2 CPU per 1,000 deliveries (ms)", 1, 3),
    ("aux_cpu_ms_per_1k", "Redis CPU per 1,000 deliveries (ms)", 1, 3),
    ("node1_fanout_p50_us", "fan-out latency p50, node 1's subscribers (ms)", 1e-3, 2),
    ("node2_fanout_p50_us", "fan-out latency p50, node 2's subscribers (ms)", 1e-3, 2),
    ("node1_fanout_p99_us", "fan-out latency p99, node 1's subscribers (ms)", 1e-3, 2),
    ("node2_fanout_p99_us", "fan-out latency p99, node 2's subscribers (ms)", 1e-3, 2),
    ("publish_rtt_mean_us", "publish round trip to Redis, mean (ms)", 1e-3, 2),
    ("publish_rtt_max_us", "publish round trip to Redis, max (ms)", 1e-3, 2),
    ("open_p50_us", "open-loop latency p50 (ms)", 1e-3, 2),
    ("open_p99_us", "open-loop latency p99 (ms)", 1e-3, 2),
    ("open_server_cpu_ms_per_1k", "open-loop server CPU per 1,000 deliveries (ms)", 1, 3),
    ("open_aux_cpu_ms_per_1k", "open-loop Redis CPU per 1,000 deliveries (ms)", 1, 3),
    ("server_cpu_share", "server CPU, share of its core", 1, 2),
    ("aux_cpu_share", "Redis CPU, share of the server's core", 1, 2),
    ("gen_cpu_share", "generator CPU, share of its core", 1, 2),
    # One port, several processes (issue 10): how the kernel spread the run's connections.
    ("workers", "worker processes", 1, 0),
    ("worker_accepted_min", "connections accepted by the least busy worker", 1, 0),
    ("worker_accepted_max", "connections accepted by the busiest worker", 1, 0),
    ("lost", "missing + duplicate + out-of-order", 1, 0),
    ("redis_publish_failures", "publishes Redis failed or timed out", 1, 0),
]
# Counts and shares: their ratio to another server's says nothing.
NO_RATIO = {"held", "lost", "held_missing", "held_late", "gen_cpu_share", "server_cpu_share",
            "aux_cpu_share", "redis_publish_failures", "workers", "worker_accepted_min",
            "worker_accepted_max"}
LONGPOLL_ROWS = [
    ("ready_cycles_per_s", "long-poll cycles/s, message ready", 1, 0),
    ("ready_server_cpu_ms_per_1k", "server CPU per 1,000 cycles (ms)", 1, 3),
    ("held_p50_us", "held long-poll latency p50 (ms)", 1e-3, 2),
    ("held_p99_us", "held long-poll latency p99 (ms)", 1e-3, 2),
    ("held_late", "held long-polls parked too late, answered by the next message", 1, 0),
    ("held_missing", "held long-polls never answered", 1, 0),
]


def with_derived(result):
    r = dict(result)
    if "missing" in r:
        r["lost"] = r["missing"] + r["duplicate"] + r["out_of_order"] + r.get("dropped", 0)
    return r


def fmt(x, digits):
    return f"{x:,.{digits}f}"


def cell(values, scale, digits, base_median):
    vals = [v * scale for v in values]
    med = statistics.median(vals)
    s = fmt(med, digits)
    if len(vals) > 1:
        s += f" ({fmt(min(vals), digits)}–{fmt(max(vals), digits)})"
    # A base at or below zero (a Pss delta within measurement noise at small N) has no ratio.
    if base_median is not None and base_median > 0 and med != 0:
        s += f" ×{med / (base_median * scale):.2f}"
    return s


def markdown(title, results, servers, rows, base="floor"):
    """results: {server: [result dict, ...]}; ratios are to server `base`'s medians.
    Returns a Markdown table as a string."""
    results = {s: [with_derived(r) for r in rs] for s, rs in results.items()}
    cols = [s for s in servers if results.get(s)]
    lines = [f"**{title}**", "", "| | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for key, label, scale, digits in rows:
        if not any(key in r for s in cols for r in results[s]):
            continue
        base_vals = [r[key] for r in results.get(base, []) if key in r]
        base_med = statistics.median(base_vals) if base_vals and key not in NO_RATIO else None
        cells = []
        for s in cols:
            vals = [r[key] for r in results[s] if key in r]
            cells.append(cell(vals, scale, digits, None if s == base else base_med) if vals else "n/a")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def ws_memory(sse, ws, servers, goal):
    """sse, ws: [(server, result), ...] of the SSE and WebSocket tiers of one run. Returns a
    Markdown table of each server's median Pss per held connection over both transports and their
    ratio, halley's measured against `goal` (a WebSocket within `goal` times an SSE subscriber)."""
    def by_server(pairs):
        out = {}
        for name, r in pairs:
            # A run whose subscribers were refused measured nothing per connection.
            if r.get("held", 0) > 0 and not r.get("failed", 0):
                out.setdefault(name, []).append(r)
        return medians(out, "pss_per_conn_b")

    s, w = by_server(sse), by_server(ws)
    lines = ["**memory per held connection, WebSocket against SSE on the same server**", "",
             "| | SSE Pss per conn (B) | WS Pss per conn (B) | WS / SSE | goal |", "|---|---|---|---|---|"]
    for name in servers:
        if name not in s or name not in w:
            continue
        # A delta at or below zero is noise at this N and has no meaningful ratio.
        ratio = w[name] / s[name] if s[name] > 0 else None
        # The goal is halley's; the peers' ratios are there to read it against.
        verdict = ""
        if ratio is not None and name.startswith("halley"):
            verdict = f"within {goal}×: " + ("**met**" if ratio <= goal else "**missed**")
        shown = "n/a" if ratio is None else f"{ratio:.2f}"
        lines.append(f"| {name} | {fmt(s[name], 0)} | {fmt(w[name], 0)} | {shown} | {verdict} |")
    return "\n".join(lines) + "\n"


def medians(results, key):
    """{server: median of key} over the servers that have it."""
    out = {}
    for s, rs in results.items():
        vals = [with_derived(r)[key] for r in rs if key in with_derived(r)]
        if vals:
            out[s] = statistics.median(vals)
    return out
