"""Shared start-up of the command-line entry points: CPU threads and one-line user errors."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import torch

from nmt.errors import NmtError


def report_user_errors(prog: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Turn an NmtError into ``<prog>: error: <message>`` on stderr and exit status 2 (no traceback)."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except NmtError as e:
                print(f"{prog}: error: {e}", file=sys.stderr)
                sys.exit(2)

        return run

    return wrap


def setup_cpu(threads: int) -> None:
    """Use ``threads`` intra-op CPU threads (0 keeps PyTorch's default of one per core).

    glibc's allocator is left as it is. To serve large tensors from a retained heap instead of fresh
    ``mmap``s (fewer page faults, a process that keeps its peak memory until it exits), set glibc's own
    variables before starting: ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647``.
    """
    if threads and threads > 0:
        torch.set_num_threads(int(threads))
