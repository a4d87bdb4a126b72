"""The results root as a filesystem: a local folder or an ``s3://bucket/prefix``.

All storage I/O goes through :class:`Root`, which wraps ``pyarrow.fs`` so the same code writes
to a folder on a laptop and to a bucket on a cluster. Writes are atomic: locally a temporary
name in the same folder is renamed over the target; on an object store the object is uploaded
in one PUT and so becomes visible only when complete.

S3 settings come from the environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_REGION``) and an endpoint override from ``VALUESCOPE_S3_ENDPOINT``
or ``AWS_ENDPOINT_URL`` (for S3-compatible servers such as MinIO). With an endpoint override
the EC2 instance-metadata lookup is switched off (``AWS_EC2_METADATA_DISABLED``; off a cloud VM
it only stalls) and the region defaults to ``us-east-1``. Buckets are never created: a missing
bucket is an error that names it.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from storage.errors import RootUnreachableError

TMP_PREFIX = ".tmp-"


def s3_endpoint() -> str | None:
    """The S3 endpoint override from the environment, if any (``http(s)://host:port``)."""
    return os.environ.get("VALUESCOPE_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL") or None


def polars_s3_options() -> dict[str, str]:
    """The same S3 settings as :func:`_s3_filesystem`, in the form polars' object store reads
    (credentials still come from the usual ``AWS_*`` variables)."""
    options: dict[str, str] = {}
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    endpoint = s3_endpoint()
    if endpoint:
        options["aws_endpoint_url"] = endpoint.rstrip("/")
        options["aws_allow_http"] = "true" if endpoint.startswith("http://") else "false"
        region = region or "us-east-1"
    if region:
        options["aws_region"] = region
    return options


def _s3_filesystem() -> pafs.S3FileSystem:
    endpoint = s3_endpoint()
    kwargs: dict[str, object] = {}
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        kwargs["endpoint_override"] = (host or scheme).rstrip("/")
        kwargs["scheme"] = scheme if host else "https"
        # The AWS SDK otherwise asks the EC2 metadata service for credentials and region, which
        # off a cloud VM only stalls each new client for seconds.
        os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
        region = region or "us-east-1"
    if region:
        kwargs["region"] = region
    kwargs["connect_timeout"] = 5.0
    kwargs["request_timeout"] = 30.0
    kwargs["allow_bucket_creation"] = False
    # Delayed open: a small object is uploaded by one PutObject when the stream closes (not
    # create/upload/complete multipart), and an upload that fails leaves no object behind.
    kwargs["allow_delayed_open"] = True
    return pafs.S3FileSystem(**kwargs)  # type: ignore[arg-type]


def _s3_reason(exc: Exception, endpoint: str | None) -> str:
    """A short reason for an S3 failure (the SDK's message is long and buries it)."""
    text = str(exc)
    where = f"the S3 endpoint {endpoint}" if endpoint else "S3"
    if "NO_SUCH_BUCKET" in text or "bucket does not exist" in text.lower():
        return f"the bucket does not exist at {where} (buckets are never created for you)"
    if "NETWORK_CONNECTION" in text or "Could not connect" in text or "curlCode: 28" in text:
        return f"cannot connect to {where} (check VALUESCOPE_S3_ENDPOINT / AWS_ENDPOINT_URL)"
    if "ACCESS_DENIED" in text or "AccessDenied" in text or "INVALID_ACCESS_KEY" in text:
        return f"access denied by {where} (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
    return text


class Root:
    """A results root: ``uri`` is a local path or ``s3://bucket/prefix``."""

    def __init__(self, uri: str | os.PathLike[str]) -> None:
        text = os.fspath(uri)
        self.uri = text
        if text.startswith("s3://"):
            self.fs: pafs.FileSystem = _s3_filesystem()
            self.base = text[len("s3://") :].rstrip("/")
            self.is_local = False
        elif "://" in text:
            raise RootUnreachableError(
                f"results root {text!r}: unsupported scheme; use a local folder or s3://bucket/prefix"
            )
        else:
            self.fs = pafs.LocalFileSystem()
            self.base = str(Path(text).expanduser().resolve())
            self.is_local = True

    def __repr__(self) -> str:
        return f"Root({self.uri!r})"

    def path(self, *parts: str) -> str:
        """Filesystem path of a location under the root."""
        return "/".join([self.base, *parts])

    def display(self, path: str) -> str:
        """A path as the user would write it (with ``s3://`` for buckets)."""
        return path if self.is_local else f"s3://{path}"

    def _guard(self, action: str, path: str, exc: Exception) -> RootUnreachableError:
        reason = str(exc) if self.is_local else _s3_reason(exc, s3_endpoint())
        return RootUnreachableError(
            f"results root {self.uri!r}: cannot {action} {self.display(path)!r}: {reason}; "
            "check that the folder or bucket exists and the credentials allow it"
        )

    def exists(self, path: str) -> bool:
        try:
            return self.fs.get_file_info(path).type != pafs.FileType.NotFound
        except OSError as exc:
            raise self._guard("look up", path, exc) from None

    def makedirs(self, path: str) -> None:
        try:
            self.fs.create_dir(path, recursive=True)
        except OSError as exc:
            raise self._guard("create", path, exc) from None

    def read_bytes(self, path: str) -> bytes:
        try:
            with self.fs.open_input_stream(path) as f:
                return bytes(f.read())
        except FileNotFoundError:
            raise
        except OSError as exc:
            if not self.exists(path):
                raise FileNotFoundError(self.display(path)) from None
            raise self._guard("read", path, exc) from None

    def write_atomic(self, path: str, data: bytes | pa.Buffer) -> None:
        """Write ``data`` so that readers see either the old state or the whole new file."""
        parent = path.rsplit("/", 1)[0]
        try:
            if self.is_local:
                os.makedirs(parent, exist_ok=True)
                # The temporary name must not end like the target: readers glob "*.parquet"
                # (DuckDB matches dot-files too) and would open a half-written file.
                tmp = f"{parent}/{TMP_PREFIX}{path.rsplit('/', 1)[1]}.{uuid.uuid4().hex}.partial"
                try:
                    with open(tmp, "wb") as f:
                        f.write(memoryview(data))
                        f.flush()
                        os.fsync(f.fileno())
                    os.replace(tmp, path)
                except BaseException:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
                    raise
            else:
                # One PutObject (multipart for large files, completed only at the end): the
                # object appears only once the whole upload succeeded, and a failed upload
                # leaves no object, so a part file never exists half-written.
                with self.fs.open_output_stream(path) as f:
                    f.write(data)
        except OSError as exc:
            raise self._guard("write", path, exc) from None

    def list_files(self, prefix: str, suffix: str = "") -> list[str]:
        """Files under ``prefix`` (recursive) ending with ``suffix``, temporary files excluded."""
        return sorted(self.file_sizes(prefix, suffix))

    def file_sizes(self, prefix: str, suffix: str = "") -> dict[str, int]:
        """Like :meth:`list_files`, with each file's size in bytes (one listing, no reads)."""
        try:
            infos = self.fs.get_file_info(
                pafs.FileSelector(prefix, recursive=True, allow_not_found=True)
            )
        except OSError as exc:
            raise self._guard("list", prefix, exc) from None
        return {
            info.path: int(info.size or 0)
            for info in infos
            if info.type == pafs.FileType.File
            and info.path.endswith(suffix)
            and not info.base_name.startswith(TMP_PREFIX)
        }

    def delete(self, path: str) -> None:
        try:
            self.fs.delete_file(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._guard("delete", path, exc) from None

    def check_readable(self) -> None:
        """Fail with a clear message when the root's folder or bucket does not exist.

        On S3 a missing bucket would otherwise list as empty and every query return nothing.
        """
        if self.is_local:
            if not self.exists(self.base):
                raise RootUnreachableError(
                    f"results root {self.uri!r} does not exist; run something first "
                    "(e.g. `valuescope run`) or pass --root"
                )
            if self.fs.get_file_info(self.base).type != pafs.FileType.Directory:
                raise RootUnreachableError(
                    f"results root {self.uri!r} is a file, not a folder; pass the folder that "
                    "holds the results with --root"
                )
            return
        bucket = self.base.split("/", 1)[0]
        try:
            info = self.fs.get_file_info(bucket)
        except OSError as exc:
            raise self._guard("look up", bucket, exc) from None
        if info.type == pafs.FileType.NotFound:
            where = f" at the S3 endpoint {s3_endpoint()}" if s3_endpoint() else ""
            raise RootUnreachableError(
                f"results root {self.uri!r}: the bucket {bucket!r} does not exist{where}; "
                "check the bucket name, VALUESCOPE_S3_ENDPOINT and AWS_REGION"
            )

    def check_writable(self) -> None:
        """Fail early, with a clear message, when the root cannot be written."""
        probe = self.path(".valuescope-probe")
        self.write_atomic(probe, b"ok")
        self.delete(probe)
