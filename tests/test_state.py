"""The history database: schema version and migrations, site binding, transactions, the lock."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sohae_watch.errors import InputError
from sohae_watch.state import (
    SCHEMA_VERSION,
    LockBusy,
    bind_site,
    connect,
    default_state_path,
    run_lock,
    schema_version,
    transaction,
)


def test_new_database_is_migrated_to_current_version(tmp_path: Path) -> None:
    con = connect(tmp_path / "a" / "state.db")
    assert schema_version(con) == SCHEMA_VERSION
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"acquisitions", "pairs", "pair_structures", "observations", "events", "log"} <= tables
    con.close()
    again = connect(tmp_path / "a" / "state.db")  # reopening migrates nothing
    assert schema_version(again) == SCHEMA_VERSION
    again.close()


def test_a_version_1_history_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    """Version 2 adds the table of archived acquisitions; a history made by version 1 keeps
    everything it had."""
    from sohae_watch.state import MIGRATIONS

    path = tmp_path / "state.db"
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("BEGIN")
    MIGRATIONS[0](raw)
    raw.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    raw.execute("INSERT INTO schema_version VALUES (1)")
    raw.execute(
        "INSERT INTO acquisitions VALUES ('2019-02-16', 'fp', '[]', 1.0, 'usable', NULL, 'x', 'x')"
    )
    raw.execute("COMMIT")
    raw.close()
    con = connect(path)
    assert schema_version(con) == SCHEMA_VERSION == 2
    assert con.execute("SELECT date FROM acquisitions").fetchall()[0][0] == "2019-02-16"
    assert con.execute("SELECT count(*) FROM archived").fetchone()[0] == 0
    con.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    connect(path).close()
    raw = sqlite3.connect(path)
    raw.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    raw.commit()
    raw.close()
    with pytest.raises(InputError, match="newer than this sohae-watch understands"):
        connect(path)


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_text("hello, this is not sqlite" * 100)
    with pytest.raises(InputError, match="not a sohae-watch history database"):
        connect(path)


def test_missing_database_without_create(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="run `sohae-watch watch`"):
        connect(tmp_path / "none.db", create=False)
    assert not (tmp_path / "none.db").exists()


def test_database_is_bound_to_one_site(tmp_path: Path) -> None:
    con = connect(tmp_path / "state.db")
    bind_site(con, "sohae", tmp_path / "state.db")
    bind_site(con, "sohae", tmp_path / "state.db")
    with pytest.raises(InputError, match="belongs to site 'sohae', not 'other'"):
        bind_site(con, "other", tmp_path / "state.db")


def test_transaction_rolls_back(tmp_path: Path) -> None:
    con = connect(tmp_path / "state.db")
    with pytest.raises(RuntimeError), transaction(con):
        con.execute("INSERT INTO log (at, kind, message) VALUES ('t', 'k', 'm')")
        raise RuntimeError("killed")
    assert con.execute("SELECT count(*) FROM log").fetchone()[0] == 0


def test_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with (
        run_lock(db),
        pytest.raises(LockBusy, match="another watch run"),
        run_lock(db, wait=0.2),
    ):
        pass
    with run_lock(db):  # released
        pass


def test_default_path_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_state_path("sohae") == tmp_path / "sohae-watch" / "sohae.db"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_state_path("sohae") == Path.home() / ".local/share/sohae-watch/sohae.db"
