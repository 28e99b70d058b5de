"""One sqlite file for stats counters, per-TU decision records and the decision cache.

sqlite in WAL mode with a busy timeout makes concurrent `make -j` writers safe. The database is
never allowed to break a build: a file sqlite itself calls corrupt (SQLITE_CORRUPT, SQLITE_NOTADB)
is moved aside and recreated; any other failure (a full disk, a read-only dir, a lock held too
long, text it cannot store) skips that write, logged, and leaves the file as it is.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from clang_llm.records import Event, TURecord
from clang_llm.safe_text import path_text
from clang_llm.state_dir import private_file, private_state_dir

P = ParamSpec("P")
T = TypeVar("T")

log = logging.getLogger("clang_llm")
DB_NAME = "clang-llm.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (ts REAL NOT NULL, kind TEXT NOT NULL, reason TEXT NOT NULL,
  count_before INTEGER, count_after INTEGER, oz_count INTEGER,
  text INTEGER, alloc INTEGER, oz_text INTEGER, oz_alloc INTEGER, cache_hit INTEGER, model_calls INTEGER,
  remote_calls INTEGER, opt_evals INTEGER, model_s REAL);
CREATE TABLE IF NOT EXISTS records (object TEXT PRIMARY KEY, ts REAL NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, pass_list TEXT NOT NULL, data TEXT,
  created REAL NOT NULL, last_used REAL NOT NULL, hits INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS cache_lru ON cache(last_used);
CREATE TABLE IF NOT EXISTS objects (key TEXT PRIMARY KEY, data BLOB NOT NULL, meta TEXT NOT NULL,
  last_used REAL NOT NULL);
CREATE TABLE IF NOT EXISTS facts (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL);
"""
# Columns added to `events` after its first release: added in place to an older database.
_ADDED_EVENT_COLUMNS = {"remote_calls": "INTEGER", "opt_evals": "INTEGER", "model_s": "REAL",
                        **{c: "REAL" for c in ("frontend_s", "oz_s", "candidates_s", "codegen_s", "verify_s",
                                               "total_s")}}
# The time columns `cost_totals` sums: where a build's seconds went.
TIME_COLUMNS = ("frontend_s", "oz_s", "model_s", "candidates_s", "codegen_s", "verify_s", "total_s")
MAX_FACTS = 10_000  # toolchain facts (pipeline strings, target options) of distinct flag sets
MAX_OBJECT_BYTES = 8 << 20  # larger objects are rebuilt from the cached decision instead


_CORRUPT_CODES = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB (primary codes)


def is_corrupt(err: BaseException) -> bool:
    """Whether sqlite said the file is damaged (not full, locked, read-only or missing)."""
    code = getattr(err, "sqlite_errorcode", None)
    return isinstance(err, sqlite3.DatabaseError) and isinstance(code, int) and code & 0xFF in _CORRUPT_CODES


def _add_columns(conn: sqlite3.Connection) -> None:
    have = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
    for name, typ in _ADDED_EVENT_COLUMNS.items():
        if name not in have:
            conn.execute(f"ALTER TABLE events ADD COLUMN {name} {typ}")


