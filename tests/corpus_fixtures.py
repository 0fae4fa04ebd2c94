"""Small IEMOCAP and MSP-Podcast release folders in their real layouts, spoken by espeak-ng.

Functions, not fixtures: `build_iemocap(root)` and `build_msp_podcast(root)` write a corpus under `root` and
return its release folder. Speech carries the intended emotion in its words and, crudely, in the voice (rate,
pitch, loudness), so a trainer can learn something from either modality. Each build also contains the edge
cases a parser must survive; the hand-written items are listed in the constants below.
"""
from __future__ import annotations

import csv
import io
import shutil
import subprocess
import tempfile
from pathlib import Path

# espeak-ng (rate words/min, pitch 0-99, amplitude 0-200) per emotion: a crude acoustic cue.
VOICES = {
    "neutral": (150, 50, 100), "happy": (185, 85, 130), "angry": (205, 35, 190), "sad": (110, 20, 70),
    "disgust": (130, 30, 110), "fear": (190, 90, 90), "surprise": (170, 95, 150), "contempt": (125, 40, 100),
}
SENTENCES = {
    "neutral": ["The meeting starts at ten tomorrow.", "I left the keys on the kitchen table.",
                "The train arrives in twenty minutes.", "Please send me the report by Friday."],
    "happy": ["This is wonderful, I am so happy!", "I love it, what a great day!",
              "We won, this is fantastic news!", "I am thrilled and delighted to see you!"],
    "angry": ["I am furious, this is outrageous!", "Stop it right now, I hate this!",
              "How dare you lie to me again!", "This is unacceptable, I am so angry!"],
    "sad": ["I feel so sad and lonely today.", "I miss her so much, it hurts.",
            "Everything is lost, I want to cry.", "It is hopeless and I am heartbroken."],
    "disgust": ["That smell is disgusting and gross.", "Eww, this food is revolting."],
    "fear": ["I am scared, something is wrong.", "Help me, I am terrified of the dark."],
    "surprise": ["Wow, I did not expect that at all!", "What? No way, that is unbelievable!"],
    "contempt": ["Please, you are pathetic and beneath me.", "How ridiculous, what a fool you are."],
}
IEMOCAP_CLASSES = ("neutral", "happy", "angry", "sad")
IEMOCAP_NAMES = {"neutral": "Neutral", "happy": "Happiness", "angry": "Anger", "sad": "Sadness"}
IEMOCAP_CODES = {"neutral": "neu", "happy": "hap", "angry": "ang", "sad": "sad"}
MSP_CLASSES = ("neutral", "happy", "sad", "angry", "disgust", "fear", "surprise", "contempt")
MSP_NAMES = {"neutral": "Neutral", "happy": "Happy", "sad": "Sad", "angry": "Angry", "disgust": "Disgust",
             "fear": "Fear", "surprise": "Surprise", "contempt": "Contempt"}
MSP_CODES = {"neutral": "N", "happy": "H", "sad": "S", "angry": "A", "disgust": "D", "fear": "F",
             "surprise": "U", "contempt": "C"}

# The hand-written IEMOCAP dialog (Session 1): (utterance, words, emotion of the voice, [(evaluator, labels)]).
IEMOCAP_HANDWRITTEN = "Ses01F_impro01"
IEMOCAP_SPECIAL = [
    ("Ses01F_impro01_F000", "Excuse me.", "neutral",
     [("E2", ["Neutral"]), ("E3", ["Neutral"]), ("E4", ["Neutral"]), ("F1", ["Neutral"])]),
    ("Ses01F_impro01_M001", "Do you have to be so loud? I hate waiting here!", "angry",   # multi-label lines
     [("E1", ["Anger", "Frustration"]), ("E2", ["Anger"]), ("E3", ["Sadness", "Anger"]), ("M1", ["Anger"])]),
    ("Ses01F_impro01_F002", "Whatever, I am just so tired of this line.", "neutral",      # no vote in the space
     [("E2", ["Frustration"]), ("E3", ["Excited"]), ("E4", ["Frustration"]), ("F1", ["Excited"])]),
    ("Ses01F_impro01_M003", "Oh we finally got it, that is great!", "happy",             # happy vs excited
     [("E1", ["Happiness"]), ("E2", ["Excited"]), ("E3", ["Happiness", "Excited"]), ("M1", ["Neutral"])]),
]
# Lines of the hand-written transcription that are not utterances.
IEMOCAP_NOISE_LINES = ["M: [BREATHING]", "Ses01F_impro01_MXX0 [010.0000-010.5000]: [LAUGHTER]"]

