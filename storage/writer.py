"""Atomic Parquet writing.

A part file is assembled in memory (shards are a few thousand rows) and handed to
:meth:`storage.fs.Root.write_atomic`, so a reader never sees half a file and a crash mid-write
leaves nothing visible. Right after the file, its commit record (row count and size,
:mod:`storage.integrity`) is written next to it, so a file damaged later is told apart from the
one that was committed: resume skips only shards whose part is whole.
"""

from __future__ import annotations

from types import TracebackType

import pyarrow as pa
import pyarrow.parquet as pq

from storage.errors import StorageError
from storage.fs import Root
from storage.integrity import write_record
from storage.schemas import check_schema, schema_for

COMPRESSION = "zstd"


class PartWriter:
    """Write one Parquet file atomically; use as a context manager.

    Batches are appended with :meth:`write`; the file becomes visible only when the ``with``
    block ends without an exception. On an exception nothing is written.

    Example::

        with PartWriter(root, layout.part(model, 0, 7), "comparisons") as w:
            w.write(table)
    """

    def __init__(self, root: Root, path: str, table: str) -> None:
        self.root = root
        self.path = path
        self.table = table
        self.schema = schema_for(table)
        self._sink = pa.BufferOutputStream()
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(
            self._sink, self.schema, compression=COMPRESSION
        )
        self.rows = 0

    def write(self, data: pa.Table | pa.RecordBatch) -> None:
        """Append rows (must match the table's schema)."""
        if self._writer is None:
            raise StorageError(f"part writer for {self.root.display(self.path)!r} is closed")
        if isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        check_schema(self.table, data)
        data = data.select(self.schema.names).cast(self.schema)
        self._writer.write_table(data)
        self.rows += data.num_rows

    def commit(self) -> None:
        """Finish the file and make it visible in one atomic step."""
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        data = self._sink.getvalue()
        self.root.write_atomic(self.path, data)
        write_record(self.root, self.path, self.rows, data.size)

    def abort(self) -> None:
        """Drop everything written so far; nothing becomes visible."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._sink = pa.BufferOutputStream()

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_table(root: Root, path: str, table: str, data: pa.Table) -> None:
    """Write a whole table to ``path`` atomically."""
    with PartWriter(root, path, table) as writer:
        writer.write(data)


def read_table(root: Root, path: str) -> pa.Table:
    """Read one Parquet file under the root."""
    return pq.read_table(path, filesystem=root.fs)
