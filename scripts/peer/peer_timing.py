"""Timing shared by the peer scripts, the way `bench` times ours: one warm-up call, then the median and the minimum
of `runs` timed calls; one JSON line per case with the process's peak RSS."""
import json
import resource
import time


def timed(body, runs):
    body()
    times = []
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        body()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2], times[0]


def report(name, med, mn, **extra):
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"case": name, "median_ms": round(med * 1000, 3), "min_ms": round(mn * 1000, 3), "peak_rss_mb": round(rss, 1),
                      **extra}), flush=True)
