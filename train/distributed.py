"""`python -m train` as several processes: who this process is, how it waits for the others, how a failure
stops them.

A launcher starts the same command N times and tells each process who it is through the environment:
`torchrun` and `accelerate launch --multi_gpu` set RANK, WORLD_SIZE and LOCAL_RANK; `accelerate launch --cpu
--num_processes N --mpirun_hostfile FILE` starts the processes with MPI, which sets OMPI_COMM_WORLD_* (Open MPI)
or PMI_* (MPICH, Intel MPI). Without those variables this module does nothing and imports nothing heavy:
`SINGLE`, a group of one, makes every wait and check a no-op.

The processes share the output folder and the feature cache (one disk, or a filesystem every machine mounts)
and coordinate through small files in OUT/.distributed/<launch id>/:
- a barrier (`Group.wait`) is one file per process per stage, which may carry a JSON payload;
- a process that fails writes `failed-<rank>` with the cause (`Group.fail`); the others look for it between
  units of work (a batch of clips, a fold: `Group.check`) and while they wait, and stop with a message that
  names the rank and the cause;
- each process bumps a heartbeat counter every few seconds; a waiting process that sees a peer's counter
  stand still for `timeout` seconds (killed, out of memory, a lost machine) stops too: no wait is unbounded.
The launch id is agreed once through `torch.distributed` (gloo), the only collective call, so two launches
into the same folder never read each other's files.
"""
from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from amber2.errors import UserError
from amber2.files import atomic_write_text

