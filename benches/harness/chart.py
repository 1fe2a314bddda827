"""The benchmark chart as a hand-written SVG (no plotting library): fan-out latency percentiles
per server on the left, server memory per held connection on a log scale on the right."""

import math

COLORS = {"floor": "#7f7f7f", "halley": "#d62728", "halley-base": "#ff9896", "halley-redis": "#9467bd",
          "nchan": "#1f77b4",
          "node": "#2ca02c",
          # The --tier runs: several processes on one port (issue 10), each in its server's colour, darker.
          "halley-workers": "#8c1515", "nchan-workers": "#174a7e"}
PCTS = [("fanout_p50_us", "p50"), ("fanout_p90_us", "p90"), ("fanout_p99_us", "p99"),
        ("fanout_max_us", "max"), ("to_last_p50_us", "to last, p50")]


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;")


def svg(lat, mem, title):
    """lat: {server: {key: median us}}; mem: {server: median Pss bytes per conn}."""
    servers = [s for s in COLORS if s in lat or s in mem]
    W, H, top, bottom = 900, 380, 60, 320
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{esc(title)}</text>']

    # Left panel: grouped bars, one group per percentile, one bar per server; linear ms.
    x0, x1 = 60, 540
    peak = max([v for d in lat.values() for v in d.values()] + [1]) / 1000
    step = nice_step(peak)
    top_ms = step * math.ceil(peak / step)
    y = lambda ms: bottom - (bottom - top) * ms / top_ms
    out.append(f'<text x="{(x0 + x1) / 2}" y="44" text-anchor="middle">fan-out latency (ms), one broadcast at a time</text>')
    for i in range(int(round(top_ms / step)) + 1):
        ms = i * step
        out.append(f'<line x1="{x0}" x2="{x1}" y1="{y(ms):.1f}" y2="{y(ms):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{x0 - 6}" y="{y(ms) + 4:.1f}" text-anchor="end">{ms:g}</text>')
    group = (x1 - x0) / len(PCTS)
    bar = group * 0.8 / max(len(servers), 1)
    for g, (key, label) in enumerate(PCTS):
        gx = x0 + g * group + group * 0.1
        for k, s in enumerate(servers):
            v = lat.get(s, {}).get(key)
            if v is None:
                continue
            ms = v / 1000
            out.append(f'<rect x="{gx + k * bar:.1f}" y="{y(ms):.1f}" width="{bar - 1:.1f}" height="{bottom - y(ms):.1f}" fill="{COLORS[s]}"><title>{s} {label}: {ms:.2f} ms</title></rect>')
        out.append(f'<text x="{gx + group * 0.4:.1f}" y="{bottom + 16}" text-anchor="middle">{label}</text>')

    # Right panel: memory per connection, log scale because the floor and the peers differ 100x.
    x0, x1 = 620, 880
    out.append(f'<text x="{(x0 + x1) / 2}" y="44" text-anchor="middle">server memory per held connection (Pss, bytes)</text>')
    vals = [v for v in mem.values() if v > 0] or [1]
    lo, hi = 10 ** math.floor(math.log10(min(vals))), 10 ** math.ceil(math.log10(max(vals)))
    hi = max(hi, lo * 10)
    ly = lambda b: bottom - (bottom - top) * (math.log10(max(b, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
    b = lo
    while b <= hi:
        out.append(f'<line x1="{x0}" x2="{x1}" y1="{ly(b):.1f}" y2="{ly(b):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{x0 - 6}" y="{ly(b) + 4:.1f}" text-anchor="end">{b:g}</text>')
        b *= 10
    w = (x1 - x0) / max(len(servers), 1)
    for k, s in enumerate(servers):
        v = mem.get(s)
        if v is None:
            continue
        bx = x0 + k * w + w * 0.15
        out.append(f'<rect x="{bx:.1f}" y="{ly(v):.1f}" width="{w * 0.7:.1f}" height="{bottom - ly(v):.1f}" fill="{COLORS[s]}"><title>{s}: {v:.0f} B</title></rect>')
        out.append(f'<text x="{bx + w * 0.35:.1f}" y="{ly(v) - 4:.1f}" text-anchor="middle">{v:,.0f}</text>')
        out.append(f'<text x="{bx + w * 0.35:.1f}" y="{bottom + 16}" text-anchor="middle">{s}</text>')

    # Legend.
    for k, s in enumerate(servers):
        lx = 60 + k * 110
        out.append(f'<rect x="{lx}" y="{H - 28}" width="12" height="12" fill="{COLORS[s]}"/>')
        out.append(f'<text x="{lx + 18}" y="{H - 18}">{s}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def nice_step(peak):
    raw = peak / 5
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    return next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
