"""A run's raw objects gathered into a few bundles, which Spark then reads as its files.

A run claims up to thousands of small objects (a 100-event batch is ~7 KB of gzip), and Sail
opens each as a file of its own: ~500 objects/s here, at ~1.75 ms of SeaweedFS's CPU each, so
10,000 objects took 20 s to read before any parsing. Fetched from threads through obstore
(`ObjectStore.fetch`), the same objects arrive at ~2,400/s for a quarter of the store's CPU.

So bronze fetches the run's objects itself and writes them, byte for byte, into a few
multi-member gzip files under the run's staging folder (spark_jobs.staging):

    _scratch/runs/<run id>/raw/part-00000.jsonl.gz

A gzip file is a series of members (RFC 1952, 2.2), and Sail, Hadoop's codec and Python's gzip
read every member, so a bundle reads as the concatenation of its objects' lines. Every line
names its object and line number itself (docs/CONTRACTS.md), so what bronze derives from the
bundles is what it derived from the objects. On the way each object is inflated once to check
it (ISA-L, ~0.4 s per million events):

- one whose text does not end in a newline gets a one-newline member after it, so its last
  line is never glued to the next object's first;
- one whose gzip is damaged gives the lines that inflate (a cut last line is then quarantined
  as malformed, and bronze's count against the registry quarantines the missing lines);
- a missing or empty one gives nothing (bronze quarantines it as `missing_lines`).

The bundles are scratch: `staging.clear` removes them with the run's other staged frames, and a
retried stage writes them again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import cast

from isal import igzip, isal_zlib

from lake_config.settings import Settings
from lake_config.storage import ObjectStore
from spark_jobs import staging

NAME = "raw"
FETCH_THREADS = 16  # 8-32 fetch at ~2,100-2,500 objects/s from SeaweedFS here; 2 at ~1,400
BUNDLE_BYTES = 8 * 2**20  # of gzip: 1M events in 100-event objects make ~9 bundles
_NEWLINE = igzip.compress(b"\n")
_GZIP_WBITS = 16 + isal_zlib.MAX_WBITS
_SALVAGE_CHUNK = 4096
# The stub types `isal_zlib.error` as an instance; it is the exception class (IsalError).
_INFLATE_ERROR = cast(type[Exception], isal_zlib.error)


def write(settings: Settings, run_id: str, object_keys: Sequence[str]) -> list[str]:
    """Bundle the objects at `object_keys`, in that order; returns the bundles' keys (none when
    no object had a line). A failure other than a missing object raises StorageError."""
    store = ObjectStore(settings)
    prefix = f"{staging.folder(run_id)}{NAME}/"
    bundles: list[str] = []
    members: list[bytes] = []
    size = 0

    def flush() -> None:
        nonlocal members, size
        key = f"{prefix}part-{len(bundles):05d}.jsonl.gz"
        store.put(key, b"".join(members), content_type="application/gzip", content_encoding=None)
        bundles.append(key)
        members, size = [], 0

    try:
        with ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="bronze-fetch") as pool:
            for data in _fetched(pool, store, object_keys):
                member = checked(data) if data is not None else b""
                if member:
                    members.append(member)
                    size += len(member)
                if size >= BUNDLE_BYTES:
                    flush()
        if members:
            flush()
    finally:
        store.close()
    return bundles


def checked(data: bytes) -> bytes:
    """A raw object's bytes as gzip members whose text ends in a newline (b"" for no text)."""
    try:
        text = igzip.decompress(data)
    except (OSError, EOFError, _INFLATE_ERROR):
        salvaged = _salvage(data)
        return igzip.compress(salvaged + b"\n") if salvaged else b""
    if not text:
        return b""
    return data if text.endswith(b"\n") else data + _NEWLINE


def _salvage(data: bytes) -> bytes:
    """What inflates of a damaged gzip stream before the damage (fed in small chunks, so an
    error loses at most the chunk it happened in)."""
    inflater = isal_zlib.decompressobj(_GZIP_WBITS)
    out: list[bytes] = []
    try:
        for start in range(0, len(data), _SALVAGE_CHUNK):
            out.append(inflater.decompress(data[start : start + _SALVAGE_CHUNK]))
    except _INFLATE_ERROR:
        pass
    return b"".join(out)


def _fetched(
    pool: ThreadPoolExecutor, store: ObjectStore, keys: Sequence[str]
) -> Iterator[bytes | None]:
    """Each object's bytes (None when missing), in the order of `keys`, at most a few windows
    of fetches ahead of the consumer (a run's objects need not fit in memory at once)."""
    window: deque[Future[bytes | None]] = deque()
    for key in keys:
        window.append(pool.submit(store.fetch, key))
        if len(window) >= 4 * FETCH_THREADS:
            yield window.popleft().result()
    while window:
        yield window.popleft().result()
