"""`python -m train` as several processes (accelerate launch, torchrun) on an IEMOCAP-format fixture corpus.

Real launchers, real processes, real encoders (Whisper tiny.en, MiniLM): two processes must produce the fold
files and report numbers of one, resume after an interruption, and stop together when one of them fails.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from corpus_fixtures import build_iemocap
from train.distributed import Launch, lone_cpu_launch

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE = Path(sys.executable).parent / "accelerate"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
TINY = ["--folds", "2", "--seeds", "2", "--epochs", "2", "--lambda-mai-grid", "0.5", "--kappa-grid", "2", "4",
        "--batch-size", "16", "--no-progress", "--audio-encoder", "whisper-tiny.en"]
# One thread per process in every run, so one process and two compute with the same kernels.
ENV = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
       # Open MPI refuses to start as root unless told twice (CI containers run as root)
       "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd: list[str], env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, **ENV, **(env or {})})
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{res.stdout}\n{res.stderr[-4000:]}"
    return res


def train_args(root: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return ["-m", "train", "--dataset", "iemocap", "--root", str(root), "--out", str(out),
            "--cache-dir", str(cache), *TINY, *extra]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return build_iemocap(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def one_process(corpus, tmp_path_factory) -> tuple[Path, Path]:
    """The reference: the same command in one process, no launcher (its output folder and feature cache)."""
    out, cache = tmp_path_factory.mktemp("one"), tmp_path_factory.mktemp("one-cache")
    run([sys.executable, *train_args(corpus, out, cache)])
    return out, cache


def cached_vectors(cache: Path) -> dict[str, dict[str, np.ndarray]]:
    """kind/encoder -> content key -> vector, from every shard of a feature cache."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for shard in cache.rglob("shard-*.npz"):
        with np.load(shard) as z:
            out.setdefault(str(shard.parent.relative_to(cache)), {}).update(zip(map(str, z["keys"]), z["vectors"]))
    return out


def assert_same_results(ours: Path, reference: Path) -> None:
    """Identical report numbers and fold files (the fold JSON's wall time aside)."""
    a, b = (json.loads((p / "report.json").read_text()) for p in (ours, reference))
    for key in ("metrics", "paired", "binned", "selected", "bin_edges", "calibration"):
        assert a[key] == b[key], key
    folds = sorted((reference / "protocol" / "folds").glob("fold_*.npz"))
    assert len(folds) == 2
    for npz in folds:
        assert (ours / "protocol" / "folds" / npz.name).read_bytes() == npz.read_bytes(), npz.name
        ja, jb = (json.loads((d / "protocol" / "folds" / npz.with_suffix(".json").name).read_text())
                  for d in (ours, reference))
        ja.pop("seconds"), jb.pop("seconds")
        assert ja == jb
    model = Path("model") / "model.safetensors"
    assert (ours / model).read_bytes() == (reference / model).read_bytes()


def assert_same_features(cache: Path, reference: Path) -> None:
    ours, ref = cached_vectors(cache), cached_vectors(reference)
    assert ours.keys() == ref.keys() and all(ours[k].keys() == ref[k].keys() for k in ref)
    for kind in ref:
        for key, vector in ref[kind].items():
            assert np.array_equal(ours[kind][key], vector), (kind, key)


def test_launch_reads_torchrun_and_mpi_variables():
    assert Launch.from_env({}) == Launch(0, 1, 0, False)
    assert Launch.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == Launch(3, 4, 1, False)
    mpi = {"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
           "ACCELERATE_USE_CPU": "True"}
    assert Launch.from_env(mpi) == Launch(1, 2, 1, True)
    # each process its own GPU; --cpu wins; an explicit device is kept
    assert Launch(1, 2, 1).device("cuda") == "cuda:1" and Launch(0, 1, 0).device("cuda") == "cuda"
    assert Launch(1, 2, 1, cpu=True).device("cuda") == "cpu" and Launch(1, 2, 1).device("cuda:0") == "cuda:0"
    # `accelerate launch --cpu --num_processes 2` without MPI runs the command once: the trainer says so
    lone = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    assert "--mpirun_hostfile" in lone_cpu_launch(lone)
    assert lone_cpu_launch({"ACCELERATE_USE_CPU": "True"}) is None and lone_cpu_launch({**lone, **mpi}) is None


