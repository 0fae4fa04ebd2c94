"""Vote together's storage and rules (amber2_app.rooms) and a round's numbers (amber2_app.classroom), without a browser
or a model: the model's readings are given as numbers."""
from __future__ import annotations

import csv
import io
import sqlite3
import threading
import zipfile

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from amber2_app.classroom import round_summary
from amber2.labels import get_space
from amber2_app.rooms import CODE_ALPHABET, NewRound, RoomError, RoomLimits, RoomStore, format_code, normalize_code

CLASSES = list(get_space("demo7").classes)  # neutral, happy, sad, angry, fear, disgust, surprise
MODEL = {"audio": [0.1, 0.05, 0.05, 0.6, 0.1, 0.05, 0.05],   # the voice hears anger
         "text": [0.6, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05],    # the words read neutral
         "fused": [0.3, 0.05, 0.05, 0.4, 0.1, 0.05, 0.05]}


class Clock:
    """Time that a test moves forward (expiry, per-minute caps)."""

    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def new_round(store: RoomStore, transcript: str = "kids are talking by the door") -> NewRound:
    t = np.arange(16000) / 16000
    return NewRound(store.save_clip(0.1 * np.sin(2 * np.pi * 220 * t)), transcript, MODEL)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path, clock) -> RoomStore:
    return RoomStore(tmp_path / "data", clock=clock)


def test_codes_are_random_readable_and_typed_any_way(store):
    codes = {store.create_room(CLASSES, "demo7", new_round(store)).room for _ in range(5)}
    assert len(codes) == 5
    for code in codes:
        assert len(code) == 8 and set(code) <= set(CODE_ALPHABET)
        assert normalize_code(format_code(code).lower()) == code  # 'abcd-efgh' typed on a phone works
    assert not set("01OIL") & set(CODE_ALPHABET)


def test_votes_count_once_per_session_and_a_change_replaces(store):
    teacher = store.create_room(CLASSES, "demo7", new_round(store))
    store.vote(teacher.room, "s1", "angry")
    store.vote(teacher.room, "s2", "angry")
    store.vote(teacher.room, "s3", "neutral")
    store.vote(teacher.room, "s3", "Anger")  # changed, and an alias of a class counts as the class
    state = store.state(format_code(teacher.room).lower())
    assert state.n == 3 and state.counts[CLASSES.index("angry")] == 3
    assert store.my_vote(teacher.room, "s3") == "angry" and store.my_vote(teacher.room, "s9") is None


def test_bad_input_gets_a_message(store):
    teacher = store.create_room(CLASSES, "demo7", new_round(store))
    with pytest.raises(RoomError, match="no open room"):
        store.vote("ZZZZZZZZ", "s1", "angry")
    with pytest.raises(RoomError, match="Unknown emotion 'bored'.*neutral, happy"):
        store.vote(teacher.room, "s1", "bored")
    with pytest.raises(RoomError, match="No room code"):
        store.state("")
    with pytest.raises(RoomError, match="session"):
        store.vote(teacher.room, None, "angry")


def test_teacher_key_guards_reveal_close_next_and_export(store):
    teacher = store.create_room(CLASSES, "demo7", new_round(store))
    other = store.create_room(CLASSES, "demo7", new_round(store))
    for wrong in ("", "guess", other.key):
        with pytest.raises(RoomError, match="Only the teacher"):
            store.reveal(teacher.room, wrong)
        with pytest.raises(RoomError, match="Only the teacher"):
            store.close(teacher.room, wrong)
        with pytest.raises(RoomError, match="Only the teacher"):
            store.add_round(teacher.room, wrong, new_round(store))
    with pytest.raises(RoomError, match="Only the teacher"):
        store.export_csv("guess")
    assert not store.state(teacher.room).closed
    # the key is stored only hashed
    with sqlite3.connect(store.db_path) as db:
        dump = "\n".join(db.iterdump())
    assert teacher.key not in dump and other.key not in dump


