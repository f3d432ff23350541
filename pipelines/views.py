"""The SQL views over the loaded tables: read from `sql/`, ordered, applied idempotently.

Each `sql/<view>.sql` holds one `select` whose tables and views are written
`{{dataset}}.<name>`. The applier fills in the dataset, works out from those references which
views read which, and creates a view only when everything it reads is there: before the first
sync (or before a run ever reported blocks) some tables do not exist yet, and a view over a
missing table would fail. The views are data, not code, in the way sqlite-utils keeps them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

# `sql/` sits beside the `pipelines/` package in the repository; an editable install imports
# the package from the repository itself, so the same path holds there.
SQL_DIR = Path(__file__).resolve().parent.parent / "sql"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLACEHOLDER = re.compile(r"\{\{\s*dataset\s*\}\}")
_REFERENCE = re.compile(r"\{\{\s*dataset\s*\}\}\.([A-Za-z_][A-Za-z0-9_]*)")
# Comments are dropped before looking for references, so a header that mentions
# `{{dataset}}.x` does not make x a dependency.
_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


class InvalidDatasetName(ValueError):
    """The dataset name is not a plain SQL identifier."""


class ViewCycle(ValueError):
    """The view files read each other in a circle, so no creation order exists."""


@dataclass(frozen=True)
class View:
    """One view file: its name (the file stem), its `select`, and the names it reads."""

    name: str
    select: str
    reads: frozenset[str]

    def create_sql(self, dataset: str) -> str:
        """The `create or replace view` statement for this view in `dataset`."""
        schema = quote_dataset(dataset)
        body = _PLACEHOLDER.sub(lambda _: schema, self.select)
        return f'create or replace view {schema}."{self.name}" as\n{body}'


def quote_dataset(dataset: str) -> str:
    """Validate a dataset (schema) name and return it double-quoted.

    Raises:
        InvalidDatasetName: if it is not `[A-Za-z_][A-Za-z0-9_]*`.
    """
    if not _IDENTIFIER.fullmatch(dataset):
        raise InvalidDatasetName(
            f"dataset name {dataset!r} is not a plain identifier "
            "(letters, digits and _, not starting with a digit)"
        )
    return f'"{dataset}"'


def read_view(path: Path) -> View:
    """Read one `sql/<name>.sql` file."""
    name = path.stem
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"view file {path.name} is not named as an SQL identifier")
    # A trailing `;` would end the statement inside `create view ... as`.
    select = path.read_text(encoding="utf-8").strip().rstrip(";").rstrip()
    reads = frozenset(_REFERENCE.findall(_COMMENT.sub("", select)))
    return View(name=name, select=select, reads=reads)


def load_views(sql_dir: Path = SQL_DIR) -> list[View]:
    """All views in `sql_dir`, each after every view it reads (ties broken by name).

    Raises:
        FileNotFoundError: if `sql_dir` is not a directory.
        ViewCycle: if view files read each other in a circle.
    """
    if not sql_dir.is_dir():
        # a wheel (not editable) install does not carry `sql/`: say so rather than apply nothing
        raise FileNotFoundError(f"no view files: {sql_dir} is not a directory")
    views = {view.name: view for view in map(read_view, sorted(sql_dir.glob("*.sql")))}
    ordered: list[View] = []
    placed: set[str] = set()
    pending = sorted(views)
    while pending:
        ready = [name for name in pending if (views[name].reads & views.keys()) <= placed]
        if not ready:
            raise ViewCycle(f"these views read each other in a circle: {', '.join(pending)}")
        ordered.extend(views[name] for name in ready)
        placed.update(ready)
        pending = [name for name in pending if name not in placed]
    return ordered


def view_names(sql_dir: Path = SQL_DIR) -> list[str]:
    """Names of all views, in the order they are created."""
    return [view.name for view in load_views(sql_dir)]


def existing_tables_sql(dataset: str) -> str:
    """A query, portable between DuckDB and PostgreSQL, listing the tables of `dataset`.

    Its one column, `table_name`, is what `apply_views` wants as `existing_tables`.
    """
    quote_dataset(dataset)  # validated, so it is safe inside the literal
    return (
        "select table_name from information_schema.tables "
        f"where table_schema = '{dataset}' and table_type = 'BASE TABLE'"
    )


def apply_views(
    execute: Callable[[str], object],
    dataset: str,
    existing_tables: Iterable[str],
    sql_dir: Path = SQL_DIR,
) -> list[str]:
    """Create or replace every view whose tables exist; skip the others.

    Safe to run after every load: `create or replace view` leaves the same views behind
    however often it runs. A view that reads another view is created after it, and only if
    that view was created in this same call.

    Args:
        execute: Runs one SQL statement, e.g. `duckdb_connection.execute` or a dlt
            `sql_client.execute_sql`.
        dataset: The schema holding the tables, exactly as stored in the warehouse (dlt
            normalises the configured name, so pass the name dlt actually used); the views
            are created in it.
        existing_tables: Names of the tables present in `dataset` (see `existing_tables_sql`).
        sql_dir: Where the view files are; the repository's `sql/` by default.

    Returns:
        The names of the views created, in creation order.

    Raises:
        InvalidDatasetName: if `dataset` is not a plain identifier; nothing is executed then.
        FileNotFoundError: if `sql_dir` is not a directory.
        ViewCycle: if the view files read each other in a circle.
    """
    quote_dataset(dataset)
    views = load_views(sql_dir)
    view_files = {view.name for view in views}
    tables = set(existing_tables) - view_files
    created: list[str] = []
    for view in views:
        if view.reads <= tables | set(created):
            execute(view.create_sql(dataset))
            created.append(view.name)
    return created


def drop_views(
    execute: Callable[[str], object], dataset: str, sql_dir: Path = SQL_DIR
) -> list[str]:
    """Drop every view of `sql_dir` from `dataset`, readers before what they read.

    PostgreSQL refuses to drop a table a view reads, and to `create or replace` a view whose
    columns changed; drop the views first when tables are dropped (a dlt refresh, `dlt
    pipeline drop`) or when upgrading to view files with other columns, then apply again.
    Views that do not exist are passed over.

    Returns:
        The names of the views dropped (or already absent), in drop order.

    Raises:
        InvalidDatasetName: if `dataset` is not a plain identifier; nothing is executed then.
    """
    schema = quote_dataset(dataset)
    names = [view.name for view in reversed(load_views(sql_dir))]
    for name in names:
        execute(f'drop view if exists {schema}."{name}"')
    return names
