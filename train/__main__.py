"""`python -m train [run] ...` trains on a corpus, `python -m train inspect ...` describes one,
`python -m train demo ...` rebuilds the bundled demo model, `python -m train evaluate ...` scores a checkpoint's
voice on a corpus it never saw.

    python -m train --dataset iemocap --root /data/IEMOCAP_full_release --out runs/iemocap
    python -m train inspect --dataset msp-podcast --root /data/MSP-Podcast
    python -m train demo --cache-dir /work/cache/amber2-demo-features
    python -m train evaluate --model assets/amber2-demo --dataset emovo --root ../shared/data/emovo
"""
from __future__ import annotations

import sys

COMMANDS = ("run", "inspect", "demo", "evaluate")


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a subcommand; `run` is the default when the first argument is not a command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "run"
    if command != "run":
        from train.distributed import Launch

        if Launch.from_env().world > 1:   # each process would redo the whole command into the same files
            print(f"error: only `python -m train [run]` runs as several processes; start `{command}` "
                  "without a launcher", file=sys.stderr)
            return 2
    if command == "inspect":
        from train.corpus_summary import main as inspect_main

        return inspect_main(argv)
    if command == "demo":
        from train.demo import main as demo_main

        return demo_main(argv)
    if command == "evaluate":
        from train.evaluate import main as evaluate_main

        return evaluate_main(argv)
    from train.run import main as run_main

    return run_main(argv)


if __name__ == "__main__":
    sys.exit(main())
