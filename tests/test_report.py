"""Reports: report.json holds every number, report.md the paper's Tables 1-4, Fig. 2 as a real PNG and HTML."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from train.config import synthetic_data
from train.protocol import ProtocolConfig, run_protocol
from train.report import PAPER, ReportError, paper_key, write_report


@pytest.fixture(scope="module")
def result():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = synthetic_data(n_items=360, audio_dim=16, text_dim=12, n_classes=4, n_folds=2, seed=1)
        cfg = ProtocolConfig(n_folds=2, seeds=(0, 1), lambda_mai_grid=(0.3, 0.7), kappa_grid=(4.0,),
                             max_epochs=4, batch_size=32, hidden_dim=16, fusion_dim=16, lr=3e-3)
        return run_protocol(data, cfg)
    finally:
        torch.set_num_threads(old)


@pytest.fixture(scope="module")
def iemocap_report(result, tmp_path_factory):
    return write_report(result, tmp_path_factory.mktemp("iemocap"), "IEMOCAP")


def test_report_files_exist(iemocap_report):
    assert set(iemocap_report) == {"json", "md", "png", "html", "reliability_png", "reliability_html"}
    for path in iemocap_report.values():
        assert path.is_file() and path.stat().st_size > 0


def test_markdown_has_the_four_tables_with_our_and_the_papers_numbers(result, iemocap_report):
    md = iemocap_report["md"].read_text()
    for title in ("Table 1.", "Table 2.", "Table 3.", "Table 4.", "Fig. 2."):
        assert title in md
    for label in ("JS dist. (nat) ↓", "JSD (bits) ↓", "ECE ↓", "BC ↑", "R² ↑", "F1 ↑", "W-F1 ↑", "ACC ↑",
                  "Text (p_T)", "Audio (p_A)", "Audio + Text (p_A+T)", "Baseline (A+T)", "AmbER²"):
        assert label in md
    ours = result.metrics["amber2"]["AT"]["js"]
    base = result.metrics["cbce"]["AT"]["js"]
    row = f"| JS dist. (nat) ↓ | {base['mean']:.3f} ± {base['std']:.3f} | {ours['mean']:.3f} ± {ours['std']:.3f} |"
    assert row in md
    text_wf1 = result.metrics["cbce"]["T"]["wf1"]
    assert f"{text_wf1['mean']:.3f} ± {text_wf1['std']:.3f}" in md
    assert "0.193 ± 0.002" in md and "paper (IEMOCAP)" in md            # the paper's AmbER² JS on IEMOCAP
    assert "![Fig. 2](fig2_ambiguity.png)" in md
    precision = {"fp32": "Arithmetic: float32.", "bf16": "first-layer products in bfloat16"}[result.config["precision"]]
    assert precision in md                                           # how the numbers were computed
    trained = sum(f.seconds for f in result.folds)
    assert f"Training time: {trained:.1f} s for the 2 folds" in md     # not the time to load resumed folds


def test_paper_figures_are_shown_only_for_the_papers_corpora(result, tmp_path):
    msp = write_report(result, tmp_path / "msp", "MSP-Podcast")["md"].read_text()
    assert "0.328 ± 0.001" in msp and "paper (MSP-Podcast)" in msp and "0.193 ± 0.002" not in msp
    other = write_report(result, tmp_path / "other", "ravdess")["md"].read_text()
    assert "paper (" not in other and "published" not in other
    forced = write_report(result, tmp_path / "forced", "my corpus", paper="iemocap")["md"].read_text()
    assert "0.193 ± 0.002" in forced
    assert (paper_key("iemocap"), paper_key("MSP_Podcast v1.12"), paper_key("demo")) == \
        ("iemocap", "msp-podcast", None)


def test_json_holds_every_number(result, iemocap_report):
    data = json.loads(iemocap_report["json"].read_text())
    assert data["dataset"] == "IEMOCAP"
    assert data["metrics"] == json.loads(json.dumps(result.to_dict()["metrics"]))
    assert len(data["binned"]["amber2"]["AT"]) == result.config["n_bins"]
    # the paper's "JS" sits beside the figure it most likely is: the divergence in bits
    assert data["paper"]["amber2"]["AT"]["jsd_bits"] == [0.193, 0.002] and "js" not in data["paper"]["amber2"]["AT"]
    assert [f["fold"] for f in data["folds"]] == [0, 1]


def test_report_rebuilds_from_its_own_json(iemocap_report, tmp_path):
    data = json.loads(iemocap_report["json"].read_text())
    again = write_report(data, tmp_path, "IEMOCAP")
    assert again["md"].read_text() == iemocap_report["md"].read_text()


def test_fig2_png_is_a_real_image(iemocap_report):
    import matplotlib.image

    raw = iemocap_report["png"].read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(iemocap_report["png"])
    assert img.ndim == 3 and img.shape[1] >= 1000 and img.shape[0] >= 600
    assert float(np.std(img[..., :3])) > 0.05                            # something is drawn


def test_fig2_html_works_offline(iemocap_report):
    html = iemocap_report["html"].read_text()
    assert "<script src=\"https://cdn" not in html                       # plotly.js is embedded
    assert "Plotly.newPlot" in html and len(html) > 1_000_000
    assert "AmbER²" in html and "Baseline (CB-CE)" in html


def test_bad_input_gets_a_clear_message(result, tmp_path):
    with pytest.raises(ReportError, match="ProtocolResult"):
        write_report({"nothing": 1}, tmp_path, "IEMOCAP")
    with pytest.raises(ReportError, match="paper must be"):
        write_report(result, tmp_path, "IEMOCAP", paper="voxceleb")


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def test_paper_constants_match_the_paper_text(shared_dir):
    """Every number copied into PAPER appears in the paper's own table rows."""
    text = (shared_dir / "paper" / "amber2-paper.txt").read_text()
    fmt = lambda v: f"{v[0]:.3f} ± {v[1]:.3f}"  # noqa: E731
    labels = {"T": "Text (P_T)", "A": "Audio (P_A)", "AT": "Audio + Text (P_{A+T})"}
    for key, tables in PAPER.items():
        for head, label in labels.items():
            m = tables["cbce"][head]
            assert _row(label, *(fmt(m[k]) for k in ("jsd_bits", "bc", "r2"))) in text, (key, head)
            assert _row(label, *(fmt(m[k]) for k in ("f1", "wf1", "acc"))) in text, (key, head)
        for k, name in (("jsd_bits", "JS ↓"), ("bc", "BC ↑"), ("r2", "R ² ↑"), ("f1", "F1 ↑"), ("wf1", "W-F1 ↑"),
                        ("acc", "ACC ↑")):
            assert _row(name, fmt(tables["cbce"]["AT"][k]), fmt(tables["amber2"]["AT"][k])) in text, (key, k)


