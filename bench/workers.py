"""``workers: 1`` vs ``workers: 2``: connections held and msgs/s, as ratios against one worker.

    .venv/bin/python bench/workers.py                       # N=1000 load, 5000 held, 3 reps
    .venv/bin/python bench/workers.py --n 2000 --hold 10000 --reps 1 --workers 1,2,4

Both targets use the Redis store (workers > 1 requires it), are up at once, and are measured alternately (reps
outer, targets inner), with the shared harness (``../shared/bench/load.py``, ``csms_stub.py``) driven as in
``bench/compare.py``. CPU and RSS are of each target's whole process tree (main process + workers).

* msgs/s: ``load.py --mode load`` with N chargers, one outstanding CALL each;
* connections held: ``load.py --mode idle`` with ``--hold`` chargers: how many got connected (and RSS/conn).

Mind the machine: on 2 cores the load generator and the stub take most of the CPU, so 2 workers cannot double
msgs/s here; the ratio shows what is left for the gateway. Results: ``bench/results/workers-<UTC>.jsonl`` and a
ratio table on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import GATEWAY, PY, SHARED, STUB_PORT, Procs, redis_server

CONFIG = """listen:   {{host: 127.0.0.1, port: {port}, path_prefix: /ocpp, max_frame_bytes: 65536, ping_interval_s: 30}}
admin:    {{host: 127.0.0.1, port: {admin}}}
store:    {{url: "{store}", prefix: "{prefix}"}}
workers:  {workers}
backends:
  bench: {{url: "ws://127.0.0.1:{stub}/ocpp", ocpp: "1.6"}}
routes:
  - {{match: "*", primary: bench}}
logging:  {{level: warning, format: json}}
"""


def run_load(
    out: Path, name: str, url: str, pid: int, stub_pid: int, n: int, mode: str, rep: int, args: argparse.Namespace
) -> dict[str, object]:
    import subprocess

    argv = [
        PY,
        str(SHARED / "load.py"),
        "--mode",
        mode,
        "--name",
        name,
        "--target",
        url,
        "-n",
        str(n),
        "--pid",
        str(pid),
        "--stub-pid",
        str(stub_pid),
        "--tag",
        f"rep={rep}",
    ]
    if mode == "load":
        argv += ["--duration", str(args.duration), "--warmup", "1", "--quiet-wait", str(args.quiet_wait)]
    else:
        argv += ["--procs", "2", "--connect-concurrency", "200"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=400)
    line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    res: dict[str, object] = json.loads(line) if line.startswith("{") else {"target": name, "failed": True}
    if r.returncode != 0:
        print(r.stderr[-2000:], file=sys.stderr)
    res.update({"bench": "workers", "mode": mode, "n": n, "rep": rep})
    with out.open("a") as fh:
        fh.write(json.dumps(res) + "\n")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", default="1,2", help="worker counts to compare; the first is the baseline")
    ap.add_argument("--n", type=int, default=1000, help="chargers for the msgs/s runs")
    ap.add_argument("--hold", type=int, default=5000, help="chargers for the connections-held runs (0: skip)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float, default=6)
    ap.add_argument("--quiet-wait", type=float, default=10)
    args = ap.parse_args()
    counts = [int(x) for x in args.workers.split(",")]
    results_dir = Path(__file__).resolve().parent / "results"
    results_dir.mkdir(exist_ok=True)
    out = results_dir / f"workers-{time.strftime('%Y-%m-%dT%H%M%SZ', time.gmtime())}.jsonl"
    rows: dict[tuple[str, int], list[dict[str, object]]] = {}
    with tempfile.TemporaryDirectory(prefix="ocppgw-bench-") as tmp:
        work = Path(tmp)
        with redis_server(work) as redis_url:
            procs = Procs(work)
            try:
                stub = procs.start("stub", [PY, str(SHARED / "csms_stub.py"), "--port", str(STUB_PORT)], STUB_PORT)
                urls: dict[int, tuple[str, int]] = {}
                for i, w in enumerate(counts):
                    port, admin = 18400 + 10 * i, 18401 + 10 * i
                    cfg = work / f"w{w}.yaml"
                    cfg.write_text(
                        CONFIG.format(
                            port=port, admin=admin, store=redis_url, prefix=f"bench{w}", workers=w, stub=STUB_PORT
                        )
                    )
                    p = procs.start(f"w{w}", [GATEWAY, "run", "--config", str(cfg)], port)
                    urls[w] = (f"ws://127.0.0.1:{port}/ocpp", p.pid)
                for rep in range(1, args.reps + 1):
                    for w in counts:
                        url, pid = urls[w]
                        print(f"load rep={rep} workers={w} n={args.n}", file=sys.stderr)
                        rows.setdefault(("load", w), []).append(
                            run_load(out, f"workers-{w}", url, pid, stub.pid, args.n, "load", rep, args)
                        )
                        time.sleep(1)
                        if args.hold:
                            print(f"hold rep={rep} workers={w} n={args.hold}", file=sys.stderr)
                            rows.setdefault(("idle", w), []).append(
                                run_load(out, f"workers-{w}", url, pid, stub.pid, args.hold, "idle", rep, args)
                            )
                            time.sleep(1)
            finally:
                procs.stop_all()

    def med(mode: str, w: int, key: str) -> float:
        vals = [float(r[key]) for r in rows.get((mode, w), []) if isinstance(r.get(key), int | float)]
        return statistics.median(vals) if vals else float("nan")

    base = counts[0]
    print(f"| workers | msgs/s (N={args.n}) | ratio | p99 ms | held (of {args.hold}) | ratio | RSS/conn KiB |")
    print("|---|---|---|---|---|---|---|")
    for w in counts:
        mps, held = med("load", w, "msgs_per_s"), med("idle", w, "connected")
        print(
            f"| {w} | {mps:.0f} | {mps / med('load', base, 'msgs_per_s'):.2f} | {med('load', w, 'p99_ms'):.1f} "
            f"| {held:.0f} | {held / med('idle', base, 'connected'):.2f} | {med('idle', w, 'rss_per_conn_kb'):.1f} |"
        )
    print(f"# raw results: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
