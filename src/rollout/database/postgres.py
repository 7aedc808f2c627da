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
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from rollout.database.base import RestoreFailed, Snapshot, Staged
from rollout.database.manifest import CHUNK, FileEntry, Fingerprint, Manifest, TableFingerprint
from rollout.errors import BackupBad, BadInput, DatabaseError

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


DUMP = "db.dump"
GLOBALS = "globals.sql"


class PostgresDatabase(Server):
    """``Database`` for PostgreSQL: pg_dump/pg_restore, scratch and swapped databases by name."""

    engine = "postgresql"

    def identity(self) -> str:
        with self.connect() as conn:
            return identity(conn)[0]

    def snapshot(self, folder: Path, *, compression: int | None) -> Snapshot:
        """pg_dump of an exported snapshot while this side fingerprints the same snapshot."""
        tool = tool_version("pg_dump")
        with self.connect(autocommit=False) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            row = conn.execute(
                "SELECT pg_export_snapshot(), pg_current_wal_lsn()::text, now()"
            ).fetchone()
            assert row is not None
            snapshot, lsn, point_in_time = str(row[0]), str(row[1]), row[2]
            ident, version = identity(conn)
            if major(tool) < major(version):
                raise DatabaseError(
                    f"pg_dump {tool} is older than the server ({version}) and cannot dump it",
                    hint="install the client tools of the server's major version or newer",
                )
            # The dump runs in its own process while this connection, which holds the snapshot
            # open for it, takes the fingerprints of the very same snapshot.
            with ThreadPoolExecutor(1) as pool:
                dumping = pool.submit(dump, self, snapshot, folder / DUMP, compression=compression)
                try:
                    found = fingerprint(conn)
                finally:
                    dumped = dumping.result()
            conn.rollback()
        files, notes = [dumped], []
        try:
            files.append(dump_globals(self, folder / GLOBALS))
            notes.append("globals.sql: roles and tablespaces, without password hashes")
        except DatabaseError as exc:  # roles are the cluster's, not the app's: say so, go on
            (folder / GLOBALS).unlink(missing_ok=True)
            notes.append(f"globals not dumped: {exc.message}")
        return Snapshot(
            files=tuple(files),
            fingerprint=found,
            point_in_time=point_in_time.astimezone(UTC),
            position=lsn,
            identity=ident,
            server_version=version,
            tool_version=tool,
            notes=tuple(notes),
        )

    def check_tools(self, manifest: Manifest) -> None:
        restore = tool_version("pg_restore")
        if major(manifest.tool_version) > major(restore):
            raise BadInput(
                f"the backup was written by pg_dump {manifest.tool_version};"
                f" pg_restore here is {restore} and cannot read it",
                hint="verify or restore it where the client tools are as new as the dump's",
            )

    def read_archive(self, folder: Path, manifest: Manifest) -> None:
        restore_list(folder / manifest.dump.name)
        restore_read(folder / manifest.dump.name)

    def restore_compare(
        self, folder: Path, manifest: Manifest, sanity_queries: tuple[str, ...]
    ) -> list[str]:
        scratch = f"{manifest.database}__verify_{manifest.dump.sha256[:12]}"[:63]
        if scratch == self.name:  # by construction it cannot be, and it must never be
            raise BadInput(f"the scratch database {scratch} is the live database")
        with self.connect("postgres") as admin:
            drop_database(admin, scratch)  # a leftover of an interrupted check
            try:
                return self._restore_as(admin, scratch, folder, manifest, sanity_queries)
            finally:
                drop_database(admin, scratch)

    def stage(self, folder: Path, manifest: Manifest) -> Staged:
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        live = self.name
        staged = Staged(
            manifest, live, f"{live}__restore_{stamp}"[:63], f"{live}__prerestore_{stamp}"[:63]
        )
        if staged.restored == live or staged.kept == live:
            raise BadInput(f"the restore target {staged.restored} is the live database")
        with self.connect("postgres") as admin:
            problems = self._restore_as(admin, staged.restored, folder, manifest)
            if problems:
                drop_database(admin, staged.restored)
                raise BackupBad(
                    f"the restored copy does not match {folder.name}: {'; '.join(problems)}",
                    hint="the live database was not touched",
                )
        return staged

    def _restore_as(
        self,
        admin: psycopg.Connection[Any],
        name: str,
        folder: Path,
        manifest: Manifest,
        sanity_queries: tuple[str, ...] = (),
    ) -> list[str]:
        """Restore the backup into a new database ``name`` (owned like the live one) and say how
        it differs from the manifest; a restore that fails drops ``name`` again."""
        create_database(admin, name, like=self.name)
        try:
            restore_into(self, name, folder / manifest.dump.name)
            with self.connect(name) as conn:
                return manifest.fingerprint.differences(fingerprint(conn)) + sanity(
                    conn, sanity_queries
                )
        except BaseException:
            drop_database(admin, name)
            raise

    def discard(self, staged: Staged) -> None:
        with self.connect("postgres") as admin:
            drop_database(admin, staged.restored)

    def swap(self, staged: Staged) -> None:
        self._rename_pair(staged.live, staged.kept, staged.restored, staged.live)

    def swap_back(self, staged: Staged) -> None:
        self._rename_pair(staged.live, staged.restored, staged.kept, staged.live)

    def _rename_pair(self, a: str, a_to: str, b: str, b_to: str) -> None:
        """Rename ``a`` to ``a_to`` and then ``b`` to ``b_to`` in one transaction.

        ``a`` refuses new connections first and its sessions are ended (ALTER DATABASE RENAME
        refuses while anyone is connected); on any failure it accepts connections again.
        """
        name = sql.Identifier
        with self.connect("postgres") as admin:
            admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(name(a)))
            try:
                _end_sessions(admin, a)
                with admin.transaction():
                    admin.execute(
                        sql.SQL("ALTER DATABASE {} RENAME TO {}").format(name(a), name(a_to))
                    )
                    admin.execute(
                        sql.SQL("ALTER DATABASE {} RENAME TO {}").format(name(b), name(b_to))
                    )
            finally:
                renamed = database_exists(admin, a_to)
                admin.execute(
                    sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(
                        name(a_to if renamed else a)
                    )
                )


def sanity(conn: psycopg.Connection[Any], queries: tuple[str, ...]) -> list[str]:
    """The runbook's sanity queries on a restored copy: each must answer true."""
    problems = []
    for query in queries:
        try:
            row = conn.execute(query).fetchone()
        except psycopg.Error as exc:
            problems.append(f"sanity query {query!r} failed: {_first_line(exc)}")
            continue
        if row is None or not row[0]:
            problems.append(f"sanity query {query!r} is not true on the restored copy")
    return problems


def _end_sessions(admin: psycopg.Connection[Any], database: str, wait: float = 10.0) -> None:
    """Terminate every session on ``database`` and wait until they are gone."""
    deadline = time.monotonic() + wait
    while True:
        row = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchone()
        if row is None or row[0] == 0 or time.monotonic() > deadline:
            return
        time.sleep(0.05)
