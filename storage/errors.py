"""Errors raised by the storage package."""

from __future__ import annotations


class StorageError(Exception):
    """Root of every error the storage package raises on purpose."""


class SchemaMismatchError(StorageError):
    """Data does not match the versioned schema it is written or read as."""


class RootUnreachableError(StorageError):
    """The results root (a folder or a bucket) cannot be reached or written."""


class ReadOnlyQueryError(StorageError):
    """A SQL statement would write, attach, install or copy out; the catalog is read-only."""


class ManifestError(StorageError):
    """A run manifest is missing, unreadable or belongs to a different spec."""
