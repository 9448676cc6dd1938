"""What an analyst's query through POST /api/sql may touch, judged from ClickHouse's own parse.

Project isolation has two halves. The query runs with `additional_table_filters` adding
`project_id = '<caller's project>'` to every read of the queryable tables, and `readonly = 1`
so the query cannot change that setting (docs/analytics.md). That only isolates if the query
reads nothing else, so before it runs this module checks the tree `EXPLAIN AST` prints:
a single SELECT; no SETTINGS, FORMAT or INTO OUTFILE; tables only from QUERYABLE_TABLES; no
table function but row generators; no function that reads files, dictionaries or Join tables.

The statement text is checked first: chdb runs every `;`-separated statement it is given (a
ClickHouse server refuses them), so a `;` anywhere is refused rather than lexed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

QUERYABLE_TABLES = ("spans", "sessions", "session_costs", "session_health", "mcp_server_stats")
# Table functions that generate rows from their arguments and read no storage.
ROW_GENERATORS = frozenset({"numbers", "numbers_mt", "zeros", "zeros_mt", "generateseries", "generate_series", "values"})
# Scalar functions that read something other than the query's tables (files, dictionaries,
# Join-engine tables, other tables' metadata), by lowercase prefix.
_READING_FUNCTIONS = ("file", "dict", "joinget", "hascolumnintable", "catboost", "getsetting")
_IN_FUNCTIONS = frozenset({"in", "notin", "globalin", "globalnotin", "nullin", "notnullin", "globalnullin",
                           "globalnotnullin"})
# clickhouse-connect sends a query containing this through its INSERT path, which applies
# settings with SET on the shared session instead of a SETTINGS clause; refused up front.
_INSERT = re.compile(r"(^|\s)INSERT\s*INTO", re.IGNORECASE)
_LINE = re.compile(r"^(?P<indent> *)(?P<kind>[A-Z][A-Za-z0-9_]*)(?: (?P<rest>.*))?$")
_CHILDREN = re.compile(r"^(?P<rest>.*?) ?\(children (?P<children>\d+)\)$")
_ALIAS = re.compile(r" \(alias .*\)$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class QueryRefused(ValueError):
    """The query is not one the endpoint runs. `forbidden` marks a read of something outside
    the caller's project (403) as opposed to a malformed request (400)."""

    def __init__(self, message: str, forbidden: bool = False) -> None:
        super().__init__(message)
        self.forbidden = forbidden


def single_statement(sql: str) -> str:
    """The statement without surrounding space and one trailing `;`, or QueryRefused."""
    text = sql.strip()
    if text.endswith(";"):
        text = text[:-1].rstrip()
    if not text:
        raise QueryRefused("the query is empty")
    if ";" in text:
        raise QueryRefused("one statement only: the query may not contain ';' (inside a string, write char(59))")
    if _INSERT.search(text):
        raise QueryRefused("only SELECT queries run here; the text may not contain INSERT INTO")
    return text


@dataclass
class _Node:
    kind: str
    name: str
    declared: int | None
    children: list[_Node] = field(default_factory=list)


def _parse(lines: list[str]) -> _Node:
    """The EXPLAIN AST dump as a tree. ClickHouse prints a quoted identifier's line breaks
    verbatim, so a line could be forged; every node's printed `(children N)` must match what was
    parsed, which keeps forged lines from moving a real node to another parent or position."""
    stack: list[tuple[int, _Node]] = []
    root: _Node | None = None
    for line in lines:
        match = _LINE.match(line)
        if match is None:
            raise QueryRefused("the query could not be checked: quoted identifiers may not contain line breaks")
        depth = len(match["indent"])
        rest, declared = match["rest"] or "", None
        counted = _CHILDREN.match(rest)
        if counted:
            rest, declared = counted["rest"], int(counted["children"])
        node = _Node(match["kind"], _ALIAS.sub("", rest), declared)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if not stack:
            if root is not None or depth != 0:
                raise QueryRefused("the query could not be checked: quoted identifiers may not contain line breaks")
            root = node
        else:
            if depth != stack[-1][0] + 1:
                raise QueryRefused("the query could not be checked: quoted identifiers may not contain line breaks")
            stack[-1][1].children.append(node)
        stack.append((depth, node))
    if root is None:
        raise QueryRefused("the query could not be checked")
    _check_counts(root)
    return root


