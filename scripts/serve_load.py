"""Load and soak ``nmt-serve``: latency under concurrent clients, then whether the server's memory levels off.

    python scripts/serve_load.py --checkpoint runs/quickstart/best.pt
    python scripts/serve_load.py --checkpoint runs/quickstart/best.pt --soak-minutes 5 \\
        --env "" --env "MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647" --env "MALLOC_ARENA_MAX=2"

For each ``--env`` (environment variables such as glibc's allocator settings; "" starts the server as it is)
a fresh server is started on a free loopback port with the remaining arguments as ``nmt-serve`` overrides
(e.g. ``threads=2``). ``--clients`` clients, each on its own keep-alive connection, post 1 to
``--max-lines`` random source sentences back to back for ``--seconds``: latency p50 / p99, requests and
sentences per second, errors (a transport error, a status other than 200, or a wrong number of
translations). Then they keep posting for ``--soak-minutes`` while the server's RSS is read every
``--sample-every`` seconds. RSS has levelled off (``plateau``) when it grows by less than ``--plateau-mib``
over the soak's last third. Prints a table and writes one JSON object per setting to ``--json``.

Latency and throughput depend on what else the machine runs; the client shares the server's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from nmt.paths import data_root

Check = Callable[[list[str], list[str]], bool]  # (sent lines, translations) -> the answer is right


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LoadResult:
    """What the clients saw: one latency per answered request, one message per error."""

    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    lines: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, float | int]:
        p50, p99 = np.percentile(self.latencies, [50, 99]) * 1000 if self.latencies else (float("nan"),) * 2
        return {
            "requests": len(self.latencies),
            "errors": len(self.errors),
            "p50_ms": round(float(p50), 1),
            "p99_ms": round(float(p99), 1),
            "requests_per_s": round(len(self.latencies) / self.seconds, 2),
            "sentences_per_s": round(self.lines / self.seconds, 2),
        }


def run_load(
    url: str, clients: int, seconds: float, sentences: list[str], max_lines: int, check: Check | None = None
) -> LoadResult:
    """``clients`` concurrent clients post random requests to ``url``/translate for ``seconds``."""
    result = LoadResult()

    async def client(k: int, stop_at: float) -> None:
        rng = random.Random(k)
        async with httpx.AsyncClient(timeout=120) as c:
            while time.monotonic() < stop_at:
                lines = rng.sample(sentences, rng.randint(1, max_lines))
                t0 = time.perf_counter()
                try:
                    r = await c.post(f"{url}/translate", json={"text": lines})
                except httpx.HTTPError as e:
                    result.errors.append(f"client {k}: {type(e).__name__}: {e}")
                    continue
                if r.status_code != 200:
                    result.errors.append(f"client {k}: {r.status_code} {r.text[:200]}")
                    continue
                translations = r.json()["translations"]
                if len(translations) != len(lines) or (check is not None and not check(lines, translations)):
                    result.errors.append(f"client {k}: wrong translations of {lines}: {translations}")
                    continue
                result.latencies.append(time.perf_counter() - t0)
                result.lines += len(lines)

    async def all_clients() -> None:
        stop_at = time.monotonic() + seconds
        await asyncio.gather(*(client(k, stop_at) for k in range(clients)))

    started = time.perf_counter()
    asyncio.run(all_clients())
    result.seconds = time.perf_counter() - started
    return result


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def healthy_within(url: str, alive: Callable[[], bool], timeout: float) -> bool:
    """Poll ``url``/health until it answers 200 (True), the server stops being ``alive()`` or ``timeout``
    seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    return False


def start_server(
    checkpoint: str, overrides: list[str], env: dict[str, str], log_path: Path
) -> tuple[subprocess.Popen, str]:
    """An nmt-serve process on a free loopback port, once its /health answers 200: (process, url)."""
    port = free_port()
    cmd = [sys.executable, "-m", "nmt.cli.serve", f"checkpoint={checkpoint}", "host=127.0.0.1", f"port={port}"]
    cmd += ["device=cpu", "access_log=false", *overrides]
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
    url = f"http://127.0.0.1:{port}"
    if healthy_within(url, lambda: proc.poll() is None, 300):
        return proc, url
    proc.kill()
    sys.exit(f"serve_load.py: error: nmt-serve did not come up; its log:\n{log_path.read_text()}")