# Rank, world size and local rank, as the launchers spell them (torchrun first; then Open MPI, MPICH/Intel MPI,
# MVAPICH: what `accelerate launch --cpu` starts through mpirun).
RANK_VARS = ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK")
WORLD_VARS = ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")
LOCAL_RANK_VARS = ("LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "MV2_COMM_WORLD_LOCAL_RANK")
# Set by `accelerate launch --cpu`: every process computes on the CPU even where a GPU is present.
CPU_VAR = "ACCELERATE_USE_CPU"
# Seconds a peer may stay silent (no heartbeat) before the others give up on it; override for slow filesystems.
TIMEOUT_VAR = "AMBER2_DIST_TIMEOUT"
DEFAULT_TIMEOUT = 600.0
HEARTBEAT_SECONDS = 2.0
SYNC_FOLDER = ".distributed"


class PeerFailure(UserError, RuntimeError):
    """Another process of the launch failed or stopped answering; this one stops too. The message is for a person."""


def _first_int(env: Mapping[str, str], names: Sequence[str], default: int) -> int:
    for name in names:
        if env.get(name, "").strip():
            return int(env[name])
    return default


@dataclass(frozen=True)
class Launch:
    """This process's place in a launch, read from the launcher's environment variables."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    cpu: bool = False          # `accelerate launch --cpu`

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Launch":
        env = os.environ if env is None else env
        world = _first_int(env, WORLD_VARS, 1)
        rank = _first_int(env, RANK_VARS, 0)
        if world < 1 or not 0 <= rank < world:
            raise PeerFailure(f"the launcher set rank {rank} of {world} processes: not a valid rank")
        return cls(rank, world, _first_int(env, LOCAL_RANK_VARS, 0),
                   env.get(CPU_VAR, "").strip().lower() in ("1", "true", "yes"))

    def device(self, requested: str) -> str:
        """The torch device this process computes on: the CPU under `--cpu`; a bare "cuda" becomes this
        process's own GPU, cuda:LOCAL_RANK, when several processes run; anything else as asked."""
        if self.cpu:
            return "cpu"
        if requested == "cuda" and self.world > 1:
            return f"cuda:{self.local_rank}"
        return requested


def lone_cpu_launch(env: Mapping[str, str] | None = None) -> str | None:
    """A warning when `accelerate launch --cpu --num_processes N` started one process instead of N.

    accelerate starts several CPU processes only through MPI (`--mpirun_hostfile`); without it, it runs the
    command once, with MASTER_ADDR set (it sets that only when N > 1) and no rank variable."""
    env = os.environ if env is None else env
    launched = Launch.from_env(env)
    if launched.world == 1 and launched.cpu and env.get("MASTER_ADDR"):
        return ("accelerate launch --cpu started one process: accelerate starts several CPU processes only "
                "through MPI (add --mpirun_hostfile FILE) - or use `torchrun --nproc_per_node N -m train ... "
                "--device cpu`; carrying on as one process")
    return None


class Group:
    """The processes of one launch. `SINGLE` (one process) waits for nobody and never fails anyone."""

    def __init__(self, launch: Launch = Launch(), folder: Path | None = None, timeout: float = DEFAULT_TIMEOUT):
        self.launch, self.folder, self.timeout = launch, folder, float(timeout)
        self._stages = 0
        self._beats: dict[int, tuple[str | None, float]] = {}   # rank -> (last counter seen, when it changed)
        self._stop = threading.Event()
        self._heart: threading.Thread | None = None

    @property
    def rank(self) -> int:
        return self.launch.rank

    @property
    def world(self) -> int:
        return self.launch.world

    @property
    def is_main(self) -> bool:
        """Rank 0: pools the folds, writes the report and the checkpoint, pushes."""
        return self.launch.rank == 0

    def __repr__(self) -> str:
        return f"Group(rank {self.rank} of {self.world}, {self.folder})"

    def deal(self, things: Sequence) -> list:
        """This process's share of `things`, dealt like cards: items rank, rank + world, ..."""
        return list(things[self.rank::self.world])

    # -- failures -------------------------------------------------------------------------------------------

    def check(self) -> None:
        """Raise PeerFailure when another process has failed (cheap: one directory listing)."""
        if self.folder is None:
            return
        for path in sorted(self.folder.glob("failed-*")):
            rank = int(path.name.split("-")[1])
            if rank != self.rank:
                try:
                    cause = path.read_text(encoding="utf-8").strip()
                except OSError:
                    cause = "(cause unreadable)"
                raise PeerFailure(f"rank {rank} of {self.world} failed: {cause}")

    def fail(self, exc: BaseException) -> None:
        """Tell the others this process failed with `exc` (not for a PeerFailure: that one is not news)."""
        if self.folder is None or isinstance(exc, PeerFailure):
            return
        cause = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        try:
            atomic_write_text(self.folder / f"failed-{self.rank}", cause)
        except OSError:
            pass   # the launcher still sees this process exit with an error

    # -- waiting --------------------------------------------------------------------------------------------

    def wait(self, stage: str, payload: Any = None) -> list:
        """Barrier: return every process's JSON-able `payload` (by rank) once all have reached this stage.

        Raises PeerFailure when a peer fails or stays silent for `timeout` seconds meanwhile."""
        if self.folder is None:
            return [payload]
        self.check()
        self._stages += 1
        name = f"{self._stages:03d}-{stage}"
        atomic_write_text(self.folder / f"{name}.{self.rank}.json", json.dumps(payload))
        files = [self.folder / f"{name}.{r}.json" for r in range(self.world)]
        delay = 0.02
        while True:
            missing = [r for r, f in enumerate(files) if not f.exists()]
            if not missing:
                return [json.loads(f.read_text(encoding="utf-8")) for f in files]
            self.check()
            self._check_alive(missing)
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    def _check_alive(self, ranks: Sequence[int]) -> None:
        now = time.monotonic()
        for r in ranks:
            try:
                beat: str | None = (self.folder / f"alive-{r}").read_text(encoding="utf-8")
            except OSError:
                beat = None
            last, since = self._beats.get(r, (None, now))
            if beat != last or r not in self._beats:
                self._beats[r] = (beat, now)
            elif now - since > self.timeout:
                where = ("; is the output folder on a filesystem every machine shares?" if beat is None else "")
                raise PeerFailure(f"rank {r} of {self.world} has not answered for {self.timeout:.0f} s "
                                  f"(no heartbeat in {self.folder}){where}")

    def _heartbeat(self) -> None:
        count = 0
        while True:
            try:
                atomic_write_text(self.folder / f"alive-{self.rank}", str(count))
            except OSError:
                pass   # a full or vanished folder shows up as silence, which the others time out on
            count += 1
            if self._stop.wait(HEARTBEAT_SECONDS):
                return

    def close(self) -> None:
        """Stop the heartbeat (the process is leaving)."""
        self._stop.set()
        if self._heart is not None:
            self._heart.join(timeout=HEARTBEAT_SECONDS + 1)


SINGLE = Group()


def _agree_on_id(launch: Launch, timeout: float) -> str:
    """A fresh id shared by every process of this launch (rank 0 draws it; one broadcast over gloo)."""
    from datetime import timedelta

    import torch.distributed as dist

    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
    if missing:
        raise PeerFailure(f"{launch.world} processes were launched but {' and '.join(missing)} is not set; "
                          "start them with torchrun or accelerate launch")
    dist.init_process_group("gloo", init_method="env://", rank=launch.rank, world_size=launch.world,
                            timeout=timedelta(seconds=timeout))
    try:
        box = [uuid.uuid4().hex[:12] if launch.rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return str(box[0])
    finally:
        dist.destroy_process_group()


def start(out: str | Path, launch: Launch | None = None, timeout: float | None = None) -> Group:
    """The group of this launch, coordinating in `out`/.distributed; SINGLE when one process runs.

    Every process must call it (it waits until all have arrived, or raises PeerFailure after `timeout`)."""
    launch = launch or Launch.from_env()
    if launch.world == 1:
        return Group(launch)
    timeout = float(os.environ.get(TIMEOUT_VAR) or DEFAULT_TIMEOUT) if timeout is None else float(timeout)
    run_id = _agree_on_id(launch, timeout)
    root = Path(out) / SYNC_FOLDER
    folder = root / run_id
    folder.mkdir(parents=True, exist_ok=True)
    if launch.rank == 0:   # what earlier launches left behind (their processes are gone)
        for old in root.iterdir():
            if old.name != run_id:
                shutil.rmtree(old, ignore_errors=True)
    group = Group(launch, folder, timeout)
    group._heart = threading.Thread(target=group._heartbeat, name="amber2-heartbeat", daemon=True)
    group._heart.start()
    group.wait("start")
    return group
