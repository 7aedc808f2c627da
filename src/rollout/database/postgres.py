"""PostgreSQL as the backup code needs it: identity, fingerprints, pg_dump, pg_restore, renames.

The client tools get the connection through ``PG*`` environment variables, never through their
arguments, so the password cannot show in ``ps`` or in an error message. psycopg and subprocess
errors are translated here into ``DatabaseError`` (exit 3: could not do the work).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from rollout.database.manifest import CHUNK, FileEntry, Fingerprint, TableFingerprint
from rollout.errors import DatabaseError

HASH_LIMIT = 64 * 1024 * 1024  # tables bigger than this get a row count, not a content hash
_ENV_KEYS = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "dbname": "PGDATABASE",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "options": "PGOPTIONS",
}


@dataclass(frozen=True)
class Server:
    """One database on a server, from its URL (``postgresql://`` or ``postgresql+driver://``)."""

    url: str

    @property
    def params(self) -> dict[str, Any]:
        url = re.sub(r"^postgres(ql)?\+\w+://", "postgresql://", self.url)
        try:
            return conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise DatabaseError(
                "database.url is not a PostgreSQL URL", hint="postgresql://user@host:5432/name"
            ) from exc

    @property
    def name(self) -> str:
        return str(self.params.get("dbname") or self.params.get("user") or "postgres")

    def conninfo(self, dbname: str | None = None) -> str:
        params = self.params
        if dbname is not None:
            params["dbname"] = dbname
        params.setdefault("connect_timeout", 10)
        return make_conninfo(**params)

    def tool_env(self, dbname: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        params = self.params
        if dbname is not None:
            params["dbname"] = dbname
        for key, value in params.items():
            if key in _ENV_KEYS and value is not None:
                env[_ENV_KEYS[key]] = str(value)
        return env

    @contextmanager
    def connect(
        self, dbname: str | None = None, *, autocommit: bool = True
    ) -> Iterator[psycopg.Connection[Any]]:
        try:
            conn = psycopg.connect(self.conninfo(dbname), autocommit=autocommit)
        except psycopg.Error as exc:
            raise DatabaseError(
                f"cannot connect to database {dbname or self.name}: {_first_line(exc)}",
                hint="is the server up and database.url right? (the password is never shown)",
            ) from exc
        try:
            yield conn
        except psycopg.Error as exc:
            raise DatabaseError(f"database {dbname or self.name}: {_first_line(exc)}") from exc
        finally:
            conn.close()


def identity(conn: psycopg.Connection[Any]) -> tuple[str, str]:
    """(system_identifier:database, server version) of the connected database."""
    row = conn.execute(
        "SELECT (SELECT system_identifier FROM pg_control_system())::text,"
        " current_database(), current_setting('server_version')"
    ).fetchone()
    assert row is not None
    return f"{row[0]}:{row[1]}", str(row[2])


def fingerprint(conn: psycopg.Connection[Any], hash_limit: int = HASH_LIMIT) -> Fingerprint:
    """Schema hash, migration head and per-table counts and hashes, in the current snapshot."""
    columns = conn.execute(
        "SELECT table_schema, table_name, column_name, data_type, is_nullable,"
        " coalesce(column_default, '') FROM information_schema.columns"
        " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        " ORDER BY 1, 2, ordinal_position"
    ).fetchall()
    indexes = conn.execute(
        "SELECT schemaname, indexname, indexdef FROM pg_indexes"
        " WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
    ).fetchall()
    schema_hash = hashlib.sha256(repr((columns, indexes)).encode()).hexdigest()
    tables = conn.execute(
        "SELECT n.nspname, c.relname, pg_total_relation_size(c.oid) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p')"
        " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2"
    ).fetchall()
    found = []
    for schema, table, size in tables:
        name = sql.Identifier(schema, table)
        if size <= hash_limit:
            # md5 of each row's text, sorted, then md5 of them all: independent of row order.
            row = conn.execute(
                sql.SQL(
                    "SELECT count(*), md5(coalesce(string_agg(h, '' ORDER BY h), ''))"
                    " FROM (SELECT md5(t::text) AS h FROM {} t) s"
                ).format(name)
            ).fetchone()
            assert row is not None
            found.append(TableFingerprint(f"{schema}.{table}", int(row[0]), str(row[1])))
        else:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(name)).fetchone()
            assert row is not None
            found.append(TableFingerprint(f"{schema}.{table}", int(row[0]), None))
    return Fingerprint(schema_hash, migration_head(conn), tuple(found))


def migration_head(conn: psycopg.Connection[Any]) -> str | None:
    """Alembic's version_num, or the newest of rollout's plain-SQL migrations, if any."""
    for table, query in (
        (
            "alembic_version",
            "SELECT string_agg(version_num, ',' ORDER BY version_num) FROM alembic_version",
        ),
        ("rollout_schema_migrations", "SELECT max(id)::text FROM rollout_schema_migrations"),
    ):
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
        if exists and exists[0]:
            row = conn.execute(query).fetchone()
            return None if row is None or row[0] is None else str(row[0])
    return None


def tool_version(tool: str) -> str:
    """``pg_dump --version`` -> ``15.18``."""
    try:
        done = subprocess.run([tool, "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise DatabaseError(
            f"{tool} is not available here", hint="install the PostgreSQL client tools"
        ) from exc
    match = re.search(r"(\d+(?:\.\d+)*)", done.stdout)
    return match.group(1) if match else done.stdout.strip()


def major(version: str) -> int:
    return int(version.split(".")[0])


def dump(
    server: Server,
    snapshot: str,
    out: Path,
    *,
    compression: int | None = None,
    lock_wait: str = "30s",
) -> FileEntry:
    """``pg_dump -Fc`` of the exported ``snapshot`` into ``out``, hashed as it is written."""
    argv = [
        "pg_dump",
        "--format=custom",
        f"--snapshot={snapshot}",
        f"--lock-wait-timeout={lock_wait}",
        "--no-password",
    ]
    if compression is not None:
        argv.append(f"--compress={compression}")
    return _stream_to_file(argv, server.tool_env(), out)


def dump_globals(server: Server, out: Path) -> FileEntry:
    """Roles and tablespaces (``pg_dumpall --globals-only``), without password hashes."""
    argv = ["pg_dumpall", "--globals-only", "--no-role-passwords", "--no-password"]
    return _stream_to_file(argv, server.tool_env(dbname="postgres"), out)


def _stream_to_file(argv: list[str], env: dict[str, str], out: Path) -> FileEntry:
    digest = hashlib.sha256()
    size = 0
    errors: list[bytes] = []
    try:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    except OSError as exc:
        raise DatabaseError(f"{argv[0]} is not available here: {exc}") from exc
    assert process.stdout is not None and process.stderr is not None
    stderr = process.stderr
    reader = threading.Thread(target=lambda: errors.append(stderr.read()), daemon=True)
    reader.start()
    with out.open("wb") as f:
        while chunk := process.stdout.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    status = process.wait()
    reader.join()
    if status != 0:
        raise DatabaseError(f"{argv[0]} exited {status}: {_tail(b''.join(errors))}")
    return FileEntry(out.name, digest.hexdigest(), size)


def restore_list(path: Path) -> None:
    """``pg_restore --list``: the archive's header and table of contents parse."""
    _restore_tool(["pg_restore", "--list", str(path)], what="its table of contents")


def restore_read(path: Path) -> None:
    """``pg_restore -f /dev/null``: every data block is read and decompressed."""
    _restore_tool(["pg_restore", "--file=/dev/null", str(path)], what="its data")


def restore_into(server: Server, dbname: str, path: Path) -> None:
    """``pg_restore --exit-on-error`` into the existing, empty database ``dbname``."""
    argv = ["pg_restore", "--exit-on-error", "--no-password", f"--dbname={dbname}", str(path)]
    done = subprocess.run(argv, capture_output=True, env=server.tool_env(dbname=dbname))
    if done.returncode != 0:
        raise RestoreFailed(f"pg_restore into {dbname} failed: {_tail(done.stderr)}")


class RestoreFailed(Exception):
    """pg_restore could not read or apply the archive (the archive's fault, not the server's)."""


def _restore_tool(argv: list[str], *, what: str) -> None:
    done = subprocess.run(argv, capture_output=True)
    if done.returncode != 0:
        raise RestoreFailed(f"`{' '.join(argv[:2])}` cannot read {what}: {_tail(done.stderr)}")


def create_database(admin: psycopg.Connection[Any], name: str, *, like: str | None = None) -> None:
    owner = ""
    if like is not None:
        row = admin.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (like,)
        ).fetchone()
        owner = "" if row is None else str(row[0])
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if owner:
        statement = sql.SQL("{} OWNER {}").format(statement, sql.Identifier(owner))
    admin.execute(statement)


def drop_database(admin: psycopg.Connection[Any], name: str) -> None:
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def database_exists(admin: psycopg.Connection[Any], name: str) -> bool:
    row = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _tail(stderr: bytes) -> str:
    text = stderr.decode(errors="replace").strip()
    return text[-800:] if text else "no message"
