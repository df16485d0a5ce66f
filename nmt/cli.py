"""Shared start-up of the command-line entry points: logging, threads, and one-line user errors."""

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


def set_threads(threads: int) -> None:
    """Use ``threads`` intra-op CPU threads (0 keeps PyTorch's default of one per core)."""
    if threads and threads > 0:
        torch.set_num_threads(int(threads))
