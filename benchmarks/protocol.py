"""Time the paper's protocol on random IEMOCAP-sized features and compare with this machine's matmul speed.

    python benchmarks/protocol.py                         # 5 folds x 5 seeds x 9 grid points + 5 baseline, 30 epochs
    python benchmarks/protocol.py --folds 1 --epochs 2 --breakdown   # a short run while iterating
    python benchmarks/protocol.py --processes 2 [--epochs 30]       # the whole protocol, 1 vs 2 processes

Prints the wall time, the arithmetic the protocol performed (every linear layer's forward and backward,
counted from the layer shapes x the rows processed) and efficiency = FLOPs / wall time / matmul speed, where
the matmul speed is torch.matmul of two 2048 x 2048 fp32 matrices measured in the same run (before and after,
the better of the two). The protocol runs at the trainer's default `--precision auto`: bfloat16 first-layer
products where the hardware has them (then the bf16 matmul speed is printed too, and the efficiency against
it, the stricter figure). Before the protocol, one training step of a whole fold's ensemble is timed with the
hand-written fast path (`FastEnsemble`, what the paper's architecture trains with) and with the generic path
(`GenericEnsemble`: the model's own code under torch.func, what any other architecture trains with), side by
side. `--breakdown` also times the fast step's phases in fp32 and in bf16.

Two FLOP counts are printed: "nominal" counts every backward as 2x its forward (the usual convention);
"executed" counts what the hand-written backward really does (the layers that read the raw features need no
input gradient, so their backward is 1x their forward).

`--processes N` times the whole protocol (all 5 folds, resumable fold files in a temporary folder) as one
process and as N processes started by torchrun, the trainer's own multi-process path (`run_protocol` with a
`train.distributed` group: folds dealt across processes, rank 0 pools them), and prints both side by side:
the launched command's wall time (interpreter start and imports included) and the protocol's own time. On
the CPU the cores are split evenly (`--threads` per process, default: cores / processes).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# On a shared machine OpenMP's default spin-waiting stalls both threads whenever another process holds a
# core; passive waiting costs nothing measurable on these large products. Must be set before torch loads,
# and applies to the matmul reference as well as to the protocol.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.config import ProtocolConfig, fold_runs, synthetic_data  # noqa: E402
from train.ensemble import initial_model, make_ensemble  # noqa: E402
from train.fit import EnsembleLoss, _optimizer, retain_freed_memory  # noqa: E402
from train.protocol import run_fold  # noqa: E402

IEMOCAP = dict(n_items=5500, audio_dim=512, text_dim=384, n_classes=4, groups_per_fold=30, latent_dim=16)


def matmul_gflops(n: int = 2048, repeats: int = 10, device: str = "cpu", dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s of torch.matmul on two n x n matrices of `dtype` (best of a few timings)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(3):
        sync()
        t0 = time.perf_counter()
        for _ in range(repeats):
            a @ b
        sync()
        best = min(best, (time.perf_counter() - t0) / repeats)
    return 2 * n**3 / best / 1e9


@dataclasses.dataclass
class FlopsPerRow:
    """FLOPs one run spends on one row, from the layer shapes of AmbER2Model."""

    forward: float
    backward_nominal: float
    backward_executed: float

    @classmethod
    def of(cls, audio_dim: int, text_dim: int, fusion: int, hidden: int, classes: int) -> "FlopsPerRow":
        first = (audio_dim + text_dim) * (2 * fusion + hidden)   # W_a, W_t, the gate, heads A/T layer 1
        inner = fusion * hidden + 3 * hidden * classes           # head AT layer 1, the three output layers
        fwd = 2.0 * (first + inner)
        # raw features need no gradient: their layers compute the weight gradient only
        return cls(fwd, 2 * fwd, 2.0 * first + 2 * 2.0 * inner)


def step_breakdown(data, cfg: ProtocolConfig, per_row: FlopsPerRow, steps: int = 5) -> float:
    """Where one training step of a whole fold's ensemble spends its time (after one warm-up step); returns
    the step's seconds."""
    from amber2.losses import class_balanced_weights

    runs = fold_runs(cfg)
    group = len(runs) // len(cfg.seeds)
    init = {s: initial_model(data, cfg, s) for s in cfg.seeds}
    retain_freed_memory()
    ens = make_ensemble([init[r.seed] for r in runs], group, cfg, generator_seed=0)
    y_all = torch.from_numpy(data.y).to(cfg.device)
    loss = EnsembleLoss(runs, cfg, class_balanced_weights(y_all.cpu()), ens.device)
    opt = _optimizer(list(ens.params.values()), cfg)
    audio, text = torch.from_numpy(data.audio).to(cfg.device), torch.from_numpy(data.text).to(cfg.device)
    sync = torch.cuda.synchronize if cfg.device.startswith("cuda") else (lambda: None)
    phases = dict.fromkeys(("gather", "forward", "loss", "backward", "AdamW"), 0.0)
    S, B = len(cfg.seeds), cfg.batch_size
    for step in range(steps + 1):
        marks = [time.perf_counter()]
        rows = torch.randint(0, len(data.y), (S * B,), device=cfg.device)
        xa, xt, y = (t.index_select(0, rows).view(S, B, -1) for t in (audio, text, y_all))
        sync(), marks.append(time.perf_counter())
        logits, cache = ens.forward(xa, xt, train=True)
        sync(), marks.append(time.perf_counter())
        grads, _ = loss(logits, y, group)
        sync(), marks.append(time.perf_counter())
        ens.backward(cache, grads)
        sync(), marks.append(time.perf_counter())
        opt.step()
        sync(), marks.append(time.perf_counter())
        if step:
            for name, a, b in zip(phases, marks, marks[1:]):
                phases[name] += (b - a) / steps
    total = sum(phases.values())
    flops = len(runs) * B * (per_row.forward + per_row.backward_executed)
    print(f"{cfg.ensemble} {cfg.precision}: one step of {len(runs)} runs x {B} rows: {total * 1e3:.0f} ms, "
          f"{flops / total / 1e9:.1f} GFLOP/s executed; "
          + ", ".join(f"{k} {v * 1e3:.0f} ms ({v / total:.0%})" for k, v in phases.items()))
    return total


