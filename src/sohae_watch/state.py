"""The history database of ``watch``: SQLite, versioned schema, migrations, a run lock.

Tables (schema version 1):

- ``meta``: key/value; ``site_id`` binds a database to one site.
- ``acquisitions``: one row per acquisition date seen: its files, a content fingerprint (so a
  replaced file is noticed), its usable fraction over the AOI and whether it is ``usable``,
  ``unusable`` (too cloudy / too little of the AOI) or ``failed`` (unreadable, retried next run).
- ``pairs`` / ``pair_structures`` / ``pair_activity``: every comparison computed, keyed by both
  dates, both fingerprints and the site file's fingerprint (a cache: a pair is never computed
  twice for the same inputs), with the per-structure calls and new-activity areas it found.
- ``observations``: per structure and usable date, whether it was observed and its state then.
- ``events``: the history analysts cite, rebuilt from the pairs in one transaction on every run.
- ``log``: what each run did that changes the record (history corrections, skips, failures).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from sohae_watch.errors import DeviceFullError, InputError, ProcessingError, SohaeError

SCHEMA_VERSION = 2

_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE acquisitions (
    date TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    files TEXT NOT NULL,
    usable_fraction REAL,
    status TEXT NOT NULL CHECK (status IN ('usable', 'unusable', 'failed')),
    reason TEXT,
    first_seen TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE pairs (
    id INTEGER PRIMARY KEY,
    before_date TEXT NOT NULL,
    after_date TEXT NOT NULL,
    before_fp TEXT NOT NULL,
    after_fp TEXT NOT NULL,
    site_fp TEXT NOT NULL,
    report_dir TEXT,
    computed_at TEXT NOT NULL,
    UNIQUE (before_date, after_date, before_fp, after_fp, site_fp)
);
CREATE TABLE pair_structures (
    pair_id INTEGER NOT NULL REFERENCES pairs (id) ON DELETE CASCADE,
    structure_id TEXT NOT NULL,
    status TEXT NOT NULL,
    confidence REAL NOT NULL,
    changed_fraction REAL,
    observed_fraction REAL,
    PRIMARY KEY (pair_id, structure_id)
);
CREATE TABLE pair_activity (
    pair_id INTEGER NOT NULL REFERENCES pairs (id) ON DELETE CASCADE,
    n INTEGER NOT NULL,
    change_type TEXT,
    lon REAL NOT NULL,
    lat REAL NOT NULL,
    area_m2 REAL NOT NULL,
    confidence REAL NOT NULL,
    PRIMARY KEY (pair_id, n)
);
CREATE TABLE observations (
    structure_id TEXT NOT NULL,
    date TEXT NOT NULL,
    observed INTEGER NOT NULL,
    state TEXT NOT NULL,
    status TEXT,
    since_date TEXT,
    confidence REAL,
    PRIMARY KEY (structure_id, date)
);
CREATE TABLE events (
    key TEXT PRIMARY KEY,
    structure_id TEXT,
    structure_name TEXT NOT NULL,
    status TEXT NOT NULL,
    event TEXT NOT NULL,
    before_date TEXT NOT NULL,
    after_date TEXT NOT NULL,
    confidence REAL NOT NULL,
    sentence TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE INDEX events_order ON events (after_date, before_date);
CREATE TABLE log (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
"""


# version 2: acquisitions processed and then removed from the imagery folder (archived) keep
# their results; the row stays, marked here, until `watch --forget DATE`
_V2 = """
CREATE TABLE archived (
    date TEXT PRIMARY KEY REFERENCES acquisitions (date) ON DELETE CASCADE,
    since TEXT NOT NULL
);
"""


def _script(sql: str) -> Callable[[sqlite3.Connection], None]:
    """A migration running ``sql`` statement by statement inside the caller's transaction
    (``executescript`` would commit it)."""

    def run(con: sqlite3.Connection) -> None:
        for statement in sql.split(";"):
            if statement.strip():
                con.execute(statement)

    return run


# Migration n takes a database at version n to version n + 1.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_script(_V1), _script(_V2))
assert len(MIGRATIONS) == SCHEMA_VERSION


class LockBusy(SohaeError):
    """Another ``watch`` run holds the database's lock."""


def default_state_path(site_id: str) -> Path:
    """``$XDG_DATA_HOME/sohae-watch/<site>.db``, else ``~/.local/share/sohae-watch/<site>.db``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "sohae-watch" / f"{site_id}.db"


def schema_version(con: sqlite3.Connection) -> int:
    """The database's schema version (0 for a new, empty database)."""
    row = con.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if row is None:
        return 0
    got = con.execute("SELECT version FROM schema_version").fetchone()
    return int(got[0]) if got else 0


