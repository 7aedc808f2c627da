"""Lint migration SQL the way squawk and strong_migrations do, and class what each step does.

Each statement is parsed with sqlglot's PostgreSQL dialect (its tokenizer knows comments,
quoted names, dollar quotes and semicolons inside strings); what sqlglot only keeps as a raw
command (``DO``, ``REINDEX``, ``ALTER TYPE``...) is read word by word.

A statement is one of four kinds, and a migration is the most constraining of its statements':

    expand             additive: the previous release still runs on the new schema
    data               changes rows (INSERT, UPDATE, DELETE, ...), not the schema
    non-transactional  must run outside a transaction (CREATE INDEX CONCURRENTLY and friends)
    contract           removes or changes what the previous release may use (drop, rename,
                       type change, SET NOT NULL): after it, rolling back needs a restore

A statement rollout cannot tell is counted as contract, with a finding saying so. As squawk
warns, a migration that passes this lint is not automatically safe.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlglot import exp


class Severity(StrEnum):
    ERROR = "error"  # blocks the plan
    WARNING = "warning"  # worth a look, does not block
    INFO = "info"  # a fact, covered by rollout itself


class Kind(StrEnum):
    EXPAND = "expand"
    DATA = "data"
    NON_TRANSACTIONAL = "non-transactional"
    CONTRACT = "contract"


# Which kind wins when a migration holds several.
_RANK = {Kind.EXPAND: 0, Kind.DATA: 1, Kind.NON_TRANSACTIONAL: 2, Kind.CONTRACT: 3}


@dataclass(frozen=True)
class Finding:
    rule: str  # squawk's rule id where there is one
    severity: Severity
    statement: str
    message: str
    hint: str


@dataclass(frozen=True)
class Statement:
    sql: str
    kind: Kind
    transactional: bool  # False: runs outside a transaction (CONCURRENTLY, VACUUM, ...)
    reason: str  # why it is that kind, in a few words


@dataclass(frozen=True)
class Lint:
    """One migration's statements, findings, and kind."""

    statements: tuple[Statement, ...]
    findings: tuple[Finding, ...]

    @property
    def kind(self) -> Kind:
        return migration_kind(s.kind for s in self.statements)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)


def migration_kind(kinds: Iterable[Kind]) -> Kind:
    """The kind of a migration: the most constraining of its statements' (expand if none)."""
    return max(kinds, key=_RANK.__getitem__, default=Kind.EXPAND)


# rule id -> (severity, message, fix hint)
RULES: dict[str, tuple[Severity, str, str]] = {
    "ban-drop-column": (
        Severity.ERROR,
        "drops a column: the previous release still reads it, and its data is gone",
        "stop using the column in one release, drop it in a later one",
    ),
    "ban-drop-table": (
        Severity.ERROR,
        "drops a table: the previous release still uses it, and its data is gone",
        "stop using the table in one release, drop it in a later one",
    ),
    "renaming-column": (
        Severity.ERROR,
        "renames a column: the previous release still uses the old name",
        "add the new column, write both, backfill, move reads, then drop the old one",
    ),
    "renaming-table": (
        Severity.ERROR,
        "renames a table: the previous release still uses the old name",
        "create the new table (or a view under the new name), move over, then drop the old",
    ),
    "changing-column-type": (
        Severity.ERROR,
        "changes a column's type: rewrites the table under an ACCESS EXCLUSIVE lock",
        "add a column of the new type, backfill it in batches, move reads, drop the old one",
    ),
    "adding-required-field": (
        Severity.ERROR,
        "adds a NOT NULL column without a default: fails on a table with rows, and the "
        "previous release's inserts leave it out",
        "add it nullable (or with a DEFAULT), backfill, then enforce NOT NULL later",
    ),
    "adding-not-nullable-field": (
        Severity.ERROR,
        "SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock, and the "
        "previous release may still write NULL",
        "ADD CONSTRAINT ... CHECK (col IS NOT NULL) NOT VALID, VALIDATE it, then SET NOT NULL",
    ),
    "require-concurrent-index-creation": (
        Severity.ERROR,
        "CREATE INDEX without CONCURRENTLY blocks writes to the table while it builds",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS ... (outside a transaction)",
    ),
    "require-concurrent-index-deletion": (
        Severity.WARNING,
        "DROP INDEX without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on the table",
        "DROP INDEX CONCURRENTLY IF EXISTS ...",
    ),
    "constraint-missing-not-valid": (
        Severity.ERROR,
        "adds a constraint that checks every row while holding a lock that blocks writes",
        "ADD CONSTRAINT ... NOT VALID, then VALIDATE CONSTRAINT in a separate migration",
    ),
    "disallowed-unique-constraint": (
        Severity.ERROR,
        "adds a UNIQUE or PRIMARY KEY constraint, building its index under an ACCESS "
        "EXCLUSIVE lock",
        "CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT ... USING INDEX",
    ),
    "prefer-robust-stmts": (
        Severity.WARNING,
        "not idempotent: a retry after a partial run fails on what the first try made",
        "use IF NOT EXISTS / IF EXISTS",
    ),
    "require-lock-timeout": (
        Severity.WARNING,
        "no lock_timeout: a statement waiting for its lock blocks every query behind it",
        "SET lock_timeout = '2s'; at the start, and retry on timeout",
    ),
    "transaction-control": (
        Severity.ERROR,
        "BEGIN/COMMIT inside a migration: rollout runs each migration in its own transaction",
        "remove it; non-transactional statements (CONCURRENTLY) are run outside one anyway",
    ),
    "unclassified-statement": (
        Severity.WARNING,
        "rollout cannot tell what this changes, so counts it as contract",
        "review it; if it is additive, apply with --allow-contract",
    ),
}

