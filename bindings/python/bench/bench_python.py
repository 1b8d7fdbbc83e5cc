#!/usr/bin/env python3
"""Benchmark of the idem Python package (issue 14). Not a test: it prints
figures and ratios, all measured in the same run on the same machine.

For each store (a SQLite file, and a redis-server started here on a free
port), N new events through:

  python-decorator    @idempotent_event_handler on a plain function, 1 thread
  python-decorator-4t the same from 4 Python threads (the GIL is released
                      around store calls)
  python-async        @idempotent_event_handler on an async def, 256 tasks
                      in flight on one event loop
  cpp-wrapper         the same work through the C++ API: `idem bench --api
                      wrapper -c 1 -d 0` (and -c 4 for the 4-thread row)
  original-redis-py   (Redis only) the original module's logic in pure
                      Python with python3-redis: GET, SET NX (PROCESSING
                      JSON record), handler, SET (COMPLETED record)

and the duplicate path (every event delivered again) for the decorator and
the original logic.

    PYTHONPATH=build/release/bindings/python /usr/bin/python3 bindings/python/bench/bench_python.py \\
        --idem build/release/cli/idem -n 20000
"""

import argparse
import asyncio
import datetime
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import idem  # noqa: E402
from servers import RedisServer  # noqa: E402

RESULT = {"charge_id": "ch_0000000000", "status": "succeeded", "amount": 4200, "cur": "EUR"}  # ~64 bytes


def events(n, tag):
    return [idem.EventEnvelope(event_id=f"{tag}-{i}", event_type="bench", payload={"i": i}) for i in range(n)]


def rate(n, seconds):
    return n / seconds if seconds > 0 else float("inf")


