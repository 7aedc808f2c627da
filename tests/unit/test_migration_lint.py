"""The migration lint: squawk-style rules and the expand / data / non-transactional / contract
classes, statement by statement and for a whole migration."""

from __future__ import annotations

import pytest

from rollout.database.lint import Kind, Severity, lint_sql, lint_statements, split_sql


def rules(sql: str) -> set[str]:
    return {f.rule for f in lint_sql(sql).findings if f.severity is not Severity.INFO}


@pytest.mark.parametrize(
    ("sql", "kind", "rule"),
    [
        ("ALTER TABLE v DROP COLUMN IF EXISTS c", Kind.CONTRACT, "ban-drop-column"),
        ("DROP TABLE IF EXISTS v", Kind.CONTRACT, "ban-drop-table"),
        ("ALTER TABLE v RENAME COLUMN a TO b", Kind.CONTRACT, "renaming-column"),
        ("ALTER TABLE v RENAME TO w", Kind.CONTRACT, "renaming-table"),
        ("ALTER TABLE v ALTER COLUMN c TYPE bigint", Kind.CONTRACT, "changing-column-type"),
        (
            "ALTER TABLE v ALTER c SET DATA TYPE text USING c::text",
            Kind.CONTRACT,
            "changing-column-type",
        ),
        (
            "ALTER TABLE v ADD COLUMN IF NOT EXISTS c text NOT NULL",
            Kind.CONTRACT,
            "adding-required-field",
        ),
        ("ALTER TABLE v ALTER COLUMN c SET NOT NULL", Kind.CONTRACT, "adding-not-nullable-field"),
        ("CREATE INDEX IF NOT EXISTS i ON v (c)", Kind.EXPAND, "require-concurrent-index-creation"),
        (
            "ALTER TABLE v ADD CONSTRAINT f FOREIGN KEY (o) REFERENCES owners (id)",
            Kind.EXPAND,
            "constraint-missing-not-valid",
        ),
        (
            "ALTER TABLE v ADD CONSTRAINT ck CHECK (year > 1900)",
            Kind.EXPAND,
            "constraint-missing-not-valid",
        ),
        (
            "ALTER TABLE v ADD CONSTRAINT u UNIQUE (vin)",
            Kind.EXPAND,
            "disallowed-unique-constraint",
        ),
        ("CREATE TABLE t (id int)", Kind.EXPAND, "prefer-robust-stmts"),
        ("ALTER TABLE v ADD COLUMN c int", Kind.EXPAND, "prefer-robust-stmts"),
        ("DROP INDEX IF EXISTS i", Kind.CONTRACT, "require-concurrent-index-deletion"),
        ("DO $$ BEGIN PERFORM 1; END $$", Kind.CONTRACT, "unclassified-statement"),
        ("BEGIN", Kind.EXPAND, "transaction-control"),
    ],
)
def test_each_rule_fires_and_classes_the_statement(sql: str, kind: Kind, rule: str) -> None:
    lint = lint_sql(sql)
    assert rule in {f.rule for f in lint.findings}
    assert lint.kind is kind
    found = next(f for f in lint.findings if f.rule == rule)
    assert found.statement == sql
    assert found.message and found.hint


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY, a text NOT NULL)", Kind.EXPAND),
        ("ALTER TABLE v ADD COLUMN IF NOT EXISTS color varchar(32)", Kind.EXPAND),
        ("ALTER TABLE v ADD COLUMN IF NOT EXISTS n int NOT NULL DEFAULT 0", Kind.EXPAND),
        ("ALTER TABLE v ALTER COLUMN c DROP NOT NULL", Kind.EXPAND),
        (
            "ALTER TABLE v ADD CONSTRAINT f FOREIGN KEY (o) REFERENCES owners (id) NOT VALID",
            Kind.EXPAND,
        ),
        ("ALTER TABLE v ADD CONSTRAINT ck CHECK (year > 1900) NOT VALID", Kind.EXPAND),
        ("ALTER TABLE v VALIDATE CONSTRAINT ck", Kind.EXPAND),
        ("ALTER TABLE v ADD CONSTRAINT u UNIQUE USING INDEX v_vin", Kind.EXPAND),
        ("ALTER TYPE mood ADD VALUE IF NOT EXISTS 'calm'", Kind.EXPAND),
        ("CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON v (c)", Kind.NON_TRANSACTIONAL),
        ("DROP INDEX CONCURRENTLY IF EXISTS i", Kind.CONTRACT),
        ("UPDATE v SET color = 'red' WHERE color IS NULL", Kind.DATA),
        ("INSERT INTO v (make) VALUES ('a;b')", Kind.DATA),
        ("DELETE FROM v WHERE year < 1900", Kind.DATA),
        ("SET lock_timeout = '1s'", Kind.EXPAND),
    ],
)
def test_safe_statements_raise_no_error(sql: str, kind: Kind) -> None:
    lint = lint_sql(sql)
    assert lint.errors == ()
    assert lint.kind is kind


