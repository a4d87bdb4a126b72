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


class NameCollisionError(StorageError):
    """Two names (models or runs) would be stored under one folder."""


class CorruptFileError(StorageError):
    """A Parquet file under the root is damaged (truncated, not Parquet, or not what was
    committed). ``path`` is the file as the user would write it; ``repair`` says how to fix it."""

    def __init__(self, message: str, *, path: str, problem: str, repair: str) -> None:
        super().__init__(message)
        self.path = path
        self.problem = problem
        self.repair = repair


class QueryLimitError(StorageError):
    """A SQL query ran past the catalog's statement timeout or memory cap."""