def migrate(con: sqlite3.Connection, path: Path) -> int:
    """Bring the schema to SCHEMA_VERSION, each step in its own transaction; the version reached."""
    if schema_version(con) == SCHEMA_VERSION:
        return SCHEMA_VERSION  # the common case: no write lock taken
    while True:
        con.execute("BEGIN IMMEDIATE")
        try:
            version = schema_version(con)
            if version > SCHEMA_VERSION:
                raise InputError(
                    f"{path}: history database has schema version {version}, newer than this "
                    f"sohae-watch understands ({SCHEMA_VERSION}); upgrade sohae-watch"
                )
            if version == SCHEMA_VERSION:
                con.execute("COMMIT")
                return version
            MIGRATIONS[version](con)
            if version == 0:
                con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                con.execute("INSERT INTO schema_version VALUES (?)", (version + 1,))
            else:
                con.execute("UPDATE schema_version SET version = ?", (version + 1,))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def connect(path: Path, *, create: bool = True) -> sqlite3.Connection:
    """Open (creating and migrating as needed) the history database at ``path``."""
    path = Path(path).expanduser()
    if not create and not path.is_file():
        raise InputError(
            f"{path}: no history database here; run `sohae-watch watch` for this site first, "
            "or give --state DB"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(path, timeout=60.0, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise InputError(
            f"{path}: cannot open the history database ({exc}); check --state"
        ) from exc
    try:
        con.row_factory = sqlite3.Row
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "schema_version" not in tables:
            raise InputError(
                f"{path}: not a sohae-watch history database (it holds other tables: "
                f"{', '.join(sorted(tables)[:3])}); give another --state"
            )
        if not create and not tables:
            raise InputError(
                f"{path}: no history recorded in this database; run `sohae-watch watch` for this "
                "site first, or give --state DB"
            )
        con.execute("PRAGMA foreign_keys = ON")
        con.execute("PRAGMA busy_timeout = 60000")
        with contextlib.suppress(sqlite3.OperationalError):
            con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA synchronous = FULL")
        migrate(con, path)
    except sqlite3.OperationalError as exc:
        con.close()
        raise database_error(path, exc) from exc
    except sqlite3.DatabaseError as exc:
        con.close()
        raise InputError(
            f"{path}: not a sohae-watch history database ({exc}); give another --state"
        ) from exc
    except BaseException:
        con.close()
        raise
    return con


def database_error(path: Path, exc: sqlite3.OperationalError) -> SohaeError:
    """A failure to read or write the history database as one line: a full device or a failing
    disk, or a lock held too long (exit 1, naming the fix), else a database that is not a
    history (exit 2)."""
    text = str(exc)
    if "locked" in text:
        return ProcessingError(
            f"{path}: the history database stayed locked ({text}); another program holds it, "
            "retry when it is done"
        )
    if "full" in text or "disk I/O" in text:
        return DeviceFullError(
            f"{path}: cannot write the history database ({text}); free space on its device or "
            "give another --state"
        )
    return InputError(f"{path}: not a sohae-watch history database ({text}); give another --state")


def bind_site(con: sqlite3.Connection, site_id: str, path: Path) -> None:
    """Record the site a new database belongs to; InputError if it belongs to another one."""
    row = con.execute("SELECT value FROM meta WHERE key = 'site_id'").fetchone()
    if row is None:
        with transaction(con):
            row = con.execute("SELECT value FROM meta WHERE key = 'site_id'").fetchone()
            if row is None:
                con.execute("INSERT INTO meta VALUES ('site_id', ?)", (site_id,))
                return
    if row[0] != site_id:
        raise InputError(
            f"{path}: this history database belongs to site {row[0]!r}, not {site_id!r}; "
            "give another --state"
        )


@contextlib.contextmanager
def transaction(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception (also KeyboardInterrupt)."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


@contextlib.contextmanager
def run_lock(db_path: Path, *, wait: float = 0.0) -> Iterator[Path]:
    """Hold an exclusive lock on ``<db>.lock`` for one ``watch`` run.

    ``flock`` is released by the kernel when the process dies, so a killed run never leaves a
    stale lock. Raises LockBusy when another run holds it (after ``wait`` seconds).
    """
    import time

    lock_path = Path(str(db_path) + ".lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fh: IO[str] = open(lock_path, "a+", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise InputError(
            f"{db_path}: cannot create the history database's folder or lock ({exc.strerror}); "
            "give another --state"
        ) from exc
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                if time.monotonic() >= deadline:
                    fh.seek(0)
                    holder = fh.read().strip() or "unknown"
                    raise LockBusy(
                        f"{db_path}: another watch run (pid {holder}) is working on this "
                        "history; nothing done"
                    ) from exc
                time.sleep(0.1)
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield lock_path
    finally:
        fh.close()
