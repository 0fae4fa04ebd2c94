"""One table of heads (amber2.heads.TABLE): a head added there is built, trained, calibrated, reported and
shipped without another line of the project knowing about it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs in its own process: the table is read once, when the modules are imported.
EXTRA_HEAD = r'''
import json, sys
import amber2.heads as heads
extra = heads.Head("A2", "voice2", "Voice again (audio)", "Voice 2", "#CC79A7", "audio", "Audio again (p_A2)")
heads.TABLE = heads.TABLE + (extra,)
heads.HEADS = tuple(h.key for h in heads.TABLE)
heads.FIELDS = tuple(h.field for h in heads.TABLE)
heads._BY_NAME = {n: h for h in heads.TABLE for n in (h.key, h.field)}

import torch
from train.config import ProtocolConfig, synthetic_data
from train.protocol import run_protocol, train_final
from train.report import write_report

torch.set_num_threads(1)
data = synthetic_data(n_items=160, audio_dim=12, text_dim=10, n_classes=4, n_folds=2, seed=0)
cfg = ProtocolConfig(n_folds=2, seeds=(0,), lambda_mai_grid=(0.5,), kappa_grid=(4.0,), max_epochs=1,
                     batch_size=32, hidden_dim=8, fusion_dim=8, ensemble="generic", num_threads=1)
result = run_protocol(data, cfg)
write_report(result, sys.argv[1], "toy")
model = train_final(data, cfg, 0.5, 4.0)
probs = model.predict(torch.from_numpy(data.audio[:5]), torch.from_numpy(data.text[:5]))
print(json.dumps({"heads": sorted(probs), "predictions": list(result.predictions["amber2"].shape),
                  "temperatures": sorted(model.config.temperatures),
                  "fused reading": model.config.fused_reading, "sums": probs["A2"].sum(-1).tolist()}))
'''


def test_a_fourth_head_from_the_table_alone_trains_through_the_protocol(tmp_path):
    done = subprocess.run([sys.executable, "-c", EXTRA_HEAD, str(tmp_path / "report")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["heads"] == ["A", "A2", "AT", "T"] and got["temperatures"] == ["A", "A2", "AT", "T"]
    assert got["predictions"] == [1, 4, 160, 4]          # seeds, heads, items, classes
    assert all(abs(s - 1) < 1e-5 for s in got["sums"]) and got["fused reading"] == "arbitrated"
    report = (tmp_path / "report" / "report.md").read_text()
    assert "Audio again (p_A2)" in report