RUNNER_TIMEOUTS = (
    "rollout's runner sets lock_timeout and statement_timeout itself and retries lock "
    "timeouts; add them to the file only for other runners"
)


def finding(rule: str, statement: str) -> Finding:
    severity, message, hint = RULES[rule]
    return Finding(rule, severity, statement, message, hint)


def split_sql(sql: str) -> list[str]:
    """The statements of a script, without comments or the semicolons between them."""
    from sqlglot.dialects.postgres import Postgres
    from sqlglot.tokenizer_core import TokenType

    statements: list[str] = []
    start: int | None = None
    end = 0
    for token in Postgres().tokenize(sql):
        if token.token_type is TokenType.SEMICOLON:
            if start is not None:
                statements.append(sql[start : end + 1])
            start = None
            continue
        start = token.start if start is None else start
        end = token.end
    if start is not None:
        statements.append(sql[start : end + 1])
    return statements


def lint_sql(sql: str, *, runner_sets_timeouts: bool = True) -> Lint:
    """Lint one migration's SQL script; see ``lint_statements``."""
    return lint_statements(split_sql(sql), runner_sets_timeouts=runner_sets_timeouts)


def lint_statements(statements: Sequence[str], *, runner_sets_timeouts: bool = True) -> Lint:
    """Class and lint the statements of one migration, in order.

    Tables the migration creates itself are new and empty: building an index or a constraint
    on them locks nothing anyone waits for, so those rules skip them. ``runner_sets_timeouts``
    says the SQL runs through rollout, whose runner sets the timeouts; the missing
    lock_timeout is then told as information rather than a warning.
    """
    seen = _Migration()
    classified = [_classify(sql, seen) for sql in statements]
    findings = [f for _statement, found in classified for f in found]
    findings.extend(_timeout_findings(statements, seen, runner_sets_timeouts))
    return Lint(tuple(s for s, _found in classified), tuple(findings))


@dataclass
class _Migration:
    """What the statements so far did, for the rules that look across statements."""

    created: set[str] = field(default_factory=set)  # tables made by this migration
    ddl: str | None = None  # the first statement that locks an existing object
    sets_lock_timeout: bool = False


def _timeout_findings(
    statements: Sequence[str], seen: _Migration, runner_sets_timeouts: bool
) -> list[Finding]:
    if seen.ddl is None or seen.sets_lock_timeout:
        return []
    found = finding("require-lock-timeout", seen.ddl)
    if runner_sets_timeouts:
        found = Finding(found.rule, Severity.INFO, found.statement, found.message, RUNNER_TIMEOUTS)
    return [found]


_Result = tuple[Statement, list[Finding]]