def parse_env(text: str) -> dict[str, str]:
    env = {}
    for item in text.split():
        name, sep, value = item.partition("=")
        if not sep:
            sys.exit(f"serve_load.py: error: --env {text!r}: write NAME=VALUE pairs separated by spaces")
        env[name] = value
    return env


def measure(args: argparse.Namespace, env_text: str, sentences: list[str], log_path: Path) -> dict:
    """One setting: the load phase, then the soak with RSS samples."""
    proc, url = start_server(args.checkpoint, args.overrides, parse_env(env_text), log_path)
    try:
        rss_ready = rss_mib(proc.pid)
        load = run_load(url, args.clients, args.seconds, sentences, args.max_lines)
        rss_after_load = rss_mib(proc.pid)
        soak = LoadResult()
        done = threading.Event()

        def soak_clients() -> None:
            nonlocal soak
            soak = run_load(url, args.clients, args.soak_minutes * 60, sentences, args.max_lines)
            done.set()

        threading.Thread(target=soak_clients, daemon=True).start()
        samples = [(0.0, round(rss_mib(proc.pid), 1))]
        start = time.monotonic()
        while not done.wait(args.sample_every):
            samples.append((round(time.monotonic() - start, 1), round(rss_mib(proc.pid), 1)))
        samples.append((round(time.monotonic() - start, 1), round(rss_mib(proc.pid), 1)))
        threads = thread_count(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=120)
    thirds = [samples[round(i * (len(samples) - 1) / 3)][1] for i in range(4)]
    last_third = thirds[3] - thirds[2]
    return {
        "env": env_text or "(none)",
        "load": {"clients": args.clients, "seconds": round(load.seconds, 1), **load.summary()},
        "rss_mib": {
            "ready": round(rss_ready, 1),
            "after_load": round(rss_after_load, 1),
            "soak_thirds": [round(r, 1) for r in thirds],
            "soak_peak": max(r for _, r in samples),
            "last_third_growth": round(last_third, 1),
        },
        "plateau": last_third < args.plateau_mib,
        "soak": {"minutes": args.soak_minutes, **soak.summary()},
        "server_threads_at_end": threads,
        "samples": samples,
        "load_errors": load.errors[:5] + soak.errors[:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a checkpoint or nmt-export directory to serve")
    parser.add_argument("--sources", help="source sentences, one a line (default: Multi30k test2016.de)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the load phase")
    parser.add_argument("--max-lines", type=int, default=4, help="largest number of sentences in one request")
    parser.add_argument("--soak-minutes", type=float, default=5.0)
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--plateau-mib", type=float, default=16.0, help="most RSS growth over the last third")
    parser.add_argument(
        "--env", action="append", help='variables for the server, "NAME=VALUE NAME=VALUE" ("": none; repeatable)'
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("overrides", nargs="*", help="nmt-serve overrides, e.g. threads=2 search.beam_size=5")
    args = parser.parse_args()
    sources = Path(args.sources or Path(data_root()) / "multi30k" / "test2016.de")
    if not sources.is_file():
        sys.exit(f"serve_load.py: error: {sources} not found: pass --sources FILE (one sentence a line)")
    sentences = [line.strip() for line in sources.read_text(encoding="utf-8").splitlines() if line.strip()]
    results = []
    with tempfile.TemporaryDirectory(prefix="serve_load") as tmp:
        for i, env_text in enumerate(args.env or [""]):
            results.append(measure(args, env_text, sentences, Path(tmp) / f"serve{i}.log"))
            r = results[-1]
            print(json.dumps({k: v for k, v in r.items() if k != "samples"}), flush=True)
    print(f"\n{'server environment':<58} {'p50 ms':>7} {'p99 ms':>7} {'req/s':>6} {'errors':>6}  RSS MiB (soak)")
    for r in results:
        load, rss = r["load"], r["rss_mib"]
        thirds = " -> ".join(f"{x:.0f}" for x in rss["soak_thirds"])
        verdict = "plateau" if r["plateau"] else f"still growing ({rss['last_third_growth']:+.0f} in the last third)"
        print(
            f"{r['env']:<58} {load['p50_ms']:>7.0f} {load['p99_ms']:>7.0f} {load['requests_per_s']:>6.1f} "
            f"{load['errors'] + r['soak']['errors']:>6}  {rss['ready']:.0f} ready, {thirds}: {verdict}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
