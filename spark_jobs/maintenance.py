"""Upkeep of the declared lake tables with delta-rs: compaction, vacuum and history.

Sail 0.7.2 cannot run OPTIMIZE, VACUUM or DESCRIBE HISTORY, so these go through `deltalake`
(delta-rs) on the same bucket, with the storage options of `lake_config.storage`. They live in
`spark_jobs` although they use no Spark: they write to the tables the pipeline writes, and they
must queue behind its commits. Sail fails a commit that races another one, so optimize and
vacuum hold the table's commit lock (`lake_config.registry.commit_lock`) like every MERGE;
history only reads.

Vacuum removes files no longer referenced by the versions inside the retention window; a reader
still on an older version (a long query, `versionAsOf`) loses its files, hence the 7-day
default and the explicit `force` to go below it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from lake_config.registry import commit_lock
from lake_config.settings import Settings
from lake_config.storage import delta_storage_options, lake_uri
from lake_config.tables import TABLES, Column, Table, table
from spark_jobs.errors import MaintenanceError

if TYPE_CHECKING:
    from deltalake import DeltaTable

DEFAULT_RETENTION_HOURS = 168  # Delta's own default: readers a week behind still find files
STAGING_RETENTION = timedelta(hours=24)  # a run's staged frames outlive any live stage


@dataclass(frozen=True)
class Compaction:
    """What optimize did to one table."""

    table: str
    version: int  # table version after the run (unchanged when nothing needed compacting)
    files_removed: int
    files_added: int
    partitions_optimized: int


@dataclass(frozen=True)
class Vacuum:
    """What vacuum removed (or, with dry_run, would remove) from one table."""

    table: str
    retention_hours: int
    dry_run: bool
    files: tuple[str, ...]


@dataclass(frozen=True)
class Commit:
    """One entry of a table's history, newest first."""

    table: str
    version: int
    timestamp: datetime
    operation: str
    parameters: dict[str, Any]
    metrics: dict[str, Any]


def selected(name: str | None = None) -> tuple[Table, ...]:
    """Every declared table, or only the one called `name` (MaintenanceError when unknown)."""
    if name is None:
        return TABLES
    try:
        return (table(name),)
    except KeyError as exc:
        raise MaintenanceError(str(exc.args[0])) from exc


def optimize(settings: Settings, tables: Sequence[Table] = TABLES) -> list[Compaction]:
    """Compact small files of each existing table into larger ones (bin-packing)."""
    results = []
    for t in tables:
        with commit_lock(settings, _spark_uri(settings, t)):
            dt = _open(settings, t)
            if dt is None:
                continue
            metrics = _delta_call(t, "optimize", dt.optimize.compact)
            results.append(
                Compaction(
                    table=t.name,
                    version=dt.version(),
                    files_removed=int(metrics.get("numFilesRemoved", 0)),
                    files_added=int(metrics.get("numFilesAdded", 0)),
                    partitions_optimized=int(metrics.get("partitionsOptimized", 0)),
                )
            )
    return results


def vacuum(
    settings: Settings,
    tables: Sequence[Table] = TABLES,
    *,
    retention_hours: int = DEFAULT_RETENTION_HOURS,
    dry_run: bool = False,
    force: bool = False,
) -> list[Vacuum]:
    """Delete files that no version inside `retention_hours` references.

    Below the 7-day default only with `force`: readers of older versions lose their files.
    """
    if retention_hours < 0:
        raise MaintenanceError(f"retention must be 0 hours or more, not {retention_hours}")
    if retention_hours < DEFAULT_RETENTION_HOURS and not force:
        raise MaintenanceError(
            f"retention {retention_hours} h is below {DEFAULT_RETENTION_HOURS} h; readers of "
            "older versions would lose their files (pass force to do it anyway)"
        )
    results = []
    for t in tables:
        with commit_lock(settings, _spark_uri(settings, t)):
            dt = _open(settings, t)
            if dt is None:
                continue
            files = _delta_call(
                t,
                "vacuum",
                lambda dt=dt: dt.vacuum(
                    retention_hours=retention_hours,
                    dry_run=dry_run,
                    enforce_retention_duration=not force,
                ),
            )
        results.append(Vacuum(t.name, retention_hours, dry_run, tuple(sorted(files))))
    return results


