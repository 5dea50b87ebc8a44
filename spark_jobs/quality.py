"""Declared data-quality expectations (lake_config.quality) compiled to Spark columns.

`annotate` adds one boolean failure column per expectation and the `rules` array of the
quarantining ones that a row broke; `summary` is the aggregate expressions of every rule's
checked and failed counts, meant to ride along in the stage's one statistics aggregation, so
the whole batch of checks costs no Spark action of its own. `record` writes the counts to
analytics.dq_results; `enforce` raises when a `fail` rule was broken, before the stage commits.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg

from lake_config.quality import Expectation
from spark_jobs.errors import QualityError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

RESULTS_TABLE = "analytics.dq_results"


@dataclass(frozen=True)
class RuleResult:
    """One rule's outcome for one run and table: a row of analytics.dq_results."""

    table: str
    rule: str
    dimension: str
    action: str
    rows_checked: int
    rows_failed: int


def _failed_column(i: int) -> str:
    return f"_dq_failed_{i}"


def _failure(e: Expectation, distinct: Collection[str] = ()) -> Column:
    """True where a row breaks `e` (never null); a `unique` rule on a `distinct` column cannot."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    col = F.col(e.column)
    if e.kind == "not_null":
        broken = col.isNull() | (F.trim(col.cast("string")) == "")
    elif e.kind == "parseable":
        broken = F.col(e.source or "").isNotNull() & col.isNull()
    elif e.kind == "range":
        low = F.lit(True) if e.minimum is None else col >= F.lit(e.minimum)
        high = F.lit(True) if e.maximum is None else col <= F.lit(e.maximum)
        broken = ~(low & high)
    elif e.kind == "allowed_values":
        broken = ~col.isin(list(e.values))
    elif e.kind == "unique" and e.column in distinct:
        broken = F.lit(False)
    elif e.kind == "unique":
        first = Window.partitionBy(e.column).orderBy(*e.order_by)
        broken = col.isNotNull() & (F.row_number().over(first) > 1)
    else:  # freshness
        age_ms = F.unix_millis(F.col(e.reference or "")) - F.unix_millis(col)
        broken = age_ms > F.lit(int((e.max_age_hours or 0) * 3_600_000))
    if e.when is not None:
        broken = F.col(e.when) & broken
    return F.coalesce(broken, F.lit(False))


def _reason(e: Expectation) -> Column:
    from pyspark.sql import functions as F

    before, sep, after = e.reason.partition("{value}")
    if not sep:
        return F.lit(before)
    return F.concat(F.lit(before), F.col(e.source or e.column).cast("string"), F.lit(after))


def annotate(
    df: DataFrame, expectations: Sequence[Expectation], *, distinct: Collection[str] = ()
) -> DataFrame:
    """`df` with a failure flag per expectation and `rules`: array<struct<rule, reason>> of the
    quarantining rules the row broke (empty when it may enter the table).

    `distinct` names columns the caller knows hold no repeated non-null value in `df`: a
    `unique` rule on one of them is then counted as checked and passed without its window,
    which would otherwise sort every row, with all its columns, by that column.
    """
    from pyspark.sql import functions as F

    flagged = df.select(
        "*",
        *(_failure(e, distinct).alias(_failed_column(i)) for i, e in enumerate(expectations)),
    )
    broken = [
        F.when(
            F.col(_failed_column(i)),
            F.struct(F.lit(e.rule).alias("rule"), _reason(e).alias("reason")),
        )
        for i, e in enumerate(expectations)
        if e.action == "quarantine"
    ]
    rules = F.array_compact(F.array(*broken)) if broken else F.array()
    return flagged.withColumn("rules", rules)


def summary(expectations: Sequence[Expectation]) -> list[Column]:
    """Aggregate expressions: rows checked and failed per rule, over an `annotate`d frame."""
    from pyspark.sql import functions as F

    columns = []
    for i, e in enumerate(expectations):
        checked = F.lit(1) if e.when is None else F.when(F.col(e.when), 1).otherwise(0)
        columns.append(F.sum(checked).alias(f"_dq_checked_{i}"))
        columns.append(F.sum(F.col(_failed_column(i)).cast("int")).alias(f"_dq_failures_{i}"))
    return columns


def results(
    table: str, expectations: Sequence[Expectation], rows: Iterable[Any]
) -> list[RuleResult]:
    """Per-rule totals from the collected rows of an aggregation that included `summary`."""
    rows = list(rows)

    def total(name: str) -> int:
        return sum(int(r[name] or 0) for r in rows)

    return [
        RuleResult(
            table=table,
            rule=e.rule,
            dimension=e.dimension,
            action=e.action,
            rows_checked=total(f"_dq_checked_{i}"),
            rows_failed=total(f"_dq_failures_{i}"),
        )
        for i, e in enumerate(expectations)
    ]


def record(database_url: str, run_id: str, found: Sequence[RuleResult], at: datetime) -> None:
    """Upsert the run's results into analytics.dq_results (a re-run of the stage replaces them)."""
    if not found:
        return
    with (
        psycopg.connect(database_url, connect_timeout=10) as conn,
        conn.transaction(),
        conn.cursor() as cur,
    ):
        cur.executemany(
            f"""
            insert into {RESULTS_TABLE} as t
                (run_id, table_name, rule, dimension, action, rows_checked, rows_failed,
                 checked_at)
            values (%s, %s, %s, %s, %s, %s, %s, %s)
            on conflict (run_id, table_name, rule) do update
            set dimension = excluded.dimension, action = excluded.action,
                rows_checked = excluded.rows_checked, rows_failed = excluded.rows_failed,
                checked_at = excluded.checked_at
            """,
            [
                (
                    run_id,
                    r.table,
                    r.rule,
                    r.dimension,
                    r.action,
                    r.rows_checked,
                    r.rows_failed,
                    at,
                )
                for r in found
            ],
        )


def enforce(found: Sequence[RuleResult], *, outcome: str = "nothing committed") -> None:
    """Raise QualityError naming every `fail` rule that rows broke, and what that stopped."""
    broken = [r for r in found if r.action == "fail" and r.rows_failed]
    if broken:
        detail = "; ".join(
            f"{r.table} rule {r.rule} ({r.dimension}) failed for {r.rows_failed} of "
            f"{r.rows_checked} rows"
            for r in broken
        )
        raise QualityError(f"quality gate: {detail}; {outcome}")
