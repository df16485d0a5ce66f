"""Run a command and report the peak memory of its whole process tree (main process + workers).

    python scripts/measure_memory.py --mark "step 1 " -- nmt-train ... trainer.num_workers=2

Every 0.2 s it sums, over the command and all its descendants, RSS (counts shared pages, e.g. a
memory-mapped Arrow file, once per process: an upper bound) and PSS (shares them out: the memory the
tree really holds). ``--mark`` reports when a line matching it first appears in the output (e.g. the
first training step, for start-up time). Prints one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import threading
import time
from pathlib import Path


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            children = task / "children"
            if children.is_file():
                todo += [int(c) for c in children.read_text().split()]
    return pids


def _memory_kib(pid: int) -> tuple[int, int]:
    rss = pss = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return rss, pss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mark", help="regex: report the time its first match appears in the output")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    start = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    peak = {"rss_gib": 0.0, "pss_gib": 0.0}
    marked: list[float] = []

    def sample() -> None:
        while proc.poll() is None:
            rss, pss = _memory_kib(proc.pid)
            peak["rss_gib"] = max(peak["rss_gib"], rss / 2**20)
            peak["pss_gib"] = max(peak["pss_gib"], pss / 2**20)
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    pattern = re.compile(args.mark) if args.mark else None
    for line in proc.stdout:
        print(line, end="")
        if pattern and not marked and pattern.search(line):
            marked.append(time.monotonic() - start)
    proc.wait()
    result = {
        "exit_status": proc.returncode,
        "wall_s": round(time.monotonic() - start, 1),
        "mark_s": round(marked[0], 1) if marked else None,
        "peak_tree_rss_gib": round(peak["rss_gib"], 2),
        "peak_tree_pss_gib": round(peak["pss_gib"], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