# Hand-written MSP-Podcast files: (stem, words, voice emotion, speaker, consensus code, [(primary, secondary)]).
MSP_SPECIAL = [
    ("MSP-PODCAST_0001_0001", "I am furious, this is outrageous!", "angry", "101", "A",
     [("Angry", "Angry,Frustrated"), ("Angry", ""), ("Angry", "Annoyed"), ("Disgust", "Disgust,Angry"),
      ("Neutral", "")]),
    ("MSP-PODCAST_0001_0002", "Well, I guess that is how it goes.", "neutral", "101", "O",   # no vote in space
     [("Other-Bored", "Bored"), ("Other-Frustrated", "Frustrated"), ("Other-Tired", ""), ("Other-Bored", "")]),
    ("MSP-PODCAST_0001_0003", "Wow, I did not expect that at all!", "surprise", "Unknown", "X",  # no agreement
     [("Happy", "Happy,Surprise"), ("Happy", ""), ("Sad", "Sad"), ("Sad", ""), ("Surprise", "Surprise"),
      ("Contempt", "")]),
    ("MSP-PODCAST_0001_0004", "The train arrives in twenty minutes.", "neutral", "102", "N",
     [("Neutral", "")] * 6 + [("Contempt", "Contempt")]),
]
MSP_N_FILES = 40
MSP_SPEAKERS = ["101", "102", "103", "104", "105", "106", "107", "108", "Unknown"]

_SPEECH_CACHE: dict[tuple[str, str], bytes] = {}   # per test session: (text, emotion) -> WAV bytes


def speak_wav(text: str, path: Path, emotion: str = "neutral") -> Path:
    """Write `text` spoken by espeak-ng as a 16 kHz mono 16-bit WAV (the corpora's format) to `path`."""
    key = (text, emotion)
    if key not in _SPEECH_CACHE:
        if shutil.which("espeak-ng") is None:
            raise RuntimeError("espeak-ng is not installed (scripts/system-deps.sh installs it)")
        rate, pitch, amp = VOICES[emotion]
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "raw.wav"
            subprocess.run(["espeak-ng", "-v", "en-us", "-s", str(rate), "-p", str(pitch), "-a", str(amp),
                            "-w", str(raw), text], check=True, capture_output=True)
            out = raw
            if shutil.which("sox"):   # espeak speaks at 22.05 kHz; the corpora ship 16 kHz
                out = Path(tmp) / "16k.wav"
                subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(out)], check=True,
                               capture_output=True)
            _SPEECH_CACHE[key] = out.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_SPEECH_CACHE[key])
    return path


# ----------------------------------------------------------------------------------------------------------
# IEMOCAP


