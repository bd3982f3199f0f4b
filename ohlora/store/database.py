"""The memory database file itself: opening it (read-write, or read-only where the file or its
folder is not writable), what SQLite's failures on it mean in one line, and its integrity check.

- `connect(path)`: the connection MemoryStore uses. Read-only when the file or its folder is not
  writable (then no migration and no journal-mode change, and a database that still needs a
  migration is refused in one line); `mode=ro`, or `immutable=1` for a WAL database whose shared
  memory file cannot be made in a read-only folder (nothing can be writing it there).
- `store_error(e, path)`: SQLite's error as a StoreError (a one-line OhloraError: damaged,
  read-only, busy, full, unusable) or None for anything else (a bug, raised as it is).
- `check_database(path)`: `PRAGMA integrity_check` on a read-only connection, and how to recover.
"""

from __future__ import annotations

import os
import shlex
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ohlora.errors import OhloraError
from ohlora.store.migrations import migrate, pending


class StoreError(OhloraError):
    """The memory database cannot do what was asked (damaged, read-only, busy, full); nothing was
    changed. One line for the CLI (exit 2); a 500 with that line from the server."""

    code = "store_error"


class StoreDamaged(StoreError):
    code = "store_damaged"


class StoreReadOnly(StoreError):
    code = "store_read_only"


def store_error(e: sqlite3.Error, path: Path | str | None) -> StoreError | None:
    """What SQLite's `e` on the database at `path` means for the user, or None when it is not
    about the file (a constraint, a misuse: a bug)."""
    name = getattr(e, "sqlite_errorname", None) or ""
    where = f"memory database {path or ':memory:'}"
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in str(e):
        return StoreDamaged(f"{where} is damaged ({e}); nothing was changed. `ohlora store check` says what "
                            "is wrong and how to recover what can still be read")
    if name.startswith("SQLITE_READONLY"):
        return StoreReadOnly(f"{where} is read-only (the file or its folder is not writable): nothing was "
                             "changed; reading it works (memory list, history list/show, users list)")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return StoreError(f"{where} is busy ({e}): another process holds it; nothing was changed, try again")
    if name.startswith("SQLITE_FULL"):
        return StoreError(f"{where}: the disk is full; nothing was changed")
    if name.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")):
        return StoreError(f"cannot use {where} ({e}); nothing was changed")
    return None


def writable(path: Path) -> bool:
    """Whether ohlora may write the database at `path`: the file (if there) and its folder (SQLite
    writes its journal or WAL files beside it)."""
    folder_ok = os.access(path.parent, os.W_OK)
    return folder_ok and (not path.exists() or os.access(path, os.W_OK))


def connect(path: Path | None) -> tuple[sqlite3.Connection, bool]:
    """(connection, read_only) for the database at `path` (None: in memory), migrated if it may
    be written; raises sqlite3.Error, or StoreReadOnly for what a read-only home cannot do."""
    if path is None or writable(path):
        db = sqlite3.connect(":memory:" if path is None else str(path), check_same_thread=False)
        try:
            db.execute("PRAGMA foreign_keys = ON")
            if path is not None:
                db.execute("PRAGMA journal_mode = WAL")
            migrate(db)
        except BaseException:
            db.close()
            raise
        return db, False
    if not path.exists():
        raise StoreReadOnly(f"there is no memory database at {path} yet and its folder is read-only: "
                            "nothing can be stored there")
    db = open_read_only(path)
    try:
        db.execute("PRAGMA foreign_keys = ON")
        missing = pending(db)
    except BaseException:
        db.close()
        raise
    if missing:
        db.close()
        raise StoreReadOnly(f"memory database {path} is read-only and needs upgrading first ({len(missing)} "
                            "migration(s)): run ohlora once where it may write the file")
    return db, True


def open_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection that never writes the file (nor creates it)."""
    uri = path.resolve().as_uri()
    db = sqlite3.connect(uri + "?mode=ro", uri=True, check_same_thread=False)
    try:
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.OperationalError as e:
        db.close()
        # A WAL database needs its -shm file; in a read-only folder none can be made, and no
        # process can be writing there either: read the file as it is.
        if not (getattr(e, "sqlite_errorname", None) or "").startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")):
            raise
    return sqlite3.connect(uri + "?immutable=1", uri=True, check_same_thread=False)


MAX_PROBLEMS = 10


@dataclass(frozen=True)
class CheckReport:
    path: Path
    exists: bool
    problems: tuple[str, ...] = ()
    """What `PRAGMA integrity_check` found (or why it could not run); empty: ok."""
    pages: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        if not self.exists:
            return [f"no memory database at {self.path} yet: nothing to check"]
        if self.ok:
            return [f"ok: {self.path} passes SQLite's integrity check ({self.pages} pages)"]
        shown = [f"  {p}" for p in self.problems[:MAX_PROBLEMS]]
        if len(self.problems) > MAX_PROBLEMS:
            shown.append(f"  ... and {len(self.problems) - MAX_PROBLEMS} more")
        return [f"{self.path} is damaged; SQLite's integrity check says:", *shown, *recovery(self.path)]


def recovery(path: Path) -> list[str]:
    """How to rescue what can still be read into a new file, keeping the damaged one."""
    old, new = shlex.quote(str(path)), shlex.quote(str(path.with_name(path.stem + ".recovered" + path.suffix)))
    kept = shlex.quote(str(path.with_name(path.stem + ".damaged" + path.suffix)))
    return [
        "To recover what can still be read (stop `ohlora serve` and chats first; the damaged file is kept):",
        f"  sqlite3 {old} .recover | sqlite3 {new}",
        f"  (a sqlite3 without .recover: sqlite3 {old} .dump | sed 's/^ROLLBACK; -- due to errors$/COMMIT;/' "
        f"| sqlite3 {new})",
        f"  ohlora store check --path {new}",
        f"  mv {old} {kept} && mv {new} {old}",
    ]


def check_database(path: Path) -> CheckReport:
    """Run `PRAGMA integrity_check` on a read-only connection: the file is never changed."""
    if not path.exists():
        return CheckReport(path, False)
    try:
        db = open_read_only(path)
    except sqlite3.Error as e:
        return CheckReport(path, True, (f"cannot open it: {e}",))
    try:
        rows = [r[0] for r in db.execute("PRAGMA integrity_check").fetchall()]
        pages = db.execute("PRAGMA page_count").fetchone()[0]
    except sqlite3.Error as e:  # damage it cannot even walk past (a table's root page)
        return CheckReport(path, True, (str(e),))
    finally:
        db.close()
    return CheckReport(path, True, tuple(r for r in rows if r != "ok"), pages)
