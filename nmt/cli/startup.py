"""Shared start-up of the command-line entry points: CPU threads, an opt-in allocator setting, one-line
user errors."""

from __future__ import annotations

import functools
import os
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

    With the environment variable ``NMT_KEEP_FREED_MEMORY=1`` (off by default) also
    :func:`keep_freed_memory`, which trades a process that holds its peak memory until it exits for
    fewer page faults on large tensors.
    """
    if threads and threads > 0:
        torch.set_num_threads(int(threads))
    if os.environ.get("NMT_KEEP_FREED_MEMORY") == "1":
        keep_freed_memory()


def keep_freed_memory() -> None:
    """Tell glibc's allocator to serve large allocations from its heap and never give freed memory back.

    By default glibc ``mmap``s every large block and unmaps it when freed, so a training step page-faults
    and zero-fills its largest tensors (e.g. a batch's logits) again each time. Linux with glibc only
    (``mallopt`` through ctypes); elsewhere nothing changes. Opt-in (see :func:`setup_cpu`): the process
    keeps its peak memory until it exits.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # another C library (e.g. musl): keep its defaults
        return
    m_trim_threshold, m_mmap_max = -1, -4
    libc.mallopt(m_mmap_max, 0)
    libc.mallopt(m_trim_threshold, 2**31 - 1)