def _iemocap_generated(session: int, dialog: str, start: int) -> list[tuple[str, str, str, list]]:
    """Four utterances with a few external votes (sometimes split or outside the space) and a self-vote."""
    out = []
    for k in range(4):
        g = start + k
        e, other = IEMOCAP_CLASSES[g % 4], IEMOCAP_CLASSES[(g + 1) % 4]
        pattern = [[e, e, e], [e, e, other], [e, other, e, None]][g % 3]   # None: 'Frustration', outside
        spk = "FM"[k % 2]
        votes = [(f"E{i + 1}", [IEMOCAP_NAMES[c] if c else "Frustration"]) for i, c in enumerate(pattern)]
        votes.append((f"{spk}1", [IEMOCAP_NAMES[e]]))
        out.append((f"{dialog}_{spk}{k:03d}", SENTENCES[e][(g // 4) % 4], e, votes))
    return out


def _iemocap_majority(votes: list[tuple[str, list[str]]]) -> str:
    names = {v: k for k, v in IEMOCAP_NAMES.items()}
    counts: dict[str, int] = {}
    for evaluator, labels in votes:
        for lab in labels:
            if evaluator.startswith("E") and lab in names:
                counts[names[lab]] = counts.get(names[lab], 0) + 1
    return IEMOCAP_CODES[max(counts, key=counts.get)] if counts else "xxx"


def _write_iemocap_dialog(session_dir: Path, dialog: str, utterances: list, noise: list[str]) -> None:
    ev = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
    tr = []
    t = 6.2901
    for utt, words, emotion, votes in utterances:
        end = t + 1.9456
        ev.append(f"[{t:.4f} - {end:.4f}]\t{utt}\t{_iemocap_majority(votes)}\t[2.5000, 3.0000, 2.5000]")
        for evaluator, labels in votes:
            ev.append(f"C-{evaluator}:\t{' '.join(lab + ';' for lab in labels)}\t()")
        ev += ["A-E3:\tval 3; act 2; dom  2;\t()", "A-F1:\tval 3; act 2; dom  1;\t()", ""]
        tr.append(f"{utt} [{t:08.4f}-{end:08.4f}]: {words}")
        speak_wav(words, session_dir / "sentences" / "wav" / dialog / f"{utt}.wav", emotion)
        t = end + 1.5
    tr[1:1] = noise
    for sub, text in (("EmoEvaluation", ev), ("transcriptions", tr)):
        path = session_dir / "dialog" / sub / f"{dialog}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(text) + "\n")


def build_iemocap(root: Path) -> Path:
    """Write an IEMOCAP-like release (5 sessions x 2 dialogs x 4 utterances); returns IEMOCAP_full_release/."""
    release = Path(root) / "IEMOCAP_full_release"
    g = 0
    for s in range(1, 6):
        session = release / f"Session{s}"
        dialogs = [f"Ses0{s}F_impro0{1 + (s - 1) % 2}", f"Ses0{s}M_script01_1"]
        for dialog in dialogs:
            if dialog == IEMOCAP_HANDWRITTEN:
                _write_iemocap_dialog(session, dialog, IEMOCAP_SPECIAL, IEMOCAP_NOISE_LINES)
            else:
                _write_iemocap_dialog(session, dialog, _iemocap_generated(s, dialog, g), [])
                g += 4
    return release


# ----------------------------------------------------------------------------------------------------------
# MSP-Podcast v1.12


def _msp_generated(n: int) -> list[tuple[str, str, str, str, str, list]]:
    """Files after the hand-written ones: the intended class wins, with one or two dissenting raters."""
    out = []
    for i in range(len(MSP_SPECIAL), n):
        e, other = MSP_CLASSES[i % 8], MSP_CLASSES[(i + 3) % 8]
        primaries = [e] * (3 + i % 3) + [other] * (1 + i % 2)
        ann = [(MSP_NAMES[c], f"{MSP_NAMES[c]},{MSP_NAMES[e]}" if j % 2 else "") for j, c in enumerate(primaries)]
        words = SENTENCES[e][(i // 8) % len(SENTENCES[e])]
        out.append((f"MSP-PODCAST_{2 + i // 10:04d}_{i % 10 + 1:04d}", words, e, MSP_SPEAKERS[i % 9],
                    MSP_CODES[e], ann))
    return out


def build_msp_podcast(root: Path, n_files: int = MSP_N_FILES) -> Path:
    """Write an MSP-Podcast v1.12-like release of `n_files` segments; returns its folder."""
    release = Path(root) / "MSP-PODCAST-Publish-1.12"
    for d in ("Audios", "Transcripts", "Labels"):
        (release / d).mkdir(parents=True, exist_ok=True)
    consensus = io.StringIO()
    cw = csv.writer(consensus, lineterminator="\n")
    cw.writerow(["FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set"])
    detailed = ["FileName,EmoDetail"]
    splits = ["Train", "Train", "Train", "Development", "Test1"]
    worker = 12
    for i, (stem, words, emotion, speaker, code, ann) in enumerate(MSP_SPECIAL + _msp_generated(n_files)):
        speak_wav(words, release / "Audios" / f"{stem}.wav", emotion)
        (release / "Transcripts" / f"{stem}.txt").write_text(words + "\n")
        gender = "Unknown" if speaker == "Unknown" else ("Female" if int(speaker) % 2 else "Male")
        cw.writerow([f"{stem}.wav", code, "4.2", "3.8", "4.0", speaker, gender, splits[i % 5]])
        for primary, secondary in ann:
            detail = f"WORKER{worker:05d}; {primary}; {secondary}; A:4.0; V:2.0; D:5.0;"
            worker = worker % 90 + 12
            # csv quoting as a spreadsheet writes it; one file's rows stay unquoted, as hand-edited files are.
            quoted = detail if stem == "MSP-PODCAST_0001_0001" else f'"{detail}"'
            detailed.append(f"{stem}.wav,{quoted}")
    (release / "Labels" / "labels_consensus.csv").write_text(consensus.getvalue())
    (release / "Labels" / "labels_detailed.csv").write_text("\n".join(detailed) + "\n")
    return release
