"""train.datasets: votes, skips, folds and errors on the fixture IEMOCAP/MSP releases and the real RAVDESS and
EmotionLines files."""
from __future__ import annotations

import dataclasses
import re
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from corpus_fixtures import build_iemocap, build_msp_podcast
from train.datasets import Corpus, DatasetError, load_dataset
from train.datasets.corpus import assign_group_folds, assign_stratified_folds
from train.datasets.licensed import write_votes_csv


@pytest.fixture(scope="session")
def releases(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("releases")
    return {"iemocap": build_iemocap(root), "msp": build_msp_podcast(root)}


@pytest.fixture(scope="session")
def iemocap(releases) -> Corpus:
    return load_dataset("iemocap", releases["iemocap"])


@pytest.fixture(scope="session")
def msp(releases) -> Corpus:
    return load_dataset("msp-podcast", releases["msp"])


def by_id(corpus: Corpus) -> dict:
    return {it.id: it for it in corpus.items}


def copy_release(src: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(src, tmp_path / src.name))


# ---------------------------------------------------------------- IEMOCAP


def test_iemocap_votes_of_hand_written_utterances(iemocap):
    items = by_id(iemocap)
    assert iemocap.space.classes == ("neutral", "happy", "angry", "sad")
    assert items["Ses01F_impro01_F000"].votes.tolist() == [3, 0, 0, 0]        # self-evaluation C-F1 left out
    assert items["Ses01F_impro01_M001"].votes.tolist() == [0, 0, 3, 1]        # multi-label lines, fru dropped
    assert items["Ses01F_impro01_M003"].votes.tolist() == [0, 2, 0, 0]        # excited not merged
    assert "Ses01F_impro01_F002" not in items                                  # only fru / exc votes
    assert iemocap.skipped == {"no_vote_in_space": 1}
    assert len(iemocap.items) == 39


@pytest.mark.parametrize("options, expected", [
    ({"include_self": True}, {"F000": [4, 0, 0, 0], "M001": [0, 0, 4, 1], "M003": [1, 2, 0, 0], "F002": None}),
    ({"merge_excited": True}, {"F000": [3, 0, 0, 0], "M003": [0, 4, 0, 0], "F002": [0, 1, 0, 0]}),
    ({"include_self": True, "merge_excited": True}, {"M003": [1, 4, 0, 0], "F002": [0, 2, 0, 0]}),
])
def test_iemocap_self_evaluations_and_excited_are_flags(releases, options, expected):
    corpus = load_dataset("iemocap", releases["iemocap"], **options)
    items = by_id(corpus)
    for suffix, votes in expected.items():
        item = items.get(f"Ses01F_impro01_{suffix}")
        assert (item.votes.tolist() if item else None) == votes, suffix
    assert sum(corpus.skipped.values()) == (1 if expected.get("F002", 1) is None else 0)


def test_iemocap_total_votes_match_a_plain_count_of_the_files(releases, iemocap):
    # Independent reference: every in-space label on an external evaluator's C-E line is one vote.
    label = re.compile(r"(\w+);")
    expected = Counter()
    for ev in releases["iemocap"].glob("Session*/dialog/EmoEvaluation/*.txt"):
        for line in ev.read_text().splitlines():
            if line.startswith("C-E"):
                expected.update(label.findall(line.split("(")[0]))
    got = iemocap.votes().sum(axis=0)
    assert got.tolist() == [expected[n] for n in ("Neutral", "Happiness", "Anger", "Sadness")]
    # Outside the space: frustration and excitement, less the three of the skipped utterance F002.
    assert iemocap.dropped_votes == expected["Frustration"] + expected["Excited"] - 3 > 0


def test_iemocap_transcripts_audio_folds_and_speakers(releases, iemocap):
    items = by_id(iemocap)
    m001 = items["Ses01F_impro01_M001"]
    assert m001.transcript == "Do you have to be so loud? I hate waiting here!"
    assert m001.audio == releases["iemocap"] / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_M001.wav"
    assert not any("XX" in i for i in items)                # transcription lines that are not evaluated turns
    for it in iemocap.items:
        assert it.audio.is_file()
        assert it.fold == int(it.id[3:5]) - 1               # fold = session - 1
    assert m001.group == "Ses01M" and items["Ses01F_impro01_F000"].group == "Ses01F"
    assert Counter(it.fold for it in iemocap.items) == {0: 7, 1: 8, 2: 8, 3: 8, 4: 8}


def test_iemocap_missing_audio_is_an_error_or_a_counted_skip(releases, tmp_path):
    root = copy_release(releases["iemocap"], tmp_path)
    wav = root / "Session2/sentences/wav/Ses02M_script01_1/Ses02M_script01_1_F000.wav"
    wav.unlink()
    with pytest.raises(DatasetError, match=r"Ses02M_script01_1_F000.*expected .*Ses02M_script01_1_F000\.wav"):
        load_dataset("iemocap", root)
    corpus = load_dataset("iemocap", root, missing="skip")
    assert corpus.skipped == {"no_vote_in_space": 1, "missing_audio": 1}
    assert len(corpus.items) == 38


def test_iemocap_missing_folders_fail_early(releases, tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("iemocap", tmp_path / "nowhere")
    root = copy_release(releases["iemocap"], tmp_path)
    shutil.rmtree(root / "Session3")
    with pytest.raises(DatasetError, match="Session3"):
        load_dataset("iemocap", root)
    assert len(load_dataset("iemocap", root, sessions=[1, 2, 4, 5]).items) == 31
    (root / "Session2/dialog/transcriptions/Ses02F_impro02.txt").unlink()
    with pytest.raises(DatasetError, match=r"transcription.*Ses02F_impro02\.txt"):
        load_dataset("iemocap", root, sessions=[1, 2])


def test_iemocap_evaluation_file_in_another_format_is_refused(releases, tmp_path):
    root = copy_release(releases["iemocap"], tmp_path)
    (root / "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt").write_text("utterance,emotion\nx,neu\n")
    with pytest.raises(DatasetError, match=r"no utterance block in .*Ses01F_impro01\.txt"):
        load_dataset("iemocap", root)


# ---------------------------------------------------------------- MSP-Podcast


def test_msp_votes_of_hand_written_files(msp):
    items = by_id(msp)
    assert msp.space.classes == ("neutral", "happy", "sad", "angry", "disgust", "fear", "surprise", "contempt")
    assert items["MSP-PODCAST_0001_0001"].votes.tolist() == [1, 0, 0, 3, 1, 0, 0, 0]   # unquoted rows too
    assert items["MSP-PODCAST_0001_0003"].votes.tolist() == [0, 2, 2, 0, 0, 0, 1, 1]   # EmoClass X kept
    assert items["MSP-PODCAST_0001_0004"].votes.tolist() == [6, 0, 0, 0, 0, 0, 0, 1]
    assert "MSP-PODCAST_0001_0002" not in items                                          # only Other-*
    assert msp.skipped == {"no_vote_in_space": 1}
    assert len(msp.items) == 39
    assert items["MSP-PODCAST_0001_0003"].transcript == "Wow, I did not expect that at all!"


def test_msp_groups_are_speakers_and_unknown_speakers_stay_apart(releases, msp):
    rows = (releases["msp"] / "Labels/labels_consensus.csv").read_text().splitlines()[1:]
    speaker = {r.split(",")[0][:-4]: r.split(",")[5] for r in rows}
    for it in msp.items:
        assert it.group == (f"file:{it.id}" if speaker[it.id] == "Unknown" else f"spk:{speaker[it.id]}")
    assert len({it.group for it in msp.items if speaker[it.id] == "101"}) == 1
    assert sum(speaker[it.id] == "Unknown" for it in msp.items) > 1


def test_msp_folds_are_equal_sized_stratified_and_seeded(releases, msp):
    sizes = Counter(it.fold for it in msp.items)
    assert sorted(sizes) == [0, 1, 2, 3, 4] and max(sizes.values()) - min(sizes.values()) <= 1
    per_class = defaultdict(Counter)
    for it in msp.items:
        per_class[int(np.argmax(it.votes))][it.fold] += 1
    for counts in per_class.values():
        spread = [counts.get(f, 0) for f in range(5)]
        assert max(spread) - min(spread) <= 1
    again = load_dataset("msp-podcast", releases["msp"])
    assert [it.fold for it in again.items] == [it.fold for it in msp.items]
    other = load_dataset("msp-podcast", releases["msp"], seed=1)
    assert [it.fold for it in other.items] != [it.fold for it in msp.items]


def test_msp_old_consensus_spelling_is_accepted(releases, tmp_path):
    root = copy_release(releases["msp"], tmp_path)
    (root / "Labels/labels_consensus.csv").rename(root / "Labels/labels_concensus.csv")
    assert len(load_dataset("msp-podcast", root).items) == 39


def test_msp_unknown_layout_names_the_expected_files(releases, tmp_path):
    root = copy_release(releases["msp"], tmp_path)
    (root / "Labels/labels_detailed.csv").unlink()
    with pytest.raises(DatasetError, match=r"unknown MSP-Podcast layout.*labels_detailed\.csv"):
        load_dataset("msp-podcast", root)
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat/a.wav").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"lacks Audios, Transcripts, Labels.*found: a\.wav"):
        load_dataset("msp-podcast", tmp_path / "flat")


def test_msp_malformed_rows_and_missing_transcripts(releases, tmp_path):
    root = copy_release(releases["msp"], tmp_path)
    (root / "Transcripts/MSP-PODCAST_0001_0004.txt").unlink()
    with pytest.raises(DatasetError, match=r"missing transcript for MSP-PODCAST_0001_0004"):
        load_dataset("msp-podcast", root)
    assert load_dataset("msp-podcast", root, missing="skip").skipped == {"no_vote_in_space": 1,
                                                                          "missing_transcript": 1}
    with (root / "Labels/labels_detailed.csv").open("a") as f:
        f.write("MSP-PODCAST_0001_0001.wav,garbage\n")
    with pytest.raises(DatasetError, match=r"labels_detailed\.csv line \d+: EmoDetail 'garbage'"):
        load_dataset("msp-podcast", root, missing="skip")


# ---------------------------------------------------------------- votes CSV


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_loads_votes_relative_audio_and_groups(tmp_path, ravdess_clip):
    (tmp_path / "clips").mkdir()
    shutil.copy(ravdess_clip, tmp_path / "clips/a.flac")
    table = write(tmp_path / "votes.csv",
                  "id,audio,transcript,neutral,happy,angry,sad,speaker,note\n"
                  "a,clips/a.flac,Kids are talking,0,1,3,0,s1,x\n"
                  f"b,{tmp_path / 'clips/a.flac'},Again,2,0,0,0,s2,\n"
                  "c,clips/a.flac,Frustrated only,0,0,0,0,s3,\n")
    corpus = load_dataset("csv", table, space="iemocap4", n_folds=2)
    assert [it.votes.tolist() for it in corpus.items] == [[0, 1, 3, 0], [2, 0, 0, 0]]
    assert corpus.items[0].audio == tmp_path / "clips/a.flac" and corpus.items[0].transcript == "Kids are talking"
    assert [it.group for it in corpus.items] == ["s1", "s2"]
    assert corpus.skipped == {"no_annotation": 1}
    # An msp8 table read as iemocap4: the other classes' columns are ignored, n_votes tells what was dropped.
    msp_like = write(tmp_path / "msp.csv", "id,audio,transcript,neutral,happy,sad,angry,disgust,n_votes,fold\n"
                                           "m1,clips/a.flac,x,1,0,0,2,2,5,0\nm2,clips/a.flac,y,0,0,0,0,3,3,1\n")
    as4 = load_dataset("csv", msp_like, space="iemocap4")
    assert [it.votes.tolist() for it in as4.items] == [[1, 0, 2, 0]]      # iemocap4 order: neu hap ang sad
    assert as4.skipped == {"no_vote_in_space": 1} and as4.dropped_votes == 2
    assert sorted(it.fold for it in corpus.items) == [0, 1]
    assert len(load_dataset("csv", tmp_path, space="iemocap4", n_folds=2).items) == 2   # folder with votes.csv
    bom = tmp_path / "bom.csv"   # as a spreadsheet saves "CSV UTF-8"
    bom.write_bytes(b"\xef\xbb\xbfid,audio,transcript,neutral,happy,angry,sad\n"
                    b"p,clips/a.flac,x,0,0,0,2\nq,clips/a.flac,y,1,0,0,0\n")
    assert [it.votes.tolist() for it in load_dataset("csv", bom, space="iemocap4", n_folds=2).items] == \
        [[0, 0, 0, 2], [1, 0, 0, 0]]
    with pytest.raises(DatasetError, match="cannot make 5 folds from 2 group"):
        load_dataset("csv", bom, space="iemocap4")
    dup = write(tmp_path / "dup.csv", "audio,transcript,neutral,happy,angry,sad\n"
                                      "clips/a.flac,x,1,0,0,0\nclips/a.flac,y,1,0,0,0\n")
    with pytest.raises(DatasetError, match=r"row 3: duplicate id 'clips/a.flac' \(without an id column"):
        load_dataset("csv", dup, space="iemocap4")


def test_csv_errors_name_the_column_or_row(tmp_path, ravdess_clip):
    shutil.copy(ravdess_clip, tmp_path / "a.flac")
    no_sad = write(tmp_path / "a.csv", "audio,transcript,neutral,happy,angry\na.flac,hi,1,0,0\n")
    with pytest.raises(DatasetError, match=r"lacks column\(s\) sad"):
        load_dataset("csv", no_sad, space="iemocap4")
    with pytest.raises(DatasetError, match="needs space="):
        load_dataset("csv", no_sad)
    with pytest.raises(DatasetError, match="unknown label space 'nope'"):
        load_dataset("csv", no_sad, space="nope")
    gone = write(tmp_path / "b.csv", "audio,transcript,neutral,happy,angry,sad\na.flac,hi,1,0,0,0\n"
                                     "missing.wav,there,0,1,0,0\n")
    with pytest.raises(DatasetError, match=r"b\.csv row 3: audio file .*missing\.wav does not exist"):
        load_dataset("csv", gone, space="iemocap4")
    bad = write(tmp_path / "c.csv", "audio,transcript,neutral,happy,angry,sad\na.flac,hi,1,-2,0,0\n")
    with pytest.raises(DatasetError, match=r"row 2, column happy: vote count '-2'"):
        load_dataset("csv", bad, space="iemocap4")
    short = write(tmp_path / "e.csv", "audio,transcript,neutral,happy,angry,sad,n_votes\na.flac,x,1,2,0,0,2\n")
    with pytest.raises(DatasetError, match=r"row 2: n_votes 2 is less than the sum of the class columns \(3\)"):
        load_dataset("csv", short, space="iemocap4")
    partial = write(tmp_path / "d.csv", "id,audio,transcript,neutral,happy,angry,sad,fold\n"
                                        "x,a.flac,x,1,0,0,0,0\ny,a.flac,y,1,0,0,0,\n")
    with pytest.raises(DatasetError, match="fold column is filled on some rows only"):
        load_dataset("csv", partial, space="iemocap4")


def test_csv_round_trips_a_corpus(iemocap, tmp_path):
    corpus = dataclasses.replace(iemocap, items=[dataclasses.replace(it) for it in iemocap.items])
    corpus.items[0].transcript = 'She said "no, wait",\nthen left.'   # quotes, comma and a newline in a cell
    back = load_dataset("csv", write_votes_csv(corpus, tmp_path / "out.csv"), space="iemocap4")
    assert [(it.id, it.votes.tolist(), it.fold, it.group, it.audio, it.transcript) for it in back.items] == \
        [(it.id, it.votes.tolist(), it.fold, it.group, it.audio, it.transcript) for it in corpus.items]


# ---------------------------------------------------------------- real RAVDESS and EmotionLines


@pytest.fixture(scope="session")
def ravdess(shared_dir) -> Corpus:
    return load_dataset("ravdess", shared_dir / "data" / "ravdess")


def test_ravdess_parses_every_clip_with_its_intended_emotion(ravdess):
    assert len(ravdess.items) == 1440 and len({it.group for it in ravdess.items}) == 24
    items = by_id(ravdess)
    angry = items["03-01-05-02-01-01-01"]
    assert ravdess.space.classes[int(np.argmax(angry.votes))] == "angry" and angry.votes.sum() == 1
    assert angry.transcript == "Kids are talking by the door" and angry.group == "Actor_01"
    assert items["03-01-06-01-02-02-24"].transcript == "Dogs are sitting by the door"
    emotions = Counter(ravdess.space.classes[int(np.argmax(it.votes))] for it in ravdess.items)
    assert emotions == {"neutral": 96, **{c: 192 for c in ravdess.space.classes if c != "neutral"}}


def test_ravdess_folds_keep_each_actor_whole(ravdess):
    fold_of_actor = defaultdict(set)
    for it in ravdess.items:
        fold_of_actor[it.group].add(it.fold)
    assert all(len(f) == 1 for f in fold_of_actor.values())
    assert sorted(Counter(it.fold for it in ravdess.items).values()) == [240, 300, 300, 300, 300]


def test_ravdess_in_demo7_counts_calm_as_neutral(shared_dir):
    corpus = load_dataset("ravdess", shared_dir / "data" / "ravdess", space="demo7")
    calm = by_id(corpus)["03-01-02-01-01-01-01"]
    assert corpus.space.name == "demo7" and calm.votes.tolist() == [1, 0, 0, 0, 0, 0, 0]
    assert len(corpus.items) == 1440


def test_emotionlines_parses_all_three_files(shared_dir):
    corpus = load_dataset("emotionlines", shared_dir / "data" / "emotionlines")
    assert len(corpus.items) == 14503 and len({it.group for it in corpus.items}) == 1000
    assert corpus.space.classes == ("neutral", "joy", "sadness", "fear", "anger", "surprise", "disgust")
    assert all(it.votes.sum() == 5 and it.audio is None for it in corpus.items)
    first = corpus.items[0]
    assert first.votes.tolist() == [4, 1, 0, 0, 0, 0, 0] and first.group == "train_d000"
    assert first.transcript.startswith("also I was the point person on my company’s transition")
    assert not any(re.search("[\x80-\x9f]", it.transcript) for it in corpus.items)
    dialogue_folds = defaultdict(set)
    for it in corpus.items:
        dialogue_folds[it.group].add(it.fold)
    assert all(len(f) == 1 for f in dialogue_folds.values())
    sizes = Counter(it.fold for it in corpus.items)
    assert sorted(sizes) == [0, 1, 2, 3, 4] and max(sizes.values()) - min(sizes.values()) <= 1


def test_emotionlines_in_demo7_and_one_split(shared_dir):
    corpus = load_dataset("emotionlines", shared_dir / "data" / "emotionlines", space="demo7", splits=["dev"])
    assert len(corpus.items) == 1178
    # dev dialogue 0 utterance 1 is annotated '1000130': neutral 1, anger 1, surprise 3
    assert by_id(corpus)["dev_d000_u01"].votes.tolist() == [1, 0, 0, 1, 0, 0, 3]


def test_emotionlines_malformed_annotation(tmp_path):
    write(tmp_path / "friends_dev.json", '[[{"speaker": "A", "utterance": "Hi", "emotion": "joy", '
                                         '"annotation": "05"}]]')
    with pytest.raises(DatasetError, match=r"dialogue 0 utterance 0: annotation '05' is not 7 vote digits"):
        load_dataset("emotionlines", tmp_path, splits=["dev"])
    with pytest.raises(DatasetError, match=r"missing EmotionLines file: expected the file .*friends_train\.json"):
        load_dataset("emotionlines", tmp_path)


# ---------------------------------------------------------------- folds and the registry


def test_group_folds_never_split_a_group_and_balance_items():
    groups = [f"g{i % 13}" for i in range(200)] + ["big"] * 30
    folds = assign_group_folds(groups, 5, seed=3)
    assert all(len({f for g2, f in zip(groups, folds) if g2 == g}) == 1 for g in set(groups))
    sizes = Counter(folds)
    assert len(sizes) == 5 and max(sizes.values()) - min(sizes.values()) <= 30
    assert folds == assign_group_folds(groups, 5, seed=3)
    with pytest.raises(DatasetError, match="cannot make 5 folds from 3 group"):
        assign_group_folds(["a", "b", "c"], 5)


def test_stratified_folds_deal_each_class_evenly():
    votes = np.array([[5, 0], [4, 1], [3, 2], [0, 5], [1, 4], [2, 3]] * 5, dtype=float)
    folds = assign_stratified_folds([f"i{k}" for k in range(30)], votes, 5)
    for cls in (0, 1):
        assert Counter(f for f, v in zip(folds, votes) if np.argmax(v) == cls) == {f: 3 for f in range(5)}


def test_unknown_dataset_and_option_are_clear_errors(shared_dir):
    with pytest.raises(DatasetError, match="unknown dataset 'timit'; known: iemocap, msp-podcast"):
        load_dataset("timit", shared_dir)
    with pytest.raises(DatasetError, match=r"unknown option\(s\) for dataset 'ravdess': include_self"):
        load_dataset("ravdess", shared_dir / "data" / "ravdess", include_self=True)
    with pytest.raises(DatasetError, match="needs a root folder"):
        load_dataset("ravdess", None)
    with pytest.raises(DatasetError, match="no Actor_NN folder"):
        load_dataset("ravdess", shared_dir / "data" / "emotionlines")


# ---------------------------------------------------------------- nEMO, EMOVO, GoEmotions (fixtures + real)


def tiny_audio(path: Path, fmt: str | None = None) -> Path:
    """A 0.1 s 440 Hz tone: the loaders only check that a clip exists."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.1 * np.sin(2 * np.pi * 440 * np.arange(1600) / 16000), 16000, format=fmt)
    return path


def real_corpus(name: str) -> Path:
    from conftest import SHARED

    root = SHARED / "data" / name
    if not root.is_dir():
        pytest.skip(f"{root} not found (set AMBER2_SHARED)")
    return root


NEMO_HEADER = "file_id\temotion\traw_text\tnormalized_text\tspeaker_id\tgender\tage\n"


def test_nemo_fixture_votes_speakers_and_missing_audio(tmp_path):
    rows = [("AB0_anger_1.wav", "anger", "Idę do domu.", "AB", "male"),
            ("AB0_happiness_2.wav", "happiness", "Mam kota.", "AB", "male"),
            ("CD0_surprised_3.wav", "surprised", "Co?", "CD", "female"),
            ("CD0_neutral_4.wav", "neutral", "Tak.", "CD", "female"),
            ("EF0_sadness_5.wav", "sadness", "Nie.", "EF", "female")]
    write(tmp_path / "data.tsv", NEMO_HEADER + "".join(
        f"{f}\t{e}\t{t}\t{t.lower()}\t        {s}0\t{g}\t30\n" for f, e, t, s, g in rows))
    for f, *_ in rows[:4]:
        tiny_audio(tmp_path / "samples" / f.replace(".wav", ".ogg"), "OGG")
    with pytest.raises(DatasetError, match=r"missing audio for EF0_sadness_5: expected .*samples/EF0_sadness_5\.ogg"):
        load_dataset("nemo", tmp_path)
    corpus = load_dataset("nemo", tmp_path, missing="skip", n_folds=2)
    assert corpus.skipped == {"missing_audio": 1} and corpus.space.name == "demo7"
    items = by_id(corpus)
    assert list(items) == ["AB0_anger_1", "AB0_happiness_2", "CD0_surprised_3", "CD0_neutral_4"]
    majority = {k: corpus.space.classes[int(np.argmax(it.votes))] for k, it in items.items()}
    assert majority == {"AB0_anger_1": "angry", "AB0_happiness_2": "happy", "CD0_surprised_3": "surprise",
                        "CD0_neutral_4": "neutral"}
    assert all(it.votes.sum() == 1 for it in corpus.items)
    assert items["AB0_anger_1"].transcript == "Idę do domu." and items["AB0_anger_1"].group == "AB0"
    assert items["AB0_anger_1"].audio.name == "AB0_anger_1.ogg"
    assert {it.group: it.fold for it in corpus.items} in ({"AB0": 0, "CD0": 1}, {"AB0": 1, "CD0": 0})


def test_nemo_refuses_other_tables(tmp_path):
    write(tmp_path / "data.tsv", "file,label\n")
    with pytest.raises(DatasetError, match="expected a tab-separated header file_id, emotion, raw_text"):
        load_dataset("nemo", tmp_path)
    write(tmp_path / "data.tsv", NEMO_HEADER + "AB0_joy_1.wav\tjoy\tx\tx\t AB0\tmale\t30\n")
    with pytest.raises(DatasetError, match="line 2: unknown emotion 'joy'"):
        load_dataset("nemo", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="missing nEMO table: expected the file .*empty/data.tsv"):
        load_dataset("nemo", tmp_path / "empty")


def test_emovo_fixture_emotions_speakers_and_bad_names(tmp_path):
    for name in ("f1/rab-f1-b1.flac", "f1/neu-f1-b1.flac", "m2/gio-m2-n3.flac", "m2/tri-m2-l1.flac",
                 "m2/dis-m2-d2.flac", "m2/pau-m2-b2.flac", "m2/sor-m2-b3.flac"):
        tiny_audio(tmp_path / name)
    (tmp_path / "m2" / "notes.txt").write_text("not a clip")
    corpus = load_dataset("emovo", tmp_path, n_folds=2)
    majority = {it.id: corpus.space.classes[int(np.argmax(it.votes))] for it in corpus.items}
    assert majority == {"neu-f1-b1": "neutral", "rab-f1-b1": "angry", "dis-m2-d2": "disgust",
                        "gio-m2-n3": "happy", "pau-m2-b2": "fear", "sor-m2-b3": "surprise", "tri-m2-l1": "sad"}
    assert all(it.transcript == "" and it.audio.is_file() for it in corpus.items)
    assert Counter(it.group for it in corpus.items) == {"f1": 2, "m2": 5}
    assert len({it.fold for it in corpus.items}) == 2
    tiny_audio(tmp_path / "f1" / "ang-f1-b1.flac")
    with pytest.raises(DatasetError, match=r"unexpected EMOVO file name .*ang-f1-b1\.flac"):
        load_dataset("emovo", tmp_path)
    with pytest.raises(DatasetError, match="no speaker folder"):
        load_dataset("emovo", tmp_path / "f1")


def goemotions_fixture(root: Path) -> Path:
    names = ["admiration", "anger", "gratitude", "joy", "neutral", "sadness", "pride2"]
    write(root / "emotions.txt", "\n".join(names) + "\n")
    write(root / "ekman_mapping.json", '{"anger": ["anger"], "joy": ["joy", "gratitude", "admiration"], '
                                       '"sadness": ["sadness"]}')
    write(root / "train.tsv", "Thanks, love it!\t2,3\tc1\nWhatever.\t4,6\tc2\nSo sad\t5\tc3\n"
                              "Only an unmapped label\t6\tc4\n")
    write(root / "dev.tsv", "Grr\t1\tc5\n")
    write(root / "test.tsv", "Mixed\t1,0,4\tc6\n")
    return root


def test_goemotions_fixture_maps_fine_labels_to_demo7_votes(tmp_path):
    corpus = load_dataset("goemotions", goemotions_fixture(tmp_path), n_folds=2, seed=1)
    items = by_id(corpus)
    assert list(items) == ["c1", "c2", "c3", "c5", "c6"]
    # c4's only label maps to no Ekman group: skipped; c2's unmapped second label is a dropped vote
    assert corpus.skipped == {"no_vote_in_space": 1} and corpus.dropped_votes == 1
    assert items["c2"].votes.tolist() == [1, 0, 0, 0, 0, 0, 0]
    assert items["c1"].votes.tolist() == [0, 2, 0, 0, 0, 0, 0]     # joy + gratitude: two happy votes
    assert items["c6"].votes.tolist() == [1, 1, 0, 1, 0, 0, 0]     # anger, admiration, neutral
    assert items["c3"].transcript == "So sad" and all(it.audio is None for it in corpus.items)
    assert all(it.group == it.id for it in corpus.items)
    assert sorted(Counter(it.fold for it in corpus.items).values()) == [2, 3]
    assert [it.fold for it in corpus.items] == [it.fold for it in
                                                load_dataset("goemotions", tmp_path, n_folds=2, seed=1).items]
    assert len(load_dataset("goemotions", tmp_path, splits=["dev", "test"], n_folds=2).items) == 2
    write(tmp_path / "dev.tsv", "Grr\t9\tc5\n")
    with pytest.raises(DatasetError, match=r"dev\.tsv line 1: expected 'text<TAB>label ids \(0-6"):
        load_dataset("goemotions", tmp_path)


def test_real_nemo_counts():
    corpus = load_dataset("nemo", real_corpus("nemo"))
    assert len(corpus.items) == 4481 and not corpus.skipped
    assert {it.group for it in corpus.items} == {"EB0", "IC0", "KD0", "KS0", "MK0", "MP0", "SM0", "TP0", "WR0"}
    classes = Counter(corpus.space.classes[int(np.argmax(it.votes))] for it in corpus.items)
    assert classes == {"neutral": 809, "happy": 749, "sad": 769, "angry": 749, "fear": 736, "surprise": 669}
    assert all(it.transcript and it.audio.suffix == ".ogg" for it in corpus.items)


def test_real_emovo_counts():
    corpus = load_dataset("emovo", real_corpus("emovo"))
    assert len(corpus.items) == 588 and len({it.group for it in corpus.items}) == 6
    classes = Counter(corpus.space.classes[int(np.argmax(it.votes))] for it in corpus.items)
    assert classes == {c: 84 for c in corpus.space.classes}   # all 7 demo7 classes, 84 clips each


def test_real_goemotions_counts():
    root = real_corpus("goemotions")
    corpus = load_dataset("goemotions", root)
    # every one of the 28 labels maps to an Ekman group or neutral: no row is skipped
    assert len(corpus.items) == 54263 and not corpus.skipped and corpus.dropped_votes == 0
    assert [len(load_dataset("goemotions", root, splits=[s]).items) for s in ("train", "dev", "test")] == \
        [43410, 5426, 5427]
    assert corpus.votes().sum() == 63812   # multi-label rows give several votes
    sizes = Counter(it.fold for it in corpus.items)
    assert sorted(sizes) == [0, 1, 2, 3, 4] and max(sizes.values()) - min(sizes.values()) <= 1