def sweep_staging(settings: Settings, *, older_than: timedelta = STAGING_RETENTION) -> int:
    """Delete the staged frames (spark_jobs.staging) of runs that died before clearing them:
    folders untouched for `older_than` whose run holds no claim. Returns objects removed."""
    from lake_config.registry import Registry
    from spark_jobs import staging

    with Registry(settings, max_size=1) as registry:
        live = registry.active_runs()
    return staging.sweep(settings, older_than=older_than, keep=live)


def history(settings: Settings, t: Table, *, limit: int = 20) -> list[Commit]:
    """The table's last `limit` commits, newest first (empty when the table does not exist)."""
    dt = _open(settings, t)
    if dt is None:
        return []
    entries = _delta_call(t, "history", lambda: dt.history(limit))
    return [
        Commit(
            table=t.name,
            version=int(e["version"]),
            timestamp=datetime.fromtimestamp(int(e["timestamp"]) / 1000, tz=UTC),
            operation=str(e.get("operation", "")),
            parameters=dict(e.get("operationParameters") or {}),
            metrics=dict(e.get("operationMetrics") or {}),
        )
        for e in entries
    ]


# Spark SQL types of the declarations -> Delta primitive type names.
_DELTA_TYPES = {
    "string": "string",
    "int": "integer",
    "bigint": "long",
    "double": "double",
    "boolean": "boolean",
    "timestamp": "timestamp",
    "date": "date",
}


def add_columns(settings: Settings, t: Table, columns: Sequence[Column]) -> list[str]:
    """Schema evolution: add declared `columns` the Delta table lacks, as one metadata-only
    commit (no data file is rewritten; existing rows read null). Returns the names added.

    Through delta-rs because Sail 0.7.2 supports neither ALTER TABLE ADD COLUMNS nor
    `mergeSchema` on MERGE (an append with mergeSchema leaves the schema as it was, and a MERGE
    then drops the new columns silently). A column declared NOT NULL cannot be added to a table
    holding rows, so it is refused. Callers hold the table's commit lock.
    """
    from deltalake.schema import Field, PrimitiveType

    dt = _open(settings, t)
    if dt is None or not columns:
        return []
    present = {f.name for f in dt.schema().fields}
    missing = [c for c in columns if c.name not in present]
    if not missing:
        return []
    required = [c.name for c in missing if not c.nullable]
    if required:
        raise MaintenanceError(
            f"{t.name}: new columns {required} are declared NOT NULL; a column added to a table "
            "with rows must be nullable"
        )
    unknown = [c.type for c in missing if c.type not in _DELTA_TYPES]
    if unknown:
        raise MaintenanceError(f"{t.name}: cannot add columns of types {unknown}")
    fields = [Field(c.name, PrimitiveType(_DELTA_TYPES[c.type]), nullable=True) for c in missing]
    _delta_call(t, "adding columns", lambda: dt.alter.add_columns(fields))
    return [c.name for c in missing]


def delete_rows(settings: Settings, t: Table, predicate: str) -> int:
    """Delete the rows matching a SQL `predicate` in one commit; returns how many went.

    Through delta-rs because Sail 0.7.2 cannot run DELETE. Only `tlake reprocess` (which then
    re-derives what it deleted) and tests simulating a lost commit delete rows; the pipeline
    itself only MERGEs. Holds the table's commit lock.
    """
    dt = _open(settings, t)
    if dt is None:
        return 0
    with commit_lock(settings, _spark_uri(settings, t)):
        dt.update_incremental()  # the newest version, now that no other commit can land
        metrics = _delta_call(t, "deleting rows", lambda: dt.delete(predicate))
    return int(metrics.get("num_deleted_rows", 0) or 0)


def _spark_uri(settings: Settings, t: Table) -> str:
    """The URI the pipeline's MERGEs lock on, so both queue on one lock per table."""
    from lake_config.spark import table_uri

    return table_uri(settings, t)


def _open(settings: Settings, t: Table) -> DeltaTable | None:
    """The table through delta-rs, or None when nothing was ever written there."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    uri = lake_uri(settings, t.path)
    try:
        return DeltaTable(uri, storage_options=delta_storage_options(settings))
    except TableNotFoundError:
        return None
    except Exception as exc:  # delta-rs raises OSError, DeltaError, ... for storage failures
        raise MaintenanceError(f"cannot open {t.name} at {uri}: {exc}") from exc


def _delta_call(t: Table, what: str, call: Any) -> Any:
    try:
        return call()
    except Exception as exc:  # the one boundary where delta-rs errors are mapped
        raise MaintenanceError(f"{what} of {t.name} failed: {exc}") from exc
