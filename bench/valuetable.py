"""Prints the Markdown table of a value-size benchmark (bench/values.sh for Redis,
bench/memcache.sh for memcached) from its tab-separated rows:
name, value size, test, ops/s, proxy CPU us/op, backend servers' CPU us/op, p50 ms,
p99 ms, the machine's CPUs busy in % (one row per round).

Usage: python3 bench/valuetable.py ROWS.tsv DIRECT_NAME HEADING
Medians of the rounds; ratios to DIRECT_NAME, to "twemproxy" and, for a gateway
with 3 backends, to the same gateway's 1-backend row: the median of the per-round
ratios (each target's rows are in the order of the rounds, which ran interleaved)."""
import collections
import statistics
import sys

path, direct_name, heading = sys.argv[1:]
rows, order = collections.defaultdict(list), []
for line in open(path):
    name, size, test, rps, pcpu, bcpu, p50, p99, busy = line.rstrip("\n").split("\t")
    key = (name, int(size), test)
    if key not in rows:
        order.append(key)
    rows[key].append((float(rps), float(pcpu), float(bcpu), float(p50), float(p99), float(busy)))


def med(key, i):
    return statistics.median(r[i] for r in rows[key])


def ratio(key, other):
    return statistics.median(a[0] / b[0] for a, b in zip(rows[key], rows[other]))


label = {16384: "16 KiB", 102400: "100 KiB", 1048576: "1 MiB"}
print(heading + "\n")
print("| target | value | test | ops/s | vs direct | vs twemproxy | vs 1 backend | proxy CPU us/op | servers CPU us/op | CPUs busy | p50 / p99 ms |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for key in sorted(order, key=lambda k: (k[1], order.index(k))):
    name, size, test = key
    rps = med(key, 0)
    direct, twem = ratio(key, (direct_name, size, test)), ratio(key, ("twemproxy", size, test))
    one = ""
    if "3 backend" in name:
        one = f"{ratio(key, (name.replace('3 backend', '1 backend'), size, test)):.2f}"
    cpu = "-" if name == direct_name else f"{med(key, 1):.1f}"
    print(f"| {name} | {label.get(size, size)} | {test.upper()} | {rps:,.0f} | {direct:.2f} | {twem:.2f} | {one} | {cpu} | {med(key, 2):.1f} | {med(key, 5):.0f} % | {med(key, 3):.3f} / {med(key, 4):.3f} |")
