"""The catalog: every lake table and every analytics relation, generated from the declarations.

Delta tables come from `lake_config.tables.TABLES` (name, layer, grain, columns, merge keys,
partitioning, owner stage, quality expectations); with statistics, their row count and
freshness come from the Delta log (delta-rs), read for all tables at once in the threadpool.
Analytics relations come from PostgreSQL's information_schema, described by the gold table they
mirror or the dataset declaration of `ingest_api.datasets`; with statistics, `count(*)` and the
max of `updated_at` (when written by a mirror) or of the time column (views).

Consequence: statistics read every table's Delta log and count every analytics relation, so the
catalog with statistics costs about a second on a small lake and grows with the lake; the
public HTML page (no key) shows no statistics and reads no Delta log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from psycopg import sql
from starlette.concurrency import run_in_threadpool

from ingest_api import lakeread
from ingest_api.datasets import DATASETS, SCHEMA, Dataset, Query, column_description, fetch
from ingest_api.read_schemas import (
    Catalog,
    CatalogColumn,
    CatalogExpectation,
    CatalogTable,
)
from lake_config.registry import Registry
from lake_config.settings import Settings
from lake_config.storage import lake_uri
from lake_config.tables import TABLES, Table

# Composed (not SQL) like every other query of datasets.fetch.
_RELATIONS = sql.SQL(
    """
    select c.table_name, t.table_type, c.column_name, c.data_type, c.is_nullable
    from information_schema.columns as c
    join information_schema.tables as t
        on t.table_schema = c.table_schema and t.table_name = c.table_name
    where c.table_schema = %s
    order by c.table_name, c.ordinal_position
    """
).format()
_KINDS = {"BASE TABLE": "table", "VIEW": "view"}


async def build(settings: Settings, db: Registry, *, statistics: bool) -> Catalog:
    """The catalog; with `statistics`, row counts, freshness and existence too."""
    lake = [_lake_entry(settings, t) for t in TABLES]
    relations = await run_in_threadpool(_relations, db)
    analytics = [_analytics_entry(name, kind, cols) for name, (kind, cols) in relations.items()]
    if statistics:
        stats = await asyncio.gather(
            *(run_in_threadpool(lakeread.table_stats, settings, t) for t in TABLES)
        )
        lake = [_with_lake_stats(entry, s) for entry, s in zip(lake, stats, strict=True)]
        analytics = await run_in_threadpool(_with_analytics_stats, db, analytics)
    return Catalog(
        generated_at=datetime.now(UTC), with_statistics=statistics, tables=[*lake, *analytics]
    )


def _lake_entry(settings: Settings, t: Table) -> CatalogTable:
    return CatalogTable(
        name=t.name,
        layer=t.layer,
        kind="delta",
        description=t.description,
        grain=t.grain,
        owner_stage=t.owner_stage or None,
        location=lake_uri(settings, t.path),
        columns=[
            CatalogColumn(name=c.name, type=c.type, description=c.description, nullable=c.nullable)
            for c in t.columns
        ],
        merge_keys=list(t.merge_keys),
        partition_by=list(t.partition_by),
        expectations=[
            CatalogExpectation(rule=e.rule, column=e.column, dimension=e.dimension, action=e.action)
            for e in t.expectations
        ],
        mirrors=None,
        dataset=None,
        exists=None,
        row_count=None,
        freshness=None,
        freshness_from=None,
        version=None,
    )


def _with_lake_stats(entry: CatalogTable, stats: lakeread.TableStats) -> CatalogTable:
    return entry.model_copy(
        update={
            "exists": stats.exists,
            "row_count": stats.row_count,
            "freshness": stats.last_commit_at,
            "freshness_from": "delta_log" if stats.exists else None,
            "version": stats.version,
        }
    )


Relation = tuple[str, list[dict[str, Any]]]


def _relations(db: Registry) -> dict[str, Relation]:
    """analytics relation name -> (table or view, its columns in order)."""
    (rows,) = fetch(db, (_RELATIONS, [SCHEMA]))
    found: dict[str, Relation] = {}
    for r in rows:
        kind = _KINDS.get(r["table_type"], "table")
        found.setdefault(r["table_name"], (kind, []))[1].append(r)
    return found


def _analytics_entry(name: str, kind: str, columns: list[dict[str, Any]]) -> CatalogTable:
    ds = DATASETS.get(name)
    mirrors = ds.mirrors if ds else None
    return CatalogTable(
        name=f"{SCHEMA}.{name}",
        layer=SCHEMA,
        kind=kind,  # type: ignore[arg-type]
        description=ds.description if ds else "",
        grain=_grain(ds),
        owner_stage=ds.owner_stage if ds else None,
        location=f"postgresql: {SCHEMA}.{name}",
        columns=[
            CatalogColumn(
                name=c["column_name"],
                type=c["data_type"],
                description=column_description(ds, c["column_name"]) if ds else "",
                nullable=c["is_nullable"] == "YES",
            )
            for c in columns
        ],
        merge_keys=list(mirrors.merge_keys) if mirrors else [],
        partition_by=[],
        expectations=[],
        mirrors=mirrors.name if mirrors else None,
        dataset=ds.name if ds else None,
        exists=None,
        row_count=None,
        freshness=None,
        freshness_from=None,
        version=None,
    )


def _grain(ds: Dataset | None) -> str | None:
    if ds is None:
        return None
    if ds.mirrors is not None:
        return ds.mirrors.grain
    return f"one row per ({', '.join(ds.order)})"


def _freshness_column(entry: CatalogTable) -> str | None:
    names = {c.name for c in entry.columns}
    if "updated_at" in names:
        return "updated_at"
    ds = DATASETS.get(entry.dataset or "")
    return ds.time if ds is not None and ds.time in names else None


def _with_analytics_stats(db: Registry, entries: Sequence[CatalogTable]) -> list[CatalogTable]:
    """`entries` with count(*) and freshness, all read in one snapshot."""
    queries: list[Query] = []
    for entry in entries:
        relation = sql.Identifier(SCHEMA, entry.name.split(".", 1)[1])
        column = _freshness_column(entry)
        latest = sql.SQL("max(t.{})").format(sql.Identifier(column)) if column else sql.SQL("null")
        query = sql.SQL("select count(*) as row_count, {} as freshness from {} as t").format(
            latest, relation
        )
        queries.append((query, []))
    results = fetch(db, *queries)
    updated = []
    for entry, rows in zip(entries, results, strict=True):
        row = rows[0]
        freshness = row["freshness"]
        if freshness is not None and not isinstance(freshness, datetime):
            # a date column: its day counts as its UTC midnight
            freshness = datetime(freshness.year, freshness.month, freshness.day, tzinfo=UTC)
        updated.append(
            entry.model_copy(
                update={
                    "exists": True,
                    "row_count": int(row["row_count"]),
                    "freshness": freshness,
                    "freshness_from": _freshness_column(entry),
                }
            )
        )
    return updated


# --- HTML -----------------------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
th,td{border:1px solid #ccc;padding:.2rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f3f3} code{font-size:.9em} dt{font-weight:600}
dl{display:grid;grid-template-columns:max-content auto;gap:.1rem 1rem}
section{border-top:1px solid #ddd;padding-top:.5rem}
"""


