"""The lake on object storage (``s3://bucket/prefix``): publish by manifest, read through PyArrow.

S3 has no rename, so a file cannot be written under a temporary name and renamed into place.
A write instead puts each data object under its final key, and only after all of them a small
manifest object per data object; the manifest is what makes it visible::

    <prefix>/<table>/repo=<slug>/date=<day>/<name>.parquet            the data, written first
    <prefix>/<table>/_manifests/repo=<slug>/date=<day>/<name>.json    then this: now visible

Readers list a table's manifests and read only the objects they name (a manifest's key names
its object: the same path under the table, ``.json`` for ``.parquet``, so one LIST finds them
all; its body records the object's key, rows and write time for audits). A data object without
its manifest (a writer that died between the two PUTs) is never read, and the re-run writes
both again under the same deterministic names: a PUT replaces a whole object at once.

Reads: DuckDB's httpfs extension reads ``s3://`` URLs itself, but it is downloaded at run time
from extensions.duckdb.org, which machines without internet cannot reach. So the listed objects
become a PyArrow dataset on the same S3 filesystem, registered in DuckDB, which scans it with
column and filter pushdown. Where httpfs is installed the same list could go to
``read_parquet([...])``. A view sees the objects listed when it was made: connect again (or
``views.refresh``) to see later ones.

Configuration is the standard AWS environment, never the trajlake config or the lake:
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``; ``AWS_REGION`` (or
``AWS_DEFAULT_REGION``); ``AWS_ENDPOINT_URL_S3`` (or ``AWS_ENDPOINT_URL``) for S3-compatible
servers such as MinIO, e.g. ``http://minio:9000``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from trajlake.errors import LakeError
from trajlake.lake.files import PARQUET_SUFFIX, repo_slug
from trajlake.schemas import record_type, table_name

if TYPE_CHECKING:
    import pyarrow.dataset as ds

S3_SCHEME = "s3://"
MANIFESTS = "_manifests"
MANIFEST_SUFFIX = ".json"
DEFAULT_REGION = "us-east-1"  # S3-compatible servers ignore it; AWS needs one to sign

_CHECK = (
    "check AWS_ENDPOINT_URL (S3-compatible servers), the credentials in AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY, and that the bucket exists"
)


def is_object_store(root: object) -> bool:
    """Whether a lake root names object storage (``s3://…``) rather than a local directory."""
    return isinstance(root, str) and root.startswith(S3_SCHEME)


def s3_filesystem() -> pafs.S3FileSystem:
    """A PyArrow S3 filesystem configured from the standard AWS environment variables."""
    env = os.environ
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or ""
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
    # delayed open: an object smaller than one part goes up in a single PUT (no multipart)
    options: dict[str, object] = {"region": region, "allow_delayed_open": True}
    if endpoint:
        url = urlsplit(endpoint)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise LakeError(f"AWS_ENDPOINT_URL={endpoint!r} is not a URL: use http(s)://host:port")
        options |= {"endpoint_override": url.netloc, "scheme": url.scheme}
        options["region"] = region or DEFAULT_REGION
    return pafs.S3FileSystem(**options)


@dataclass(frozen=True)
class ObjectLake:
    """Reads and writes of a lake under ``s3://bucket/prefix`` (paths are ``bucket/key``)."""

    uri: str
    base: str
    filesystem: pafs.FileSystem

    @classmethod
    def open(cls, uri: str, filesystem: pafs.FileSystem | None = None) -> ObjectLake:
        bucket, _, prefix = uri.removeprefix(S3_SCHEME).partition("/")
        if not bucket:
            raise LakeError(f"lake root {uri!r} names no bucket: use s3://bucket/prefix")
        base = "/".join(part for part in (bucket, prefix.strip("/")) if part)
        return cls(S3_SCHEME + base, base, filesystem or s3_filesystem())

    def data_path(self, table: str, repo: str, day: dt.date, name: str) -> str:
        partition = f"repo={repo_slug(repo)}/date={day.isoformat()}"
        return f"{self.base}/{table}/{partition}/{name}{PARQUET_SUFFIX}"

    def manifest_path(self, data_path: str) -> str:
        table, _, rest = data_path.removeprefix(f"{self.base}/").partition("/")
        stem = rest.removesuffix(PARQUET_SUFFIX)
        return f"{self.base}/{table}/{MANIFESTS}/{stem}{MANIFEST_SUFFIX}"

    def publish(self, parts: Iterable[tuple[pa.Table, str]]) -> list[str]:
        """Write every data object, then each one's manifest; the ``s3://`` URIs of the data."""
        written: list[tuple[str, int]] = []
        for part, path in parts:
            sink = pa.BufferOutputStream()
            pq.write_table(part, sink, compression="zstd")
            self._put(path, sink.getvalue())
            written.append((path, part.num_rows))
        for path, rows in written:
            body = {
                "data": S3_SCHEME + path,
                "rows": rows,
                "written_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            }
            self._put(self.manifest_path(path), json.dumps(body).encode())
        return [S3_SCHEME + path for path, _ in written]

    def data_paths(self, table: str) -> list[str]:
        """The visible data objects of a table: those a manifest names."""
        root = f"{self.base}/{table}/{MANIFESTS}"
        selector = pafs.FileSelector(root, recursive=True, allow_not_found=True)
        try:
            infos = self.filesystem.get_file_info(selector)
        except OSError as e:
            raise LakeError(f"cannot list {S3_SCHEME}{root}: {e}; {_CHECK}") from e
        stems = [
            info.path.removeprefix(f"{root}/").removesuffix(MANIFEST_SUFFIX)
            for info in infos
            if info.type == pafs.FileType.File and info.path.endswith(MANIFEST_SUFFIX)
        ]
        return sorted(f"{self.base}/{table}/{stem}{PARQUET_SUFFIX}" for stem in stems)

    def dataset(self, topic: str) -> ds.Dataset | None:
        """The topic's visible objects as one dataset of its record schema (None: no objects).

        Columns an older object lacks read as NULL, as ``union_by_name`` does for local files.
        """
        import pyarrow.dataset as ds  # imports pandas (0.5 s): only lakes on S3 need it

        paths = self.data_paths(table_name(topic))
        if not paths:
            return None
        return ds.FileSystemDataset.from_paths(
            paths,
            schema=record_type(topic).arrow_schema(),
            format=ds.ParquetFileFormat(),
            filesystem=self.filesystem,
        )

    def register(self, con: duckdb.DuckDBPyConnection, topics: Iterable[str]) -> dict[str, str]:
        """Register each topic's dataset in `con`; topic -> the relation name to select from.

        Topics without visible objects are left out.
        """
        sources: dict[str, str] = {}
        for topic in topics:
            dataset = self.dataset(topic)
            if dataset is not None:
                sources[topic] = f"_objects_{table_name(topic)}"
                con.register(sources[topic], dataset)
        return sources

    def _put(self, path: str, data: bytes | pa.Buffer) -> None:
        """One object, whole: a single PUT (or a multipart upload completed in one request)."""
        try:
            with self.filesystem.open_output_stream(path) as out:
                out.write(data)
        except OSError as e:
            raise LakeError(f"cannot write {S3_SCHEME}{path}: {e}; {_CHECK}") from e