class Database:
    def __init__(self, state_dir: Path, timeout: float = 5.0) -> None:
        self.path = Path(state_dir) / DB_NAME
        self.timeout = timeout
        # One connection per thread (the loop validates candidates on a thread pool, and the
        # toolchain-fact cache is used from there); sqlite serializes their writes.
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    @property
    def _conn(self) -> sqlite3.Connection | None:
        return getattr(self._local, "conn", None)

    @_conn.setter
    def _conn(self, conn: sqlite3.Connection | None) -> None:
        self._local.conn = conn
        if conn is not None:
            with self._lock:
                self._all.append(conn)

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            private_state_dir(self.path.parent)
            private_file(self.path)
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
                _add_columns(conn)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            except sqlite3.DatabaseError as e:
                conn.close()
                if not is_corrupt(e):
                    raise  # full, locked, read-only: the file is fine, this write is skipped
                self._recover(e)
                conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
                conn.execute(
                    "INSERT INTO events(ts, kind, reason) VALUES (?, 'error', 'db-recovered')", (time.time(),)
                )
            self._conn = conn
        return self._conn

    def _recover(self, err: Exception) -> None:
        """Move a corrupt database aside (kept for inspection) so a fresh one can be made."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.path) + suffix)
            if p.exists():
                try:
                    p.replace(Path(f"{self.path}.corrupt-{stamp}{suffix}"))
                except OSError:
                    pass
        log.warning("database %s was corrupt (%s); moved aside and recreated", self.path, err)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # no transaction left to roll back (a failed COMMIT ends it)
            raise

    def safe(self, what: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | None:
        """Run a database operation; on any failure log it and return None (a record or a counter
        is never worth a build: a full disk, a read-only dir, a path sqlite cannot store)."""
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001
            log.warning("database %s failed (%s): %s", what, self.path, e)
            if is_corrupt(e):
                self.close()
                self._recover(e)
            return None

    # -- stats -----------------------------------------------------------------
    def touch(self) -> None:
        """Open the database (creating it if need be) and leave it open."""
        self._connect()

    def add_event(self, event: Event) -> None:
        m = event.columns()
        cols = ["ts", *m.keys()]
        with self._tx() as c:
            c.execute(
                f"INSERT INTO events({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
                [time.time(), *m.values()],
            )

    def event_counts(self) -> list[tuple[str, str, int]]:
        rows = self._connect().execute(
            "SELECT kind, reason, COUNT(*) FROM events GROUP BY kind, reason ORDER BY kind, COUNT(*) DESC"
        )
        return [(k, r, n) for k, r, n in rows]

    def size_totals(self) -> dict[str, int]:
        row = self._connect().execute(
            "SELECT COUNT(*), SUM(count_after), SUM(oz_count), SUM(text), SUM(oz_text), SUM(alloc),"
            " SUM(oz_alloc), SUM(cache_hit), SUM(model_calls), SUM(remote_calls) FROM events"
            " WHERE oz_text IS NOT NULL"
        ).fetchone()
        keys = ["tus", "count", "oz_count", "text", "oz_text", "alloc", "oz_alloc", "cache_hits", "model_calls",
                "remote_calls"]
        return {k: int(v or 0) for k, v in zip(keys, row, strict=True)}

    def cost_totals(self) -> dict[str, float | int | None]:
        """What the TUs cost: opt runs per TU that ran opt (mean, max; the verified rerun counted)
        and the seconds of each step, summed over every TU compiled (`TIME_COLUMNS`)."""
        n, mean, top = self._connect().execute(
            "SELECT COUNT(opt_evals), AVG(opt_evals), MAX(opt_evals) FROM events WHERE opt_evals IS NOT NULL"
        ).fetchone()
        sums = self._connect().execute(
            f"SELECT {', '.join(f'SUM({c})' for c in TIME_COLUMNS)} FROM events").fetchone()
        return {"tus": int(n or 0), "opt_evals_mean": None if mean is None else round(float(mean), 2),
                "opt_evals_max": None if top is None else int(top),
                **{c: round(float(v or 0.0), 3) for c, v in zip(TIME_COLUMNS, sums, strict=True)}}

    def zero(self) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM events")

    # -- records ---------------------------------------------------------------
    def put_record(self, record: TURecord) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO records(object, ts, data) VALUES (?, ?, ?)",
                (path_text(record.object), time.time(), json.dumps(record.to_json(), default=str)),
            )

    def get_record(self, obj: str) -> TURecord | None:
        row = self._connect().execute("SELECT data FROM records WHERE object = ?", (path_text(obj),)).fetchone()
        return TURecord.from_json(json.loads(row[0])) if row else None

    def all_records(self) -> list[TURecord]:
        return [TURecord.from_json(json.loads(d))
                for (d,) in self._connect().execute("SELECT data FROM records ORDER BY ts")]

    # -- decision cache ----------------------------------------------------------
    def cache_get(self, key: str) -> tuple[str, dict[str, Any]] | None:
        with self._tx() as c:
            row = c.execute("SELECT pass_list, data FROM cache WHERE key = ?", (key,)).fetchone()
            if row:
                c.execute("UPDATE cache SET last_used = ?, hits = hits + 1 WHERE key = ?", (time.time(), key))
        if not row:
            return None
        return row[0], json.loads(row[1] or "{}")

    def cache_put(self, key: str, pass_list: str, data: dict[str, Any], max_entries: int) -> None:
        now = time.time()
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO cache(key, pass_list, data, created, last_used) VALUES (?,?,?,?,?)",
                (key, pass_list, json.dumps(data, default=str), now, now),
            )
            (n,) = c.execute("SELECT COUNT(*) FROM cache").fetchone()
            if n > max_entries:  # LRU eviction
                c.execute(
                    "DELETE FROM cache WHERE key IN (SELECT key FROM cache ORDER BY last_used LIMIT ?)",
                    (n - max_entries,),
                )

    # -- shipped objects of cached decisions (ccache-style) -----------------------
    def object_get(self, key: str) -> tuple[bytes, dict[str, Any]] | None:
        with self._tx() as c:
            row = c.execute("SELECT data, meta FROM objects WHERE key = ?", (key,)).fetchone()
            if row:  # a hit of the decision too (same key): `cache` and `stats` count it
                c.execute("UPDATE objects SET last_used = ? WHERE key = ?", (time.time(), key))
                c.execute("UPDATE cache SET last_used = ?, hits = hits + 1 WHERE key = ?", (time.time(), key))
        if not row:
            return None
        return bytes(row[0]), json.loads(row[1])

    def object_put(self, key: str, data: bytes, meta: dict[str, Any], max_entries: int) -> None:
        if len(data) > MAX_OBJECT_BYTES:
            return
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO objects(key, data, meta, last_used) VALUES (?,?,?,?)",
                      (key, data, json.dumps(meta, default=str), time.time()))
            (n,) = c.execute("SELECT COUNT(*) FROM objects").fetchone()
            if n > max_entries:  # LRU eviction
                c.execute("DELETE FROM objects WHERE key IN (SELECT key FROM objects ORDER BY last_used LIMIT ?)",
                          (n - max_entries,))

    # -- toolchain facts: what clang answers for a flag set, asked once ---------------
    def fact_get(self, key: str) -> str | None:
        row = self._connect().execute("SELECT value FROM facts WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def fact_put(self, key: str, value: str) -> None:
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO facts(key, value, created) VALUES (?,?,?)", (key, value, time.time()))
            (n,) = c.execute("SELECT COUNT(*) FROM facts").fetchone()
            if n > MAX_FACTS:
                c.execute("DELETE FROM facts WHERE key IN (SELECT key FROM facts ORDER BY created LIMIT ?)",
                          (n - MAX_FACTS,))

    def cache_stats(self) -> dict[str, int]:
        n, hits = self._connect().execute("SELECT COUNT(*), COALESCE(SUM(hits),0) FROM cache").fetchone()
        return {"entries": int(n), "hits": int(hits)}

    def cache_clear(self) -> int:
        with self._tx() as c:
            c.execute("DELETE FROM facts")
            c.execute("DELETE FROM objects")
            return c.execute("DELETE FROM cache").rowcount

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self._local = threading.local()