def test_two_groups_share_an_extraction_and_each_clip_is_embedded_once(tmp_path):
    """The sharing logic on its own: two processes' worth of extract_features, as threads, against one."""
    import threading

    from test_features import SpyAudioEncoder, SpyTextEncoder, tone
    from train.distributed import Group
    from train.features import extract_features

    clips = tmp_path / "clips"
    clips.mkdir()
    items = [type("Item", (), {"id": f"u{i}", "audio": tone(clips / f"u{i}.wav", 200 + 40 * i, 0.5 + 0.1 * i),
                               "transcript": f"words {i % 7}"})() for i in range(11)]
    items.append(type("Item", (), {"id": "bad", "audio": clips / "missing.wav", "transcript": "x"})())
    one = extract_features(items, SpyAudioEncoder(), SpyTextEncoder(), tmp_path / "one", batch_size=2,
                           progress=False)
    (tmp_path / "sync").mkdir()
    encoders = [(SpyAudioEncoder(), SpyTextEncoder()) for _ in range(2)]
    results: dict[int, object] = {}

    def process(rank: int) -> None:
        group = Group(Launch(rank, 2, rank), tmp_path / "sync")
        results[rank] = extract_features(items, *encoders[rank], tmp_path / "two", batch_size=2, progress=False,
                                         group=group)

    threads = [threading.Thread(target=process, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for feats in results.values():
        assert np.array_equal(feats.audio, one.audio) and np.array_equal(feats.text, one.text)
        assert feats.ids == one.ids and feats.skipped == one.skipped
    # the 11 clips in batches of 2 (6 batches) dealt 3 and 3; the 7 distinct sentences embedded once overall
    assert [sum(a.calls) for a, _ in encoders] == [6, 5] and sum(sum(t.calls) for _, t in encoders) == 7


@pytest.mark.slow
def test_accelerate_launch_cpu_two_processes_equal_one_process(corpus, one_process, tmp_path):
    """`accelerate launch --cpu --num_processes 2` (accelerate starts CPU processes with mpirun)."""
    if not shutil.which("mpirun"):
        pytest.skip("accelerate launch --cpu starts several processes through mpirun: apt-get install openmpi-bin")
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("localhost slots=2\n")
    out, cache = tmp_path / "out", tmp_path / "cache"
    res = run([str(ACCELERATE), "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--mpirun_hostfile", str(hostfile),
               "--main_process_port", str(free_port()), *train_args(corpus, out, cache)])
    assert "[rank 1 of 2]" in res.stderr, "two processes ran"
    assert_same_results(out, one_process[0])
    assert_same_features(cache, one_process[1])


@pytest.mark.slow
def test_torchrun_two_processes_share_features_and_folds_and_equal_one_process(corpus, one_process, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    res = run([*TORCHRUN, *train_args(corpus, out, cache, "--device", "cpu")])
    embedded = {int(r): int(n) for n, r in re.findall(r"to embed \((\d+) by rank (\d)\)", res.stderr)}
    assert set(embedded) == {0, 1} and all(embedded.values()), "both processes embedded clips"
    trained = re.findall(r"\[rank (\d) of 2\] fold (\d): trained", res.stderr)
    assert sorted(trained) == [("0", "0"), ("1", "1")], "each process trained one fold"
    assert_same_results(out, one_process[0])
    assert_same_features(cache, one_process[1])
    # both wrote into the cache, and no clip was embedded twice
    audio = next(p for p in cache.rglob("audio/*") if p.is_dir())
    keys = [k for shard in audio.glob("shard-*.npz") for k in np.load(shard)["keys"]]
    assert len(list(audio.glob("shard-*.npz"))) == 2 and len(keys) == len(set(keys))


def _start(cmd: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **ENV, **(env or {})}, start_new_session=True)


def _interrupt_when(proc: subprocess.Popen, ready, timeout: float = 240) -> None:
    """Ctrl-C (SIGINT to the launcher and its processes) as soon as `ready()` holds."""
    t0 = time.monotonic()
    while not ready():
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() - t0 < timeout
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) != 0


@pytest.mark.slow
def test_interrupted_two_process_run_resumes_without_redoing_features_or_folds(corpus, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    cmd = [*TORCHRUN, *train_args(corpus, out, cache, "--device", "cpu", "--feature-batch-size", "1",
                                  "--folds", "5", "--epochs", "10")]

    # 1. stopped while extracting features: some clips are cached
    _interrupt_when(_start(cmd, tmp_path / "1.log"), lambda: len(list(cache.rglob("audio/*/shard-*.npz"))) >= 2)
    done = sum(len(v) for k, v in cached_vectors(cache).items() if k.startswith("v1/audio"))
    # 2. stopped while training folds: the clips cached before are not embedded again
    folds = out / "protocol" / "folds"
    _interrupt_when(_start(cmd, tmp_path / "2.log"), lambda: len(list(folds.glob("fold_*.json"))) >= 1)
    second = (tmp_path / "2.log").read_text()
    counts = [tuple(map(int, m)) for m in re.findall(r"(\d+) of (\d+) clips cached, (\d+) to embed", second)]
    assert counts and all(c == (done, c[1], c[1] - done) for c in counts) and 0 < done < counts[0][1], counts
    finished = {int(p.stem.split("_")[1]) for p in folds.glob("fold_*.json")}
    assert 0 < len(finished) < 5
    # 3. run to the end: every clip cached, only the unfinished folds trained
    res = run(cmd)
    assert re.findall(r"(\d+) of \1 clips cached, 0 to embed", res.stderr)
    trained = {int(f) for f in re.findall(r"fold (\d): trained", res.stderr)}
    assert trained == set(range(5)) - finished
    assert len(json.loads((out / "report.json").read_text())["folds"]) == 5


WORKER = """
import sys, time
from train.distributed import start
group = start(sys.argv[1])
if group.rank == 1:
    if sys.argv[2] == "raise":
        group.fail(ValueError("the disk is full"))
        sys.exit(1)
    import os, signal
    os.kill(os.getpid(), signal.SIGKILL)          # killed without a word (out of memory, a lost machine)
group.wait("work")
"""


@pytest.mark.parametrize("how, says", [("raise", "rank 1 of 2 failed: ValueError: the disk is full"),
                                       ("kill", "rank 1 of 2 has not answered for 3 s")])
def test_a_failing_process_stops_the_others_with_its_rank_and_cause(tmp_path, how, says):
    """Processes started by hand (no launcher to kill the rest): the waiting one stops by itself, naming the
    rank and the cause, instead of waiting forever."""
    env = {**os.environ, **ENV, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2",
           "AMBER2_DIST_TIMEOUT": "3"}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), how], cwd=ROOT, text=True,
                              stderr=subprocess.PIPE, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)})
             for r in (0, 1)]
    t0 = time.monotonic()
    _, err = procs[0].communicate(timeout=60)
    procs[1].wait(timeout=60)
    assert procs[0].returncode != 0 and says in err, err[-2000:]
    assert time.monotonic() - t0 < 30


@pytest.mark.slow
def test_one_process_run_needs_no_launcher_and_leaves_no_coordination_files(one_process):
    out, _ = one_process
    assert not (out / ".distributed").exists()
    code = ("import sys, train.run, train.features, train.protocol, train.distributed; "
            "print('accelerate' in sys.modules)")
    assert run([sys.executable, "-c", code]).stdout.strip() == "False"
