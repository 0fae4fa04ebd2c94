"""Vote together: rooms, rounds and votes in SQLite, and the rules of who may do what.

A *room* is one class session (a code students type or open as `?room=CODE`); each *round* is one clip the
class votes on; a *vote* is one emotion per voter per round (voting again replaces it). Everything lives in one
SQLite database (`rooms.sqlite3`, WAL mode, a connection per call, writes in `BEGIN IMMEDIATE` transactions)
and a `clips/` folder under the data root (`amber2.files.data_root`), so rounds and votes survive a restart and
concurrent voters lose nothing.

Rules: room codes are drawn with `secrets` (8 characters of an alphabet without look-alikes, about 40 bits);
the teacher key (32 random bytes) is stored only as its SHA-256 and compared with `secrets.compare_digest`;
voters are stored as an HMAC of their browser session under a server secret, never a name or an address;
rooms expire `ttl_hours` after they open and are then deleted with their clips; caps on rooms, rounds and
votes per minute bound what a script can write. Every refusal is a `RoomError` whose message is for a person.
"""
from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import os
import secrets
import sqlite3
import time
import zipfile
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import soundfile as sf

from amber2.errors import UserError
from amber2.audio import SAMPLE_RATE
from amber2.heads import FIELDS
from amber2.labels import LabelError, get_space

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read off a projector without doubt
DB_NAME = "rooms.sqlite3"
CLIPS = "clips"
SECRET_NAME = "secret.key"
HEADS = FIELDS     # the heads a round keeps, by the name an Analysis gives them (amber2.heads)

SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (
    code         TEXT PRIMARY KEY,
    teacher_hash TEXT NOT NULL UNIQUE,   -- SHA-256 of the teacher key; the key itself is never stored
    label_space  TEXT NOT NULL,
    classes      TEXT NOT NULL,          -- JSON list, the order of the vote columns
    created_at   REAL NOT NULL,
    expires_at   REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rounds (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    room        TEXT NOT NULL REFERENCES rooms(code) ON DELETE CASCADE,
    number      INTEGER NOT NULL,
    clip        TEXT NOT NULL,           -- file name under clips/
    transcript  TEXT NOT NULL,
    model       TEXT NOT NULL,           -- JSON {"audio", "text", "fused"}: shown only after the reveal
    created_at  REAL NOT NULL,
    closed_at   REAL,
    revealed_at REAL,
    UNIQUE (room, number)
);
CREATE TABLE IF NOT EXISTS votes (
    round_id INTEGER NOT NULL REFERENCES rounds(id) ON DELETE CASCADE,
    voter    TEXT NOT NULL,              -- HMAC of the browser session: no name, no address
    emotion  TEXT NOT NULL,
    voted_at REAL NOT NULL,
    PRIMARY KEY (round_id, voter)
);
CREATE INDEX IF NOT EXISTS votes_time ON votes (voted_at);
CREATE INDEX IF NOT EXISTS rounds_time ON rounds (created_at);
"""


class RoomError(UserError, ValueError):
    """A refused request (unknown room, wrong key, closed round, a cap reached); the message is for a person."""


@dataclass(frozen=True)
class RoomLimits:
    """How long rooms live and how much anyone can write per minute (bounds the disk a script can fill: at most
    live_rooms x rounds_per_room clips of at most 60 s, about 1 MB each as FLAC)."""

    ttl_hours: float = 24.0
    code_length: int = 8
    live_rooms: int = 50
    rooms_per_minute: int = 6           # all visitors together
    rounds_per_room: int = 30
    rounds_per_minute: int = 12         # new clips, all rooms together
    voters_per_round: int = 400
    votes_per_minute: int = 1200        # per room: voters who voted or changed their vote in the last minute


@dataclass(frozen=True)
class Teacher:
    """What the teacher's browser keeps: the room and the key that controls it."""

    room: str
    key: str


@dataclass(frozen=True)
class RoundState:
    """The current round of a room as stored: votes counted per class, and the model's reading."""

    room: str
    number: int
    classes: list[str]
    label_space: str
    counts: np.ndarray          # (C,) votes per class
    transcript: str
    clip: Path
    model: dict[str, np.ndarray]  # "audio", "text", "fused" -> (C,)
    closed: bool
    revealed: bool
    expires_at: float

    @property
    def n(self) -> int:
        return int(self.counts.sum())


@dataclass(frozen=True)
class NewRound:
    """A clip ready for voting: its file (already under clips/), its words and the model's three readings."""

    clip: str
    transcript: str
    model: dict[str, Sequence[float]]


def normalize_code(code: str | None) -> str:
    """A typed room code as stored: upper case, spaces and dashes dropped ('abcd-efgh' -> 'ABCDEFGH')."""
    return "".join(ch for ch in str(code or "").upper() if ch.isalnum())


def format_code(code: str) -> str:
    """The code as shown to a class: two groups of four ('ABCD-EFGH')."""
    half = len(code) // 2
    return f"{code[:half]}-{code[half:]}" if len(code) >= 6 else code


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class RoomStore:
    """Rooms, rounds and votes under `root` (see the module docstring). Safe to share between threads: every
    call opens its own connection."""

    def __init__(self, root: str | Path, limits: RoomLimits = RoomLimits(),
                 clock: Callable[[], float] = time.time):
        self.root = Path(root)
        self.limits = limits
        self.clock = clock  # a parameter so tests can move time forward (expiry, per-minute caps)
        self.clips = self.root / CLIPS
        self.clips.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / DB_NAME
        self.secret = self._server_secret()
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; persists in the file
            db.executescript(SCHEMA)

    # ---- plumbing ----

    def _server_secret(self) -> bytes:
        """32 random bytes kept in the data folder (mode 600): the HMAC key for voters, stable across restarts."""
        path = self.root / SECRET_NAME
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes()
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
        return path.read_bytes()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # autocommit mode: transactions are explicit (`_write`), reads see the last committed state
        with closing(sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None)) as db:
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA busy_timeout=30000")
            yield db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE takes the write lock first, so checks and writes inside it see
        no other writer (a cap checked here cannot be overrun by a concurrent request)."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def voter_id(self, session: str | None) -> str:
        """What is stored for a voter: an HMAC of their session token (no way back to the session)."""
        if not session:
            raise RoomError("Your browser session is not known yet: reload the page and vote again.")
        return hmac.new(self.secret, str(session).encode("utf-8"), hashlib.sha256).hexdigest()[:32]

    def _room_row(self, db: sqlite3.Connection, code: str | None) -> tuple:
        room = normalize_code(code)
        if not room:
            raise RoomError("No room code given: type the code the teacher shows, or open their link.")
        row = db.execute("SELECT code, teacher_hash, label_space, classes, expires_at FROM rooms WHERE code = ?",
                         (room,)).fetchone()
        if row is None or row[4] <= self.clock():
            raise RoomError(f"There is no open room {format_code(room)}: check the code (rooms last "
                            f"{self.limits.ttl_hours:g} hours).")
        return row

    def _check_key(self, row: tuple, key: str | None) -> None:
        if not key or not secrets.compare_digest(_key_hash(str(key)), row[1]):
            raise RoomError("Only the teacher who opened this room can do that (wrong or missing teacher key).")

    def _current_round(self, db: sqlite3.Connection, room: str) -> tuple | None:
        return db.execute("SELECT id, number, closed_at, revealed_at FROM rounds WHERE room = ? "
                          "ORDER BY number DESC LIMIT 1", (room,)).fetchone()

    def _recent(self, db: sqlite3.Connection, sql: str, *args) -> int:
        return int(db.execute(sql, (*args, self.clock() - 60.0)).fetchone()[0])

    # ---- clips ----

    def save_clip(self, samples: np.ndarray) -> str:
        """Write 16 kHz mono samples as FLAC under clips/ (bounded size whatever was uploaded); the file name."""
        name = f"{secrets.token_hex(8)}.flac"
        sf.write(self.clips / name, np.clip(np.asarray(samples, dtype=np.float32), -1, 1), SAMPLE_RATE,
                 format="FLAC", subtype="PCM_16")
        return name

    def clip_path(self, name: str) -> Path:
        return self.clips / name

    def discard_clip(self, name: str) -> None:
        (self.clips / name).unlink(missing_ok=True)

    # ---- teacher ----

    def check_capacity(self, room: str | None = None, key: str | None = None) -> None:
        """Refuse early (before the clip is analysed) what `create_room` / `add_round` would refuse."""
        with self._connect() as db:
            if room is None:
                self._check_room_caps(db)
            else:
                self._check_key(self._room_row(db, room), key)
            self._check_round_caps(db, normalize_code(room) if room else None)

    def _check_room_caps(self, db: sqlite3.Connection) -> None:
        lim = self.limits
        if self._recent(db, "SELECT COUNT(*) FROM rooms WHERE created_at > ?") >= lim.rooms_per_minute:
            raise RoomError(f"Too many rooms opened in the last minute (at most {lim.rooms_per_minute}): "
                            f"try again in a minute.")
        live = db.execute("SELECT COUNT(*) FROM rooms WHERE expires_at > ?", (self.clock(),)).fetchone()[0]
        if live >= lim.live_rooms:
            raise RoomError(f"This server already holds {live} open rooms, its limit: try again later, or run "
                            f"the app yourself (README: Vote together).")

    def _check_round_caps(self, db: sqlite3.Connection, room: str | None) -> None:
        lim = self.limits
        if self._recent(db, "SELECT COUNT(*) FROM rounds WHERE created_at > ?") >= lim.rounds_per_minute:
            raise RoomError(f"Too many clips started in the last minute (at most {lim.rounds_per_minute} on this "
                            f"server): try again in a minute.")
        if room is not None:
            n = db.execute("SELECT COUNT(*) FROM rounds WHERE room = ?", (room,)).fetchone()[0]
            if n >= lim.rounds_per_room:
                raise RoomError(f"This room has had {n} rounds, its limit: download the votes and open a new room.")

    def create_room(self, classes: Sequence[str], label_space: str, first: NewRound) -> Teacher:
        """Open a room whose first round is `first`; returns its code and the teacher key (shown once)."""
        now = self.clock()
        key = secrets.token_urlsafe(32)
        with self._write() as db:
            self._check_room_caps(db)
            self._check_round_caps(db, None)
            while True:  # a collision among ~10^12 codes is rare; draw again if it happens
                code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(self.limits.code_length))
                if db.execute("SELECT 1 FROM rooms WHERE code = ?", (code,)).fetchone() is None:
                    break
            db.execute("INSERT INTO rooms VALUES (?, ?, ?, ?, ?, ?)",
                       (code, _key_hash(key), label_space, json.dumps(list(classes)), now,
                        now + self.limits.ttl_hours * 3600.0))
            self._insert_round(db, code, 1, first, now)
        return Teacher(code, key)

    def add_round(self, room: str, key: str, new: NewRound) -> int:
        """The next round of a room (the current one closes); returns its number."""
        now = self.clock()
        with self._write() as db:
            row = self._room_row(db, room)
            self._check_key(row, key)
            self._check_round_caps(db, row[0])
            current = self._current_round(db, row[0])
            if current is not None and current[2] is None:
                db.execute("UPDATE rounds SET closed_at = ? WHERE id = ?", (now, current[0]))
            number = 1 if current is None else current[1] + 1
            self._insert_round(db, row[0], number, new, now)
        return number

    @staticmethod
    def _insert_round(db: sqlite3.Connection, room: str, number: int, new: NewRound, now: float) -> None:
        model = {h: [float(x) for x in new.model[h]] for h in HEADS}
        db.execute("INSERT INTO rounds (room, number, clip, transcript, model, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                   (room, number, new.clip, new.transcript, json.dumps(model), now))

    def close(self, room: str, key: str) -> None:
        """End voting on the current round (again is harmless)."""
        self._mark(room, key, "closed_at")

    def reveal(self, room: str, key: str) -> None:
        """Show the model's answer for the current round; voting ends with it (later votes would have seen it)."""
        self._mark(room, key, "revealed_at", "closed_at")

    def _mark(self, room: str, key: str, *columns: str) -> None:
        now = self.clock()
        with self._write() as db:
            row = self._room_row(db, room)
            self._check_key(row, key)
            current = self._current_round(db, row[0])
            if current is None:
                raise RoomError("This room has no round yet: start one with a clip.")
            for column in columns:  # fixed column names, never user input
                db.execute(f"UPDATE rounds SET {column} = COALESCE({column}, ?) WHERE id = ?", (now, current[0]))

    def teacher_room(self, key: str | None) -> str | None:
        """The open room this teacher key controls, or None (unknown key, or the room has expired)."""
        if not key:
            return None
        with self._connect() as db:
            row = db.execute("SELECT code, teacher_hash, expires_at FROM rooms WHERE teacher_hash = ?",
                             (_key_hash(str(key)),)).fetchone()
        if row is None or row[2] <= self.clock() or not secrets.compare_digest(_key_hash(str(key)), row[1]):
            return None
        return row[0]

    # ---- students ----

    def vote(self, room: str, session: str | None, emotion: str, round_number: int | None = None) -> tuple[int, str]:
        """Record (or replace) this session's vote on the room's current round; returns (round, class voted).

        `round_number`: the round the voter's page shows; a vote for a round the teacher has moved past is
        refused rather than counted on a clip the voter has not heard."""
        voter = self.voter_id(session)
        now = self.clock()
        lim = self.limits
        with self._write() as db:
            row = self._room_row(db, room)
            code, classes = row[0], json.loads(row[3])
            choice = self._class_of(emotion, classes, row[2])
            current = self._current_round(db, code)
            if current is None:
                raise RoomError("No clip yet: wait for the teacher to start the round.")
            round_id, number, closed_at, _ = current
            if round_number is not None and int(round_number) != number:
                raise RoomError(f"The teacher has started round {number}: listen to the new clip, then vote.")
            if closed_at is not None:
                raise RoomError(f"Round {number} is closed: votes are no longer taken. Wait for the next clip.")
            again = db.execute("SELECT 1 FROM votes WHERE round_id = ? AND voter = ?", (round_id, voter)).fetchone()
            if self._recent(db, "SELECT COUNT(*) FROM votes JOIN rounds ON rounds.id = votes.round_id "
                            "WHERE rounds.room = ? AND voted_at > ?", code) >= lim.votes_per_minute:
                raise RoomError("Too many votes in this room in the last minute: wait a moment and vote again.")
            if again is None:
                n = db.execute("SELECT COUNT(*) FROM votes WHERE round_id = ?", (round_id,)).fetchone()[0]
                if n >= lim.voters_per_round:
                    raise RoomError(f"This round already has {n} voters, its limit.")
            db.execute("INSERT INTO votes VALUES (?, ?, ?, ?) ON CONFLICT (round_id, voter) "
                       "DO UPDATE SET emotion = excluded.emotion, voted_at = excluded.voted_at",
                       (round_id, voter, choice, now))
        return number, choice

    @staticmethod
    def _class_of(emotion: str | None, classes: list[str], space_name: str) -> str:
        """The class an emotion name votes for: a class of the room, or a known alias of one ('anger')."""
        name = str(emotion or "").strip().lower()
        if name in classes:
            return name
        try:
            k = get_space(space_name).index(name) if name else None
        except LabelError:  # a space this code no longer knows: only exact class names count
            k = None
        if k is not None and get_space(space_name).classes[k] in classes:
            return get_space(space_name).classes[k]
        raise RoomError(f"Unknown emotion {str(emotion or '')!r}: vote one of {', '.join(classes)}.")

    def my_vote(self, room: str, session: str | None) -> str | None:
        """This session's vote on the current round, or None."""
        voter = self.voter_id(session)
        with self._connect() as db:
            row = self._room_row(db, room)
            current = self._current_round(db, row[0])
            if current is None:
                return None
            got = db.execute("SELECT emotion FROM votes WHERE round_id = ? AND voter = ?",
                             (current[0], voter)).fetchone()
        return None if got is None else got[0]

    # ---- reading ----

    def state(self, room: str) -> RoundState:
        """The room's current round with its vote counts (the model's reading travels along; callers show it
        only once `revealed`)."""
        with self._connect() as db:
            row = self._room_row(db, room)
            code, classes = row[0], json.loads(row[3])
            rnd = db.execute("SELECT id, number, clip, transcript, model, closed_at, revealed_at FROM rounds "
                             "WHERE room = ? ORDER BY number DESC LIMIT 1", (code,)).fetchone()
            if rnd is None:
                raise RoomError("This room has no round yet: wait for the teacher to start one.")
            counts = self._counts(db, rnd[0], classes)
        return RoundState(code, rnd[1], classes, row[2], counts, rnd[3], self.clips / rnd[2],
                          {h: np.asarray(v, dtype=np.float64) for h, v in json.loads(rnd[4]).items()},
                          rnd[5] is not None, rnd[6] is not None, row[4])

    @staticmethod
    def _counts(db: sqlite3.Connection, round_id: int, classes: list[str]) -> np.ndarray:
        counts = np.zeros(len(classes))
        for emotion, n in db.execute("SELECT emotion, COUNT(*) FROM votes WHERE round_id = ? GROUP BY emotion",
                                     (round_id,)):
            if emotion in classes:
                counts[classes.index(emotion)] = n
        return counts

    # ---- export ----

    def export_rows(self, key: str | None) -> tuple[list[str], list[dict]]:
        """(classes, one dict per round: id, audio, transcript, counts) of the room this key controls."""
        room = self.teacher_room(key)
        if room is None:
            raise RoomError("Only the teacher who opened a room can download its votes (wrong or missing "
                            "teacher key, or the room has expired).")
        with self._connect() as db:
            classes = json.loads(db.execute("SELECT classes FROM rooms WHERE code = ?", (room,)).fetchone()[0])
            rounds = db.execute("SELECT id, number, clip, transcript FROM rounds WHERE room = ? ORDER BY number",
                                (room,)).fetchall()
            rows = [{"id": f"{room}-{number:02d}", "audio": f"{CLIPS}/{room}-{number:02d}.flac", "clip": clip,
                     "transcript": transcript, "counts": self._counts(db, rid, classes)}
                    for rid, number, clip, transcript in rounds]
        return classes, rows

    def export_csv(self, key: str | None) -> str:
        """All rounds of the teacher's room as the trainer's votes CSV (`python -m train --dataset csv`): id,
        audio (clips/<id>.flac, relative to the CSV), transcript, one count column per class, n_votes."""
        classes, rows = self.export_rows(key)
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["id", "audio", "transcript", *classes, "n_votes"])
        for r in rows:
            w.writerow([r["id"], r["audio"], r["transcript"], *(f"{c:g}" for c in r["counts"]),
                        f"{r['counts'].sum():g}"])
        return out.getvalue()

    def export_zip(self, key: str | None, dest: str | Path) -> Path:
        """votes.csv and the clips it names, in one zip a class can unpack and train on."""
        text = self.export_csv(key)
        _, rows = self.export_rows(key)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr("votes.csv", text)
            for r in rows:
                z.write(self.clips / r["clip"], r["audio"])
        return dest

    # ---- housekeeping ----

    def purge_expired(self) -> int:
        """Delete expired rooms, their rounds, votes and clips, and clips no round names; returns rooms deleted."""
        now = self.clock()
        with self._write() as db:
            gone = [r[0] for r in db.execute("SELECT code FROM rooms WHERE expires_at <= ?", (now,))]
            db.execute("DELETE FROM rooms WHERE expires_at <= ?", (now,))
            kept = {r[0] for r in db.execute("SELECT clip FROM rounds")}
        # clips younger than a minute may belong to a round being analysed right now
        for path in self.clips.glob("*.flac"):
            if path.name not in kept and path.stat().st_mtime < time.time() - 60:
                path.unlink(missing_ok=True)
        return len(gone)