def timed(fn):
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def per_call(fn, items):
    """Runs fn over items; returns (events/s, p50 latency in us, caller CPU
    us per event). The median and the CPU time hold still on a busy machine
    where throughput does not."""
    lat = []
    clock = time.perf_counter_ns
    cpu0 = time.process_time()
    started = clock()
    for item in items:
        t = clock()
        fn(item)
        lat.append(clock() - t)
    elapsed = (clock() - started) / 1e9
    cpu = time.process_time() - cpu0
    lat.sort()
    return rate(len(items), elapsed), lat[len(lat) // 2] / 1e3, cpu / len(items) * 1e6


def bench_decorator(url, n, prefix):
    checker = idem.IdempotencyChecker(url, key_prefix=prefix)
    handler = idem.idempotent_event_handler(lambda e: RESULT, checker=checker)
    evs = events(n, "sync")
    return per_call(handler, evs), per_call(handler, evs)


def bench_decorator_threads(url, n, prefix, threads=4):
    checker = idem.IdempotencyChecker(url, key_prefix=prefix)
    handler = idem.idempotent_event_handler(lambda e: RESULT, checker=checker)
    evs = events(n, "threads")
    chunks = [evs[i::threads] for i in range(threads)]

    def run():
        pool = [threading.Thread(target=lambda c=c: [handler(e) for e in c]) for c in chunks]
        for t in pool:
            t.start()
        for t in pool:
            t.join()

    return rate(n, timed(run))


def bench_async(url, n, prefix, inflight=256):
    checker = idem.IdempotencyChecker(url, key_prefix=prefix)

    @idem.idempotent_event_handler(checker=checker)
    async def handler(e):
        return RESULT

    evs = events(n, "async")

    async def main():
        queue = iter(evs)

        async def lane():
            for e in queue:
                await handler(e)

        await asyncio.gather(*(lane() for _ in range(inflight)))

    return rate(n, timed(lambda: asyncio.run(main())))


def bench_cpp(idem_binary, url, n, concurrency):
    out = subprocess.run([idem_binary, "bench", "--store", url, "--api", "wrapper", "-n", str(n), "-c",
                          str(concurrency), "-d", "0", "--json"], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    report = json.loads(out.stdout)
    return report["events_per_s"], report["latency_us"]["p50"], report["caller_cpu_us_per_event"]


def bench_original(redis_url, n):
    """The original module's Redis logic, in pure Python."""
    import redis

    r = redis.Redis.from_url(redis_url)
    prefix = f"idempotency:events:orig-{uuid.uuid4().hex[:8]}:"
    ttl = 24 * 3600

    def now():
        return datetime.datetime.now(datetime.timezone.utc).isoformat()

    def process(event, handler):
        key = prefix + (event.idempotency_key or event.event_id)
        raw = r.get(key)
        if raw is not None:
            record = json.loads(raw)
            return record.get("result")  # duplicate: the cached result
        record = {"idempotency_key": key, "event_id": event.event_id, "event_type": event.event_type,
                  "status": "PROCESSING", "result": None, "error": None, "first_seen_at": now(),
                  "completed_at": None}
        if not r.set(key, json.dumps(record), nx=True, ex=ttl):
            return None  # someone else is processing it
        result = handler(event)
        record.update(status="COMPLETED", result=result, completed_at=now())
        r.set(key, json.dumps(record), ex=ttl)
        return result

    evs = events(n, "orig")

    def run(e):
        return process(e, lambda e: RESULT)

    return per_call(run, evs), per_call(run, evs)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--events", type=int, default=10000)
    parser.add_argument("--idem", help="the idem binary (for the C++ rows)", default=None)
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds; each row reports its best round (the machine is shared: tails are noise)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n = args.events

    redis_server = RedisServer()
    tmp = tempfile.TemporaryDirectory(prefix="idem-py-bench-")
    rows = {}
    try:
        stores = {"sqlite": f"sqlite://{tmp.name}/bench.db", "redis": redis_server.url}
        lat = {}  # (store, row) -> [(p50 us, cpu us/event)] over rounds
        for _ in range(args.rounds):
            for name, url in stores.items():
                row = {}
                p = f"bench-{uuid.uuid4().hex[:8]}:"
                new, dup = bench_decorator(url, n, p)
                row["python-decorator"], row["python-decorator-dup"] = new[0], dup[0]
                lat.setdefault((name, "python-decorator"), []).append(new[1:])
                lat.setdefault((name, "python-decorator-dup"), []).append(dup[1:])
                if args.idem:
                    cpp = bench_cpp(args.idem, url, n, 1)
                    row["cpp-wrapper"] = cpp[0]
                    lat.setdefault((name, "cpp-wrapper"), []).append(cpp[1:])
                row["python-decorator-4t"] = bench_decorator_threads(url, n, p)
                if args.idem:
                    row["cpp-wrapper-4t"] = bench_cpp(args.idem, url, n, 4)[0]
                row["python-async"] = bench_async(url, n, p)
                if name == "redis":
                    new, dup = bench_original(url, n)
                    row["original-redis-py"], row["original-redis-py-dup"] = new[0], dup[0]
                    lat.setdefault((name, "original-redis-py"), []).append(new[1:])
                    lat.setdefault((name, "original-redis-py-dup"), []).append(dup[1:])
                best = rows.setdefault(name, {})
                for k, v in row.items():
                    best[k] = max(best.get(k, 0.0), v)
        # The median over rounds of each round's p50 and CPU per event.
        medians = {}
        for (name, row), samples in lat.items():
            p50s = sorted(x[0] for x in samples)
            cpus = sorted(x[1] for x in samples)
            medians.setdefault(name, {})[row] = (p50s[len(p50s) // 2], cpus[len(cpus) // 2])
    finally:
        redis_server.stop()
        tmp.cleanup()

    if args.json:
        print(json.dumps({"events_per_s": rows, "p50_us_and_cpu_us_per_event": medians}, indent=2))
        return
    print(f"{n} new events per row, then the same events again (dup); events/s, best of {args.rounds} rounds")
    for name, row in rows.items():
        print(f"\n[{name}]")
        for k, v in row.items():
            print(f"  {k:24s} {v:12,.0f}")
        if "cpp-wrapper" in row:
            print(f"  python-decorator / cpp-wrapper          = {row['python-decorator'] / row['cpp-wrapper']:.2f}")
            print(f"  python-decorator-4t / cpp-wrapper-4t    = {row['python-decorator-4t'] / row['cpp-wrapper-4t']:.2f}")
        if "original-redis-py" in row:
            print(f"  python-decorator / original-redis-py    = {row['python-decorator'] / row['original-redis-py']:.2f}")
            print(f"  python-decorator-dup / original-dup     = "
                  f"{row['python-decorator-dup'] / row['original-redis-py-dup']:.2f}")
            print(f"  python-async / original-redis-py        = {row['python-async'] / row['original-redis-py']:.2f}")
    print("\nOne caller, median over rounds: p50 latency (us) and the caller's CPU (us per event)")
    for name, m in medians.items():
        print(f"\n[{name}]")
        for k, (p50, cpu) in m.items():
            print(f"  {k:24s} p50 {p50:8.1f}   cpu {cpu:8.1f}")
        if "cpp-wrapper" in m:
            print(f"  p50 python-decorator / cpp-wrapper       = {m['python-decorator'][0] / m['cpp-wrapper'][0]:.2f}")
        if "original-redis-py" in m:
            print(f"  p50 original-redis-py / python-decorator = "
                  f"{m['original-redis-py'][0] / m['python-decorator'][0]:.2f}")
            print(f"  p50 original-dup / python-decorator-dup  = "
                  f"{m['original-redis-py-dup'][0] / m['python-decorator-dup'][0]:.2f}")


if __name__ == "__main__":
    main()
