"""User-facing errors: the CLI prints their message on one line instead of a traceback."""

from __future__ import annotations


class NmtError(Exception):
    """An error caused by input or configuration that the user can fix; the message says how."""


class DataError(NmtError):
    """Missing, misaligned or undecodable data files."""


class ConfigError(NmtError):
    """An option that does not exist, does not apply, or contradicts another."""


class CheckpointError(NmtError):
    """A checkpoint that is missing, truncated, corrupt or from an incompatible version."""