def test_concurrent_statements_run_outside_a_transaction() -> None:
    lint = lint_sql(
        "ALTER TABLE v ADD COLUMN IF NOT EXISTS c int;"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON v (c);"
        "REINDEX INDEX CONCURRENTLY i;"
        "DROP INDEX CONCURRENTLY IF EXISTS j"
    )
    assert [s.transactional for s in lint.statements] == [True, False, False, False]


def test_a_migration_is_its_most_constraining_statement() -> None:
    add = "ALTER TABLE v ADD COLUMN IF NOT EXISTS c int"
    backfill = "UPDATE v SET c = 0"
    concurrently = "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON v (c)"
    drop = "ALTER TABLE v DROP COLUMN IF EXISTS old"
    assert lint_statements([add]).kind is Kind.EXPAND
    assert lint_statements([add, backfill]).kind is Kind.DATA
    assert lint_statements([add, backfill, concurrently]).kind is Kind.NON_TRANSACTIONAL
    assert lint_statements([add, backfill, concurrently, drop]).kind is Kind.CONTRACT
    assert lint_statements([]).kind is Kind.EXPAND


def test_a_table_made_in_the_same_migration_needs_no_concurrent_index_or_not_valid() -> None:
    found = rules(
        "CREATE TABLE IF NOT EXISTS owners (id int PRIMARY KEY);"
        "CREATE INDEX IF NOT EXISTS owners_id ON owners (id);"
        "ALTER TABLE owners ADD COLUMN IF NOT EXISTS n int NOT NULL;"
        "ALTER TABLE owners ADD CONSTRAINT ck CHECK (id > 0)"
    )
    assert found == set()
    # The same on a table that was there before is flagged.
    assert "require-concurrent-index-creation" in rules(
        "CREATE INDEX IF NOT EXISTS x ON vehicles (id)"
    )


def test_missing_lock_timeout_is_information_when_rollout_runs_it() -> None:
    sql = "ALTER TABLE v ADD COLUMN IF NOT EXISTS c int"
    (by_rollout,) = lint_sql(sql).findings
    assert (by_rollout.rule, by_rollout.severity) == ("require-lock-timeout", Severity.INFO)
    assert "rollout's runner sets lock_timeout" in by_rollout.hint
    (elsewhere,) = lint_sql(sql, runner_sets_timeouts=False).findings
    assert elsewhere.severity is Severity.WARNING
    # Set in the file: nothing to say; data-only migrations take no DDL lock: nothing either.
    assert lint_sql(f"SET lock_timeout = '2s'; {sql}").findings == ()
    assert lint_sql("UPDATE v SET c = 1").findings == ()


def test_split_keeps_semicolons_inside_strings_dollar_quotes_and_quoted_names() -> None:
    sql = """
        -- a comment; with a semicolon
        INSERT INTO v (make) VALUES ('a;b');
        /* block; comment */
        CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;
        ALTER TABLE "odd;name" ADD COLUMN IF NOT EXISTS "x;y" int;
        ;
    """
    assert split_sql(sql) == [
        "INSERT INTO v (make) VALUES ('a;b')",
        "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql",
        'ALTER TABLE "odd;name" ADD COLUMN IF NOT EXISTS "x;y" int',
    ]


def test_keywords_inside_strings_do_not_count() -> None:
    # A data migration whose text mentions DROP COLUMN is still only data.
    lint = lint_sql("INSERT INTO notes (body) VALUES ('ALTER TABLE v DROP COLUMN c')")
    assert lint.kind is Kind.DATA
    assert lint.errors == ()


def test_one_alter_with_several_actions_takes_the_worst() -> None:
    lint = lint_sql("ALTER TABLE v ADD COLUMN IF NOT EXISTS d int, DROP COLUMN IF EXISTS c")
    assert lint.kind is Kind.CONTRACT
    assert "ban-drop-column" in {f.rule for f in lint.errors}
