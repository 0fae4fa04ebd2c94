"""Command line: ``python -m amber2 analyze FILE... [--transcript TEXT] [--model DIR_OR_REPO] [--json]``,
and for long recordings ``python -m amber2 analyze --segments FILE... [--json] [--csv OUT] [--max-seconds S]``
(one row per segment: `amber2.timeline`; progress on stderr).

Each file is analysed on its own: a file that cannot be used gets a one-line error on stderr and the others
are still processed. Exit status: 0 when every file was analysed, 1 when any failed, 2 when the model
could not be loaded or the arguments are wrong.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from typing import Sequence, TextIO

from amber2.errors import UserError, one_line
from amber2.heads import TABLE

PROG = "amber2"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {PROG}",
                                     description="Ambiguity-aware emotion recognition from speech and text.")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("analyze", help="audio, text and fused emotion distributions of audio files")
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files (WAV, FLAC, MP3, OGG, M4A, ...)")
    p.add_argument("--transcript", action="append", metavar="TEXT",
                   help="use these words instead of the Whisper transcript; once for all files, or once per file")
    p.add_argument("--model", default=None, metavar="DIR_OR_REPO",
                   help="checkpoint folder or Hub repo id (default: $AMBER2_MODEL, else assets/amber2-demo)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per file (per segment with --segments) per line")
    p.add_argument("--segments", action="store_true",
                   help="emotion over time: cut each recording (up to --max-seconds) into segments of about 2-15 s "
                        "and analyse each")
    p.add_argument("--csv", default=None, metavar="OUT", help="with --segments: also write the segments to a CSV table")
    p.add_argument("--max-seconds", type=float, default=None, metavar="S",
                   help="with --segments: the longest recording accepted (default 600 s)")
    p.add_argument("--fused-reading", choices=("student", "arbitrated"), default=None,
                   help="what the fused distribution is: the fusion head itself (student, the paper's) or the voice "
                        "and words heads' mixture it chooses (arbitrated, amber2.arbitration); default: the "
                        "checkpoint's own choice (config.json)")
    args = parser.parse_args(argv)
    if not args.segments and (args.csv or args.max_seconds is not None):
        parser.error("--csv and --max-seconds go with --segments")
    if args.segments and args.transcript:
        parser.error("--transcript cannot be used with --segments: each segment's words come from Whisper")
    if args.max_seconds is not None and not args.max_seconds > 0:
        parser.error("--max-seconds must be a positive number of seconds")
    if args.transcript and len(args.transcript) not in (1, len(args.files)):
        parser.error(f"--transcript given {len(args.transcript)} times for {len(args.files)} files: "
                     "give it once (used for every file) or once per file")
    return args


def render_table(file: str, result: dict) -> str:
    """A readable block for one analysed file (`result` is `Analysis.to_dict()`)."""
    heads = [h.field for h in TABLE]
    width = max(len(c) for c in [*result["classes"], "ambiguity"]) + 2
    lines = [f"{file}  ({result['duration']:.1f} s)", f"  transcript: {result['transcript']!r}",
             "  " + "".ljust(width) + "".join(h.short.lower().rjust(8) for h in TABLE)]
    tops = {h: max(range(len(result[h])), key=result[h].__getitem__) for h in heads}
    for i, name in enumerate(result["classes"]):
        cells = "".join((f"{100 * result[h][i]:5.1f}%" + ("*" if tops[h] == i else " ")).rjust(8) for h in heads)
        lines.append("  " + name.ljust(width) + cells)
    lines.append("  " + "ambiguity".ljust(width) + "".join(f"{result['entropy'][h]:.2f} ".rjust(8) for h in heads))
    lines.append(f"  voice/words conflict: {result['conflict']:.3f} (Jensen-Shannon distance, 0 to 0.833)")
    lines += [f"  {line}" for line in heard_lines(result)]
    return "\n".join(lines)


def heard_lines(result: dict) -> list[str]:
    """What Whisper heard, where it matters: no speech, the language, no words (keys of `Analysis.to_dict`)."""
    lines = []
    if result.get("no_speech_prob") is not None:
        verdict = "speech heard" if result["speech_heard"] else "NO SPEECH HEARD"
        lines.append(f"whisper: {verdict} (no-speech probability {result['no_speech_prob']:.2f})")
    if result.get("language") is not None:
        lines.append(f"language detected: {result['language']} ({result['language_prob']:.0%})")
    if not result.get("has_words", True):
        lines.append("no words: the text head gives no reading (uniform), the fused one is the voice's")
    return lines


def _quiet_libraries() -> None:
    """Keep stderr for our own messages: no download/loading progress bars or library warnings."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def analyze_files(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the `analyze` command; returns the exit status. Output goes to `out`/`err` (default: the
    current sys.stdout/sys.stderr, looked up at call time)."""
    out, err = out or sys.stdout, err or sys.stderr
    _quiet_libraries()
    from amber2.audio import AudioTooLong
    from amber2.pipeline import Analyzer

    try:
        analyzer = Analyzer(model=args.model)
        if args.fused_reading:
            analyzer.model.config.fused_reading = args.fused_reading
    except (UserError, OSError) as error:  # a bad checkpoint, a missing Whisper or encoder
        print(f"{PROG}: cannot load the model: {one_line(error)}", file=err)
        return 2
    if args.segments:
        return segment_files(analyzer, args, out, err)
    transcripts = args.transcript or [None]
    failed = 0
    for i, file in enumerate(args.files):
        transcript = transcripts[i] if len(transcripts) > 1 else transcripts[0]
        try:
            result = analyzer.analyze(file, transcript=transcript).to_dict()
        except (UserError, OSError) as error:
            hint = " Or follow it over time with --segments." if isinstance(error, AudioTooLong) else ""
            print(f"{PROG}: {file}: {one_line(error)}{hint}", file=err)
            failed += 1
            continue
        if args.json:
            print(json.dumps({"file": file, **result}, ensure_ascii=False), file=out, flush=True)
        else:
            print(render_table(file, result) + "\n", file=out, flush=True)
    return 1 if failed else 0


def render_segments(file: str, rows: list[dict], summary: dict) -> str:
    """A readable table of one recording's segments (`amber2.timeline.segment_rows`) and its summary
    (`Analysis.to_dict()` of the whole recording)."""
    def top(p: list[float], classes: list[str]) -> str:
        i = max(range(len(p)), key=p.__getitem__)
        return f"{classes[i]} {100 * p[i]:.0f}%"

    heads = [h.field for h in TABLE]
    lines = [f"{file}  ({summary['duration']:.1f} s, {len(rows)} segments)",
             f"  {'start':>7} {'end':>7}  " + "".join(h.short.lower().ljust(15) for h in TABLE) + "conflict  words"]
    for r in rows:
        if r["speech"]:
            cells = "".join(top(r[h], r["classes"]).ljust(15) for h in heads)
            conflict = "    -   " if r["conflict"] is None else f"{r['conflict']:8.2f}"
            words = r["transcript"] if len(r["transcript"]) <= 60 else r["transcript"][:57] + "..."
        else:
            cells, conflict, words = "(no speech)".ljust(45), "    -   ", ""
        lines.append(f"  {r['start']:7.1f} {r['end']:7.1f}  {cells}{conflict}  {words}")
    tops = "   ".join(f"{h.short.lower()} {top(summary[h.field], summary['classes'])}" for h in TABLE)
    lines.append(f"  whole recording (duration-weighted): {tops}   conflict {summary['conflict']:.2f}")
    return "\n".join(lines)


def segment_files(analyzer, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`analyze --segments`: each file's timeline as JSON lines or a table, optionally a CSV of them all."""
    from amber2.timeline import TimelineConfig, analyze_timeline, segment_rows, write_csv

    cfg = TimelineConfig() if args.max_seconds is None else TimelineConfig(max_seconds=args.max_seconds)
    failed, rows = 0, []
    for file in args.files:
        def progress(fraction: float, message: str, file=file) -> None:
            print(f"{PROG}: {file}: {100 * fraction:3.0f}% {message}", file=err, flush=True)

        try:
            timeline = analyze_timeline(analyzer, file, cfg, progress=progress)
        except (UserError, OSError) as error:
            print(f"{PROG}: {file}: {one_line(error)}", file=err)
            failed += 1
            continue
        file_rows = segment_rows(file, timeline)
        rows += file_rows
        if args.json:
            for row in file_rows:
                print(json.dumps(row, ensure_ascii=False), file=out, flush=True)
        else:
            print(render_segments(file, file_rows, timeline.summary.to_dict()) + "\n", file=out, flush=True)
    if args.csv:
        try:
            write_csv(args.csv, rows, list(analyzer.classes))
        except OSError as error:
            print(f"{PROG}: cannot write {args.csv}: {one_line(error)}", file=err)
            return 1
        print(f"{PROG}: {len(rows)} segments written to {args.csv}", file=err)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return analyze_files(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
