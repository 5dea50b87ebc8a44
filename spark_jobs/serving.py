"""Gold rows into their PostgreSQL `analytics` mirror: Arrow -> COPY -> one upsert.

Sail has no JDBC writer, so every gold job collects the rows it recomputed once as Arrow, MERGEs
them into Delta and hands the very same rows to `serve`. The mirror has the gold table's
columns plus `updated_at`; its primary key is the gold table's merge keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import psycopg

from lake_config.tables import Table

if TYPE_CHECKING:
    import pyarrow as pa


def serving_table(table: Table) -> str:
    """`gold.x` is mirrored to `analytics.x`."""
    return f"analytics.{table.name.split('.', 1)[1]}"


def serve(
    database_url: str,
    table: Table,
    rows: pa.Table,
    *,
    assignments: Mapping[str, str] | None = None,
) -> int:
    """Upsert `rows` (the gold table's columns) into its mirror; returns rows inserted or
    changed.

    COPY into a temporary staging table, then one `insert ... on conflict`. By default a
    conflicting row takes the new values, and a row whose values did not change is left alone
    (its updated_at included), so a re-run changes nothing. `assignments` replaces the update of
    some columns with SQL over `t` (the row there) and `excluded` (the new one).
    """
    target = serving_table(table)
    staging = f"{table.sql_name}_staging"
    columns = table.column_names
    keys = table.merge_keys
    values = [c for c in columns if c not in keys]
    assigned = {c: f"excluded.{c}" for c in values} | dict(assignments or {})
    column_list = ", ".join(columns)
    statement = f"""
        insert into {target} as t ({column_list})
        select {column_list} from {staging}
        on conflict ({", ".join(keys)}) do update
        set {", ".join(f"{c} = {e}" for c, e in assigned.items())}, updated_at = now()
        where ({", ".join(f"t.{c}" for c in assigned)})
            is distinct from ({", ".join(assigned.values())})
    """
    with psycopg.connect(database_url, connect_timeout=10) as conn, conn.transaction():
        conn.execute(
            f"create temporary table {staging} (like {target} including defaults) on commit drop"
        )
        with conn.cursor() as cur:
            with cur.copy(f"copy {staging} ({column_list}) from stdin") as copy:
                for row in rows.select(columns).to_pylist():
                    copy.write_row([row[c] for c in columns])
            cur.execute(statement)
            return cur.rowcount