def protocol_worker(out: Path, args: argparse.Namespace) -> int:
    """One process of a `--processes` timing: the whole protocol through `run_protocol`'s group path."""
    from train.distributed import Launch, start
    from train.protocol import run_protocol

    launch = Launch.from_env()
    data = synthetic_data(n_folds=5, seed=0, **IEMOCAP)
    cfg = ProtocolConfig(seeds=tuple(range(args.seeds)), max_epochs=args.epochs,
                         device=launch.device(args.device), runs_per_batch=args.runs_per_batch,
                         precision=args.precision, num_threads=args.threads)
    group = start(out, launch)
    try:
        t0 = time.perf_counter()
        result = run_protocol(data, cfg, out, group=group)
        if result is not None:
            js = result.metrics["amber2"]["AT"]["js"]["mean"]
            print(json.dumps({"seconds": time.perf_counter() - t0, "amber2_js": js}), flush=True)
    finally:
        group.close()
    return 0


def compare_processes(args: argparse.Namespace) -> int:
    """The whole protocol as 1 and as `args.processes` processes (torchrun), side by side."""
    n = args.processes
    cores = os.cpu_count() or 1
    rows, load_before = [], os.getloadavg()
    for procs in (1, n):
        threads = args.threads or (max(1, cores // procs) if args.device == "cpu" else None)
        with tempfile.TemporaryDirectory() as out:
            launcher = [sys.executable] if procs == 1 else [
                sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)]
            cmd = [*launcher, __file__, "--worker", out, "--epochs", str(args.epochs), "--seeds", str(args.seeds),
                   "--device", args.device, "--runs-per-batch", str(args.runs_per_batch),
                   "--precision", args.precision] + (["--threads", str(threads)] if threads else [])
            t0 = time.perf_counter()
            res = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - t0
        if res.returncode:
            print(res.stdout, res.stderr[-4000:], sep="\n")
            return res.returncode
        line = json.loads(next(x for x in res.stdout.splitlines() if x.startswith("{")))
        rows.append((procs, threads, wall, line["seconds"], line["amber2_js"]))
    print(f"whole protocol: 5 folds x {args.seeds} seeds x 9 grid points (+ CB-CE), {args.epochs} epochs, "
          f"IEMOCAP-sized random features; device {args.device}, {cores} cores")
    print("processes  threads each  wall (s)  protocol (s)  speed-up  AmbER² JS (AT)")
    for procs, threads, wall, seconds, js in rows:
        print(f"{procs:9d}  {threads or '-':>12}  {wall:8.1f}  {seconds:12.1f}  {rows[0][2] / wall:7.2f}x  {js:.6f}")
    print("(same fold files either way: the AmbER² JS column must match)")
    print("load average (1, 5, 15 min) before: {:.1f} {:.1f} {:.1f}, after: {:.1f} {:.1f} {:.1f}".format(
        *load_before, *os.getloadavg()))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", type=int, default=5, help="how many of the 5 folds to run (all: 5)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--runs-per-batch", type=int, default=64)
    ap.add_argument("--precision", default="auto", help="first-layer products: auto (the trainer's default), "
                    "fp32 or bf16")
    ap.add_argument("--breakdown", action="store_true",
                    help="also time the phases of one training step, fp32 and bf16 side by side")
    ap.add_argument("--processes", type=int, default=None,
                    help="time the whole protocol as 1 and as this many processes (torchrun), side by side")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)   # one process of a --processes timing
    args = ap.parse_args(argv)
    if args.worker:
        return protocol_worker(args.worker, args)
    if args.processes:
        return compare_processes(args)
    if args.threads:
        torch.set_num_threads(args.threads)

    data = synthetic_data(n_folds=5, seed=0, **IEMOCAP)
    cfg = ProtocolConfig(seeds=tuple(range(args.seeds)), max_epochs=args.epochs, device=args.device,
                         runs_per_batch=args.runs_per_batch, precision=args.precision)
    print(f"data: {len(data.y)} items, audio {data.audio.shape[1]}-d, text {data.text.shape[1]}-d, "
          f"{data.n_classes} classes; device {args.device}, {torch.get_num_threads()} threads, "
          f"precision {cfg.precision}")
    low = cfg.precision == "bf16"
    speed_before = matmul_gflops(device=args.device)
    low_before = matmul_gflops(device=args.device, dtype=torch.bfloat16) if low else 0.0
    per_row = FlopsPerRow.of(data.audio.shape[1], data.text.shape[1], cfg.fusion_dim, cfg.hidden_dim,
                             data.n_classes)
    fast, generic = (step_breakdown(data, dataclasses.replace(cfg, ensemble=kind), per_row)
                     for kind in ("fast", "generic"))
    print(f"one training step, generic path / fast path: {generic / fast:.2f}")
    if args.breakdown:
        fp32, bf16 = (step_breakdown(data, dataclasses.replace(cfg, precision=p), per_row) for p in ("fp32", "bf16"))
        print(f"step time bf16 / fp32: {bf16 / fp32:.2f}")
    nominal = executed = 0.0
    t0 = time.perf_counter()
    for fold in data.fold_ids[:args.folds]:
        res = run_fold(data, cfg, fold)
        n_runs, n_val, n_test = len(res.runs), len(res.val_index), len(res.test_index)
        n_fit = int((data.folds != fold).sum()) - n_val
        train_rows = n_fit * cfg.max_epochs * n_runs
        eval_rows = (n_val * cfg.max_epochs + n_test) * n_runs
        nominal += train_rows * (per_row.forward + per_row.backward_nominal) + eval_rows * per_row.forward
        executed += train_rows * (per_row.forward + per_row.backward_executed) + eval_rows * per_row.forward
        print(f"fold {fold}: {n_runs} runs, {n_fit} fit / {n_val} validation / {n_test} test items, "
              f"{res.seconds:.1f} s, AmbER² selected {res.selection['amber2']['key']}")
    wall = time.perf_counter() - t0
    speed = max(speed_before, matmul_gflops(device=args.device))
    low_speed = max(low_before, matmul_gflops(device=args.device, dtype=torch.bfloat16)) if low else 0.0
    print(f"\nwall time            {wall:9.1f} s  ({wall / 60:.1f} min for {args.folds} fold(s), "
          f"{args.epochs} epochs)")
    print(f"matmul fp32 speed    {speed:9.1f} GFLOP/s (2048 x 2048, best of before/after)")
    if low:
        print(f"matmul bf16 speed    {low_speed:9.1f} GFLOP/s (the first layer's products run in bf16)")
    for name, flops in (("nominal (bwd = 2x fwd)", nominal), ("executed", executed)):
        print(f"FLOPs {name:22s} {flops / 1e12:8.2f} TFLOP -> {flops / wall / 1e9:7.1f} GFLOP/s, "
              f"efficiency {flops / wall / 1e9 / speed:.2f} vs fp32"
              + (f", {flops / wall / 1e9 / low_speed:.2f} vs bf16" if low else ""))
    if args.folds < 5 or args.epochs < 30:
        # compute scales with folds x epochs; the per-fold setup (model init, test predictions) is small
        print(f"projected full protocol (5 folds, 30 epochs): {wall * 5 / args.folds * 30 / args.epochs / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
