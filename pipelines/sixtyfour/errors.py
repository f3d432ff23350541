"""Failures a sync can meet, each with the exit code the CLI contract gives it."""

from __future__ import annotations


class SyncError(Exception):
    """A failure with a one-line message for the user and a distinct exit code."""

    exit_code = 1


class ConfigError(SyncError):
    """Missing or invalid configuration (exit 2)."""

    exit_code = 2


class WarehouseMemoryError(SyncError):
    """DuckDB needed more memory than its configured limit allows (exit 2: raise the limit)."""

    exit_code = 2


class AuthError(SyncError):
    """The API refused the key (401/403) (exit 2)."""

    exit_code = 2


class ApiResponseError(SyncError):
    """The API answered with something unusable: 400/422 or a malformed body (exit 5)."""

    exit_code = 5


class ApiUnavailableError(SyncError):
    """The API could not be reached or kept failing after every retry (exit 6)."""

    exit_code = 6


class SyncLockedError(SyncError):
    """Another sync of the same pipeline holds the lock (exit 4)."""

    exit_code = 4


class DestinationBusyError(SyncError):
    """The warehouse stayed locked by another process past the configured wait (exit 7)."""

    exit_code = 7


class WarehouseUnreachableError(SyncError):
    """The warehouse's server could not be reached: refused, timed out, unknown host (exit 8)."""

    exit_code = 8