def _check_counts(node: _Node) -> None:
    if len(node.children) != (node.declared or 0):
        raise QueryRefused("the query could not be checked: quoted identifiers may not contain line breaks")
    for child in node.children:
        _check_counts(child)


@dataclass(frozen=True)
class Catalog:
    """What exists besides the queryable tables: other tables of our database (materialized
    views, replay's rebuild tables) and other databases, none of which a query may read."""

    database: str
    other_tables: frozenset[str]
    databases: frozenset[str]


def check_ast(lines: list[str], catalog: Catalog) -> None:
    """Raises QueryRefused unless the EXPLAIN AST dump `lines` is a query this endpoint runs."""
    root = _parse(lines)
    if root.kind != "SelectWithUnionQuery":
        raise QueryRefused(f"only a SELECT (or WITH ... SELECT) runs here, not {root.kind}")
    # Children of the root: the select list and the FORMAT clause the driver appends.
    extra = [c for c in root.children if c.kind != "ExpressionList" and not (c.kind == "Identifier" and c.name == "Native")]
    if extra:
        raise QueryRefused("FORMAT and INTO OUTFILE are not allowed: rows come back as JSON")
    _walk(root, None, catalog)


def _walk(node: _Node, parent: _Node | None, catalog: Catalog) -> None:
    if node.kind == "Set":
        raise QueryRefused("SETTINGS clauses are not allowed: the server sets the query's limits")
    if node.kind == "TableIdentifier":
        _check_table(node.name, catalog)
    elif node.kind == "Function":
        name = node.name.lower()
        if parent is not None and parent.kind == "TableExpression" and name not in ROW_GENERATORS:
            raise QueryRefused(f"table function {node.name}() is not allowed; query the tables "
                               f"{', '.join(QUERYABLE_TABLES)}", forbidden=True)
        if name.startswith(_READING_FUNCTIONS):
            raise QueryRefused(f"function {node.name}() is not allowed here", forbidden=True)
        if name in _IN_FUNCTIONS and node.children:
            # `x IN t` reads table t; a set on the right is a tuple, a subquery or a literal.
            for argument in node.children[0].children[1:]:
                if argument.kind == "Identifier":
                    _check_table(argument.name, catalog)
    elif node.kind == "Identifier" and "." in node.name:
        head = node.name.split(".", 1)[0]
        if head in catalog.databases or head == catalog.database:
            _check_table(".".join(node.name.split(".")[:2]), catalog)
    for child in node.children:
        _walk(child, node, catalog)


def _check_table(name: str, catalog: Catalog) -> None:
    if not _NAME.match(name):
        raise QueryRefused(f"unsupported table name {name!r}")
    parts = name.split(".")
    if len(parts) > 2:
        raise QueryRefused(f"unsupported table name {name!r}")
    if len(parts) == 2:
        database, table = parts
        if database != catalog.database or table not in QUERYABLE_TABLES:
            raise QueryRefused(f"table {name} cannot be queried here; the queryable tables are "
                               f"{', '.join(QUERYABLE_TABLES)}", forbidden=True)
        return
    # An unqualified name that is neither queryable nor another table of ours names a CTE
    # (or nothing, which ClickHouse reports).
    if name not in QUERYABLE_TABLES and name in catalog.other_tables:
        raise QueryRefused(f"table {name} cannot be queried here; the queryable tables are "
                           f"{', '.join(QUERYABLE_TABLES)}", forbidden=True)


def project_filters(database: str, project_id: str) -> str:
    """The `additional_table_filters` value confining every queryable table to one project.
    `project_id` is a UUID's text and `database` an identifier (both checked), so quoting is safe."""
    if not re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", project_id):
        raise ValueError(f"not a project id: {project_id!r}")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", database):
        raise ValueError(f"unsupported database name {database!r}")
    condition = f"project_id = ''{project_id}''"
    return "{" + ", ".join(f"'{database}.{table}': '{condition}'" for table in QUERYABLE_TABLES) + "}"