def test_closed_round_refuses_votes_and_reveal_ends_voting(store):
    teacher = store.create_room(CLASSES, "demo7", new_round(store))
    store.vote(teacher.room, "s1", "sad")
    store.close(teacher.room, teacher.key)
    with pytest.raises(RoomError, match="Round 1 is closed"):
        store.vote(teacher.room, "s2", "sad")
    assert store.add_round(teacher.room, teacher.key, new_round(store)) == 2
    store.vote(teacher.room, "s2", "happy")
    with pytest.raises(RoomError, match="started round 2"):
        store.vote(teacher.room, "s3", "happy", round_number=1)  # a phone still showing the old clip
    store.reveal(teacher.room, teacher.key)
    state = store.state(teacher.room)
    assert state.revealed and state.closed and state.number == 2 and state.n == 1
    with pytest.raises(RoomError, match="closed"):
        store.vote(teacher.room, "s2", "sad")


def test_rooms_expire_after_a_day_and_are_deleted_with_their_clips(store, clock):
    teacher = store.create_room(CLASSES, "demo7", new_round(store))
    clip = store.state(teacher.room).clip
    clock.t += 23.9 * 3600
    store.vote(teacher.room, "s1", "angry")
    clock.t += 0.2 * 3600
    with pytest.raises(RoomError, match="no open room"):
        store.vote(teacher.room, "s2", "angry")
    assert store.teacher_room(teacher.key) is None
    assert store.purge_expired() == 1
    with sqlite3.connect(store.db_path) as db:
        assert db.execute("SELECT COUNT(*) FROM votes").fetchone()[0] == 0
    import os
    os.utime(clip, (0, 0))  # older than a minute: an orphan, not a clip being analysed
    store.purge_expired()
    assert not clip.exists()


def test_caps_per_minute_bound_what_a_script_writes(tmp_path, clock):
    limits = RoomLimits(rooms_per_minute=2, live_rooms=3, rounds_per_minute=10, rounds_per_room=2,
                        voters_per_round=3, votes_per_minute=3)
    store = RoomStore(tmp_path, limits, clock=clock)
    a = store.create_room(CLASSES, "demo7", new_round(store))
    store.create_room(CLASSES, "demo7", new_round(store))
    with pytest.raises(RoomError, match="Too many rooms"):
        store.check_capacity()
    clock.t += 61
    store.create_room(CLASSES, "demo7", new_round(store))
    with pytest.raises(RoomError, match="open rooms"):
        store.create_room(CLASSES, "demo7", new_round(store))
    store.add_round(a.room, a.key, new_round(store))
    with pytest.raises(RoomError, match="2 rounds"):
        store.add_round(a.room, a.key, new_round(store))
    for s in ("s1", "s2", "s3"):
        store.vote(a.room, s, "angry")
    with pytest.raises(RoomError, match="Too many votes"):  # 4 votes in a minute
        store.vote(a.room, "s4", "angry")
    clock.t += 61
    with pytest.raises(RoomError, match="3 voters"):
        store.vote(a.room, "s4", "angry")
    store.vote(a.room, "s1", "sad")  # a voter may still change their vote


def test_many_voters_at_once_lose_nothing(store):
    teacher = store.create_room(CLASSES, "demo7", new_round(store))
    errors: list[Exception] = []

    def voter(i: int) -> None:
        try:
            store.vote(teacher.room, f"session-{i}", CLASSES[i % 3])
            if i % 4 == 0:
                store.vote(teacher.room, f"session-{i}", "surprise")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=voter, args=(i,)) for i in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    expected = np.zeros(len(CLASSES))
    for i in range(60):
        expected[CLASSES.index("surprise" if i % 4 == 0 else CLASSES[i % 3])] += 1
    np.testing.assert_array_equal(store.state(teacher.room).counts, expected)


def test_a_new_store_on_the_same_folder_sees_everything(tmp_path, clock):
    first = RoomStore(tmp_path, clock=clock)
    teacher = first.create_room(CLASSES, "demo7", new_round(first))
    first.vote(teacher.room, "s1", "fear")
    again = RoomStore(tmp_path, clock=clock)  # an app restart
    assert again.state(teacher.room).counts[CLASSES.index("fear")] == 1
    assert again.teacher_room(teacher.key) == teacher.room
    again.vote(teacher.room, "s1", "happy")  # the same session is the same voter (the secret is kept)
    assert again.state(teacher.room).n == 1