def render_html(catalog: Catalog) -> str:
    """The catalog as a plain HTML page (no script); every value is escaped."""
    toc = "".join(
        f'<li><a href="#{_e(t.name)}"><code>{_e(t.name)}</code></a> {_e(t.kind)}</li>'
        for t in catalog.tables
    )
    note = (
        "Row counts and freshness as of the time above."
        if catalog.with_statistics
        else "Schemas only: send a read key (<code>Authorization: Bearer &lt;read key&gt;</code>) "
        "for row counts and freshness, or use <code>GET /v1/catalog</code>."
    )
    sections = "".join(_section(t, catalog.with_statistics) for t in catalog.tables)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>Telemetry Lake catalog</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>Telemetry Lake catalog</h1>"
        f"<p>Generated {_e(catalog.generated_at.isoformat())}. {note}</p>"
        f"<ul>{toc}</ul>{sections}</body></html>"
    )


def _section(t: CatalogTable, statistics: bool) -> str:
    facts = [
        ("layer", t.layer),
        ("grain", t.grain),
        ("owner stage", t.owner_stage),
        ("location", t.location),
        ("merge keys", ", ".join(t.merge_keys)),
        ("partitioned by", ", ".join(t.partition_by)),
        ("mirrors", t.mirrors),
        ("dataset", f"/v1/metrics/{t.dataset}" if t.dataset else None),
    ]
    if statistics:
        facts += [
            ("exists", "yes" if t.exists else "no"),
            ("rows", "unknown" if t.row_count is None else f"{t.row_count:,}"),
            ("freshness", t.freshness.isoformat() if t.freshness else "none"),
        ]
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts if v)
    rows = "".join(
        f"<tr><td><code>{_e(c.name)}</code></td><td>{_e(c.type)}</td>"
        f"<td>{'yes' if c.nullable else 'no'}</td><td>{_e(c.description)}</td></tr>"
        for c in t.columns
    )
    rules = ""
    if t.expectations:
        items = "".join(
            f"<li><code>{_e(x.rule)}</code> on {_e(x.column)}: {_e(x.dimension)}, "
            f"{_e(x.action)}</li>"
            for x in t.expectations
        )
        rules = f"<p>Quality rules:</p><ul>{items}</ul>"
    return (
        f'<section id="{_e(t.name)}"><h2><code>{_e(t.name)}</code> '
        f"<small>{_e(t.kind)}</small></h2><p>{_e(t.description)}</p><dl>{dl}</dl>"
        "<table><tr><th>column</th><th>type</th><th>nullable</th><th>description</th></tr>"
        f"{rows}</table>{rules}</section>"
    )


def _e(value: object) -> str:
    return escape(str(value), quote=True)
