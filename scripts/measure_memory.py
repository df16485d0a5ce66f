"""Run a command and report the peak memory of its whole process tree (main process + workers).

    python scripts/measure_memory.py --mark "step 1 " -- nmt-train ... trainer.num_workers=2

Every 0.2 s it sums, over the command and all its descendants, RSS (counts shared pages, e.g. a
memory-mapped Arrow file, once per process: an upper bound), PSS (shares them out: the memory the
tree really holds) and anonymous memory (heap and stacks: what the kernel cannot drop and re-read from
a file); it also keeps the largest RSS of a single process. ``--mark`` reports when a line matching it
first appears in the output (e.g. the first training step, for start-up time). Prints one JSON line at
the end.
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


FIELDS = {"Rss:": "rss", "Pss:": "pss", "Anonymous:": "anon"}


def _memory_kib(pid: int) -> dict[str, int]:
    """Tree totals of RSS, PSS and anonymous memory, plus the largest single-process RSS (KiB)."""
    total = dict.fromkeys([*FIELDS.values(), "process_rss"], 0)
    for p in _tree(pid):
        try:
            lines = Path(f"/proc/{p}/smaps_rollup").read_text().splitlines()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        for line in lines:
            key, value = line.split()[:2]
            if key in FIELDS:
                total[FIELDS[key]] += int(value)
                if key == "Rss:":
                    total["process_rss"] = max(total["process_rss"], int(value))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mark", help="regex: report the time its first match appears in the output")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    start = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    peak = dict.fromkeys([*FIELDS.values(), "process_rss"], 0)
    marked: list[float] = []

    def sample() -> None:
        while proc.poll() is None:
            for key, kib in _memory_kib(proc.pid).items():
                peak[key] = max(peak[key], kib)
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
        **{f"peak_tree_{key}_gib": round(peak[key] / 2**20, 2) for key in FIELDS.values()},
        "peak_process_rss_gib": round(peak["process_rss"] / 2**20, 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