def _classify(sql: str, seen: _Migration) -> _Result:
    from sqlglot import exp

    tree = _parse(sql)
    if isinstance(tree, exp.Alter) and str(tree.args.get("kind", "")).upper() == "TABLE":
        return _alter_table(sql, tree, seen)
    if isinstance(tree, exp.Create):
        return _create(sql, tree, seen)
    if isinstance(tree, exp.Drop):
        return _drop(sql, tree, seen)
    if isinstance(tree, exp.Insert | exp.Update | exp.Delete | exp.Merge | exp.Copy):
        return _statement(sql, Kind.DATA, "changes rows"), []
    if isinstance(tree, exp.TruncateTable):
        return _statement(sql, Kind.DATA, "empties tables"), []
    if isinstance(tree, exp.Alter):
        return _alter_other(sql, tree, seen)
    if isinstance(tree, exp.Set):
        seen.sets_lock_timeout |= "lock_timeout" in sql.lower()
        return _statement(sql, Kind.EXPAND, "a session setting"), []
    if isinstance(tree, exp.Select | exp.Comment | exp.Grant | exp.Revoke):
        return _statement(sql, Kind.EXPAND, "changes no table"), []
    return _by_words(sql, seen)


def _parse(sql: str) -> exp.Expr | None:
    import sqlglot
    from sqlglot.errors import SqlglotError

    # sqlglot logs a warning for each statement it keeps as a raw command; those are read
    # word by word below, so the warning would only be noise on the user's terminal.
    logger = logging.getLogger("sqlglot")
    disabled, logger.disabled = logger.disabled, True
    try:
        return sqlglot.parse_one(sql, read="postgres")
    except SqlglotError:
        return None
    finally:
        logger.disabled = disabled


def _statement(sql: str, kind: Kind, reason: str, *, transactional: bool = True) -> Statement:
    return Statement(sql, kind, transactional, reason)


def _table_name(node: exp.Expr | None) -> str:
    from sqlglot import exp

    table = node if isinstance(node, exp.Table) else None
    if table is None and node is not None:
        table = node.find(exp.Table)
    return "" if table is None else table.name.lower()


def _create(sql: str, tree: exp.Create, seen: _Migration) -> _Result:
    from sqlglot import exp

    kind = str(tree.args.get("kind", "")).upper()
    robust = bool(tree.args.get("exists")) or bool(tree.args.get("replace"))
    found = (
        [] if robust or kind not in ("TABLE", "INDEX") else [finding("prefer-robust-stmts", sql)]
    )
    if kind == "TABLE":
        seen.created.add(_table_name(tree.this))
        return _statement(sql, Kind.EXPAND, "creates a table"), found
    if kind != "INDEX":
        return _by_words(sql, seen)
    index = tree.this
    table = _table_name(index.args.get("table") if isinstance(index, exp.Index) else None)
    if tree.args.get("concurrently"):
        statement = _statement(
            sql, Kind.NON_TRANSACTIONAL, "builds an index concurrently", transactional=False
        )
        return statement, found
    if table not in seen.created:
        seen.ddl = seen.ddl or sql
        found.append(finding("require-concurrent-index-creation", sql))
    return _statement(sql, Kind.EXPAND, "creates an index"), found


def _drop(sql: str, tree: exp.Drop, seen: _Migration) -> _Result:
    kind = str(tree.args.get("kind", "")).upper()
    found = [] if tree.args.get("exists") else [finding("prefer-robust-stmts", sql)]
    concurrently = bool(tree.args.get("concurrently"))
    if kind == "TABLE":
        found.append(finding("ban-drop-table", sql))
    elif kind == "INDEX" and not concurrently:
        found.append(finding("require-concurrent-index-deletion", sql))
    if not concurrently:
        seen.ddl = seen.ddl or sql
    reason = f"drops a {kind.lower() or 'object'}"
    return _statement(sql, Kind.CONTRACT, reason, transactional=not concurrently), found


def _alter_table(sql: str, tree: exp.Alter, seen: _Migration) -> _Result:
    table = _table_name(tree.this)
    new = table in seen.created
    if not new:
        seen.ddl = seen.ddl or sql
    kinds: list[Kind] = []
    reasons: list[str] = []
    found: list[Finding] = []
    for action in tree.args.get("actions") or []:
        kind, reason, rules = _alter_action(action, not_valid=bool(tree.args.get("not_valid")))
        kinds.append(kind)
        reasons.append(reason)
        found.extend(finding(rule, sql) for rule in rules if not (new and rule in _LOCK_RULES))
    if not kinds:
        return _by_words(sql, seen)
    kind = migration_kind(kinds)
    return _statement(sql, kind, ", ".join(dict.fromkeys(reasons))), found