def test_export_is_the_trainers_votes_csv_with_its_clips(store, tmp_path):
    from train.datasets import load_dataset

    teacher = store.create_room(CLASSES, "demo7", new_round(store, "first clip"))
    store.vote(teacher.room, "s1", "angry")
    store.vote(teacher.room, "s2", "neutral")
    store.add_round(teacher.room, teacher.key, new_round(store, "second, with a comma"))
    store.vote(teacher.room, "s1", "sad")
    text = store.export_csv(teacher.key)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["transcript"] for r in rows] == ["first clip", "second, with a comma"]
    assert rows[0]["angry"] == "1" and rows[0]["neutral"] == "1" and rows[0]["n_votes"] == "2"
    out = tmp_path / "export"
    with zipfile.ZipFile(store.export_zip(teacher.key, tmp_path / "votes.zip")) as z:
        z.extractall(out)
    corpus = load_dataset("csv", out / "votes.csv", space="demo7", n_folds=2)
    assert [it.transcript for it in corpus.items] == ["first clip", "second, with a comma"]
    assert corpus.items[1].votes[CLASSES.index("sad")] == 1 and corpus.items[0].audio.is_file()


def test_round_summary_is_eq1_and_reveals_eq5_only_after_the_reveal(store):
    teacher = store.create_room(CLASSES, "demo7", new_round(store))
    assert round_summary(store.state(teacher.room))["y"] is None  # no vote yet: no distribution, no NaN
    for i, e in enumerate(["angry", "angry", "angry", "neutral", "sad"]):  # the paper's kind of example
        store.vote(teacher.room, f"s{i}", e)
    before = round_summary(store.state(teacher.room))
    assert before["n"] == 5 and before["y"][CLASSES.index("angry")] == pytest.approx(0.6)
    assert "model" not in before and "metrics" not in before and "weights" not in before
    assert before["ambiguity"] in ("clear", "somewhat mixed", "very mixed")
    store.reveal(teacher.room, teacher.key)
    after = round_summary(store.state(teacher.room), kappa=8.0)
    y = np.asarray(after["y"])
    for head in ("audio", "text", "fused"):
        p = np.asarray(MODEL[head])
        assert after["metrics"][head]["js"] == pytest.approx(jensenshannon(y, p), abs=1e-6)
        assert after["metrics"][head]["bc"] == pytest.approx(np.sqrt(y * p).sum(), abs=1e-6)
    w = after["weights"]
    assert w["kappa"] == 8.0 and w["u_audio"] + w["u_text"] == pytest.approx(1.0, abs=1e-5)
    assert w["u_audio"] > 0.5  # the class heard anger, like the voice head
    assert "agrees more with the **voice**" in after["sentence"]


def test_the_teachers_buttons_say_what_happens(store):
    """Reveal with no votes is refused (the round stays open); Close after Reveal says voting had already
    ended; the students' help names both ways a round ends."""
    from amber2_app import vote_tab

    handlers = vote_tab.VoteHandlers(store, analyzer=None, classes=CLASSES)
    teacher = store.create_room(CLASSES, "demo7", new_round(store))
    control = {"room": teacher.room, "key": teacher.key}
    assert handlers.reveal(control) == vote_tab.REVEAL_EMPTY
    assert not store.state(teacher.room).revealed and not store.state(teacher.room).closed
    store.vote(teacher.room, "student-1", "angry")
    assert handlers.reveal(control) == "The model's answer is on the chart."
    assert handlers.close(control) == vote_tab.ALREADY_CLOSED
    assert "reveals the model's answer" in vote_tab.STUDENT_HELP


def test_students_read_the_reveal_in_plain_words(store):
    """The teacher's screen keeps JS distances and u_A/u_T; a student's phone gets a sentence without them."""
    teacher = store.create_room(CLASSES, "demo7", new_round(store))
    for i in range(3):
        store.vote(teacher.room, f"s{i}", "angry")
    store.reveal(teacher.room, teacher.key)
    summary = round_summary(store.state(teacher.room))
    assert "JS distance" in summary["sentence"] and "u_A" in summary["sentence"]
    plain = summary["plain_sentence"]
    assert "voice" in plain and not any(j in plain for j in ("JS", "u_A", "κ", "kappa"))