def test_demo_readme_states_wins_ties_and_losses_with_intervals(result, tmp_path):
    """The demo README's overall comparison counts each metric once, by whether its paired interval excludes 0,
    and carries calibration and the Eq. 6 ablation."""
    from train.demo_report import ablation_lines, calibration_lines, comparison_lines, write_demo_readme
    from train.results import paired_bootstrap

    data = json.loads(json.dumps(result.to_dict()))
    lines = comparison_lines(data)
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| metric")]
    assert len(rows) == 8
    verdicts = [row.rstrip(" |").rsplit("| ", 1)[-1] for row in rows]
    for row, (k, r) in zip(verdicts, data["paired"].items()):
        assert (row == "tie") == (r["low"] <= 0 <= r["high"]), k
    wins, ties, losses = verdicts.count("AmbER²"), verdicts.count("tie"), verdicts.count("CB-CE")
    assert f"AmbER² wins {wins}, ties {ties}, loses {losses}** of 8" in lines[0]
    assert any("0." in line for line in calibration_lines(data)[2:4])
    same = paired_bootstrap(result.y, result.predictions["amber2"][:, 2], result.predictions["amber2"][:, 2],
                            n_resamples=20)
    ablation = ablation_lines(data, data, same)
    assert sum(line.endswith("| tie |") for line in ablation) == 8      # a run against itself ties everywhere
    card = {"demo": {"recipe": "r", "counts": {"ravdess": 3}, "groups": {"ravdess": 1}}, "licences": ["x"],
            "command": "python -m train demo"}
    text = write_demo_readme(tmp_path, card, tmp_path / "m", (), data, ablation).read_text()
    for title in ("paired over items", "Calibration", "Eq. 6 as written"):
        assert title in text