# Rules about locks held on a table that has rows: moot on a table this migration created.
_LOCK_RULES = frozenset(
    {
        "adding-required-field",
        "adding-not-nullable-field",
        "changing-column-type",
        "constraint-missing-not-valid",
        "disallowed-unique-constraint",
    }
)

_Action = tuple[Kind, str, list[str]]


def _alter_action(action: exp.Expr, *, not_valid: bool) -> _Action:
    from sqlglot import exp

    if isinstance(action, exp.ColumnDef):
        return _add_column(action)
    if isinstance(action, exp.AlterColumn):
        return _alter_column(action)
    if isinstance(action, exp.RenameColumn):
        return Kind.CONTRACT, "renames a column", ["renaming-column"]
    if isinstance(action, exp.AlterRename):
        return Kind.CONTRACT, "renames the table", ["renaming-table"]
    if isinstance(action, exp.Drop):
        what = str(action.args.get("kind", "")).upper()
        rules = [] if action.args.get("exists") else ["prefer-robust-stmts"]
        if what == "COLUMN":
            return Kind.CONTRACT, "drops a column", ["ban-drop-column", *rules]
        return Kind.CONTRACT, f"drops a {what.lower() or 'part'}", rules
    if isinstance(action, exp.AddConstraint):
        return _add_constraint(action, not_valid=not_valid)
    if isinstance(action, exp.AlterSet):
        return Kind.EXPAND, "sets table options", []
    return Kind.CONTRACT, "an ALTER TABLE rollout cannot tell", ["unclassified-statement"]


def _add_column(column: exp.ColumnDef) -> _Action:
    from sqlglot import exp

    constraints = [c.args.get("kind") for c in column.args.get("constraints") or []]
    not_null = any(
        isinstance(c, exp.NotNullColumnConstraint) and not c.args.get("allow_null")
        for c in constraints
    )
    default = any(isinstance(c, exp.DefaultColumnConstraint) for c in constraints)
    rules = [] if column.args.get("exists") else ["prefer-robust-stmts"]
    if any(
        isinstance(c, exp.PrimaryKeyColumnConstraint | exp.UniqueColumnConstraint)
        for c in constraints
    ):
        rules.append("disallowed-unique-constraint")
    if not_null and not default:
        return Kind.CONTRACT, "adds a required column", ["adding-required-field", *rules]
    return Kind.EXPAND, "adds a column" if not_null else "adds a nullable column", rules


def _alter_column(action: exp.AlterColumn) -> _Action:
    if action.args.get("dtype") is not None:
        return Kind.CONTRACT, "changes a column's type", ["changing-column-type"]
    if action.args.get("allow_null") is False and not action.args.get("drop"):
        return Kind.CONTRACT, "sets NOT NULL", ["adding-not-nullable-field"]
    if action.args.get("allow_null") and action.args.get("drop"):
        return Kind.EXPAND, "drops NOT NULL", []
    if action.args.get("default") is not None:
        return Kind.EXPAND, "sets a default", []
    if action.args.get("drop"):
        return Kind.CONTRACT, "drops a default", []
    return Kind.CONTRACT, "alters a column in a way rollout cannot tell", ["unclassified-statement"]


def _add_constraint(action: exp.AddConstraint, *, not_valid: bool) -> _Action:
    from sqlglot import exp

    if action.find(exp.PrimaryKey, exp.UniqueColumnConstraint, exp.PrimaryKeyColumnConstraint):
        return Kind.EXPAND, "adds a unique constraint", ["disallowed-unique-constraint"]
    checked = action.find(exp.ForeignKey, exp.CheckColumnConstraint, exp.Reference)
    if checked is not None and not not_valid:
        return Kind.EXPAND, "adds a constraint", ["constraint-missing-not-valid"]
    return Kind.EXPAND, "adds a constraint", []


def _alter_other(sql: str, tree: exp.Alter, seen: _Migration) -> _Result:
    from sqlglot import exp

    what = str(tree.args.get("kind", "")).upper()
    actions = tree.args.get("actions") or []
    renames = any(isinstance(a, exp.AlterRename) for a in actions)
    if what == "INDEX" or (what in ("SEQUENCE", "VIEW", "MATERIALIZED VIEW") and not renames):
        return _statement(sql, Kind.EXPAND, f"alters a {what.lower()}"), []
    if what in ("VIEW", "MATERIALIZED VIEW"):
        return _statement(sql, Kind.CONTRACT, "renames a view"), [finding("renaming-table", sql)]
    return _by_words(sql, seen)


def _words(sql: str) -> list[str]:
    """The statement's keywords and bare names, upper-cased; strings and quoted names left out."""
    from sqlglot.dialects.postgres import Postgres
    from sqlglot.errors import SqlglotError
    from sqlglot.tokenizer_core import TokenType

    quoted = {TokenType.STRING, TokenType.HEREDOC_STRING, TokenType.IDENTIFIER}
    try:
        tokens = Postgres().tokenize(sql)
    except SqlglotError:
        return sql.upper().split()
    if tokens and tokens[0].token_type is TokenType.COMMAND and len(tokens) == 2:
        # sqlglot keeps the rest of a command it does not parse (REINDEX, VACUUM) as one
        # string; its words count, except a DO block's body, which is code.
        first = tokens[0].text.upper()
        return [first] if first == "DO" else [first, *_words(tokens[1].text)]
    return [t.text.upper() for t in tokens if t.token_type not in quoted]


# Statements PostgreSQL refuses to run inside a transaction block.
_OUTSIDE = (("VACUUM",), ("CREATE", "DATABASE"), ("DROP", "DATABASE"), ("ALTER", "SYSTEM"))


def _by_words(sql: str, seen: _Migration) -> _Result:
    words = _words(sql)
    head = tuple(words[:2])
    concurrently = "CONCURRENTLY" in words
    outside = concurrently or any(head[: len(o)] == o for o in _OUTSIDE)
    if head[:1] in (("BEGIN",), ("COMMIT",), ("START",), ("END",), ("ROLLBACK",)):
        return _statement(sql, Kind.EXPAND, "transaction control"), [
            finding("transaction-control", sql)
        ]
    if head[:1] in (("SET",), ("RESET",)):
        seen.sets_lock_timeout |= "LOCK_TIMEOUT" in words
        return _statement(sql, Kind.EXPAND, "a session setting"), []
    kind, reason = _word_kind(words)
    if kind is Kind.EXPAND and outside:
        kind = Kind.NON_TRANSACTIONAL
    if kind is not Kind.DATA and not outside and head[:1] in (("ALTER",), ("DROP",), ("REINDEX",)):
        seen.ddl = seen.ddl or sql
    found = [finding("unclassified-statement", sql)] if reason is None else []
    statement = _statement(
        sql, kind, reason or "not recognised, counted as contract", transactional=not outside
    )
    return statement, found


def _word_kind(words: list[str]) -> tuple[Kind, str | None]:
    """The kind of a statement sqlglot keeps raw; no reason when rollout cannot tell."""
    first = words[0] if words else ""
    text = " ".join(words)
    if first == "ALTER" and " VALIDATE CONSTRAINT " in f" {text} ":
        return Kind.EXPAND, "validates a constraint"
    if first == "ALTER" and " USING INDEX " in f" {text} ":
        return Kind.EXPAND, "adds a constraint on an existing index"
    if text.startswith("ALTER TYPE") and " ADD VALUE " in f" {text} ":
        return Kind.EXPAND, "adds an enum value"
    if first == "ALTER" and " DETACH PARTITION " in f" {text} ":
        return Kind.CONTRACT, "detaches a partition"
    if first in ("CREATE", "COMMENT", "GRANT", "ANALYZE", "REINDEX", "VACUUM", "SELECT"):
        return Kind.EXPAND, f"{first.lower()}: adds or maintains, removes nothing"
    if first in ("INSERT", "UPDATE", "DELETE", "MERGE", "COPY", "TRUNCATE"):
        return Kind.DATA, "changes rows"
    if first == "DROP" or first == "REVOKE":
        return Kind.CONTRACT, f"{first.lower()}: removes what the previous release may use"
    return Kind.CONTRACT, None
