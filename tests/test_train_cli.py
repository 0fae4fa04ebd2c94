"""`python -m train` end to end on IEMOCAP- and MSP-Podcast-format fixture corpora (espeak-ng speech).

Real encoders (Whisper base, MiniLM) embed the few dozen fixture clips once per session (shared feature
cache); the protocol runs with tiny settings. The only thing replaced is the Hugging Face Hub client.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from corpus_fixtures import build_iemocap, build_msp_podcast
from train.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--folds", "2", "--seeds", "2", "--epochs", "2", "--lambda-mai-grid", "0.5", "--kappa-grid", "2", "4",
        "--batch-size", "16", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="session")
def corpora(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("corpora")
    # 24 MSP segments are enough for 2 folds and keep the Whisper pass short
    return {"iemocap": build_iemocap(base / "iemocap"), "msp-podcast": build_msp_podcast(base / "msp", n_files=24)}


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("features")


def train_cli(dataset: str, root: Path, out: Path, cache: Path, *extra: str) -> int:
    return main(["--dataset", dataset, "--root", str(root), "--out", str(out), "--cache-dir", str(cache),
                 *TINY, *extra])


@pytest.fixture(scope="session")
def iemocap_run(corpora, feature_cache, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("iemocap-run")
    assert train_cli("iemocap", corpora["iemocap"], out, feature_cache) == 0
    return out


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "train", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


@pytest.mark.slow
def test_iemocap_run_writes_report_figures_and_a_loadable_checkpoint(iemocap_run, corpora):
    from amber2.labels import get_space
    from amber2.model import load_model

    report = json.loads((iemocap_run / "report.json").read_text())
    assert set(report["metrics"]) == {"cbce", "amber2"}
    for method in ("cbce", "amber2"):
        for head in ("A", "T", "AT"):
            js = report["metrics"][method][head]["js"]
            assert 0.0 <= js["mean"] <= np.sqrt(np.log(2)) + 1e-6
            assert len(js["per_seed"]) == 2
    md = (iemocap_run / "report.md").read_text()
    assert "AmbER" in md and "JS" in md and "W-F1" in md
    pngs, htmls = list(iemocap_run.glob("*.png")), list(iemocap_run.glob("*.html"))
    assert pngs and htmls
    assert pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    model = load_model(iemocap_run / "model")
    assert list(model.classes) == list(get_space("iemocap4").classes)
    card = (iemocap_run / "model" / "README.md").read_text()
    assert "iemocap" in card.lower() and "whisper-base" in card
    # the protocol's finished folds are kept for resuming
    assert len(list((iemocap_run / "protocol").rglob("fold_*.json"))) == 2


@pytest.mark.slow
def test_checkpoint_serves_the_analyzer(iemocap_run, corpora):
    from amber2.pipeline import Analyzer

    clip = next((corpora["iemocap"] / "Session1" / "sentences" / "wav").rglob("*.wav"))
    result = Analyzer(model=iemocap_run / "model").analyze(clip)
    assert result.classes == ["neutral", "happy", "angry", "sad"]
    for dist in (result.audio, result.text, result.fused):
        assert dist.shape == (4,) and abs(float(dist.sum()) - 1.0) < 1e-5


@pytest.mark.slow
def test_rerun_resumes_finished_folds(iemocap_run, corpora, feature_cache, caplog):
    before = json.loads((iemocap_run / "report.json").read_text())["metrics"]
    with caplog.at_level("INFO", logger="train"):
        assert train_cli("iemocap", corpora["iemocap"], iemocap_run, feature_cache) == 0
    assert caplog.text.count("loaded from") == 2, "both finished folds are read back, not retrained"
    after = json.loads((iemocap_run / "report.json").read_text())["metrics"]
    assert after == before


@pytest.mark.slow
def test_deeper_heads_and_eq6_train_from_the_cli_and_serve_the_app(corpora, feature_cache, tmp_path, capsys):
    """`--head-layers 2` trains through the generic ensemble (no gradient code of its own), `--loss eq6` is the
    paper's Eq. 6; the checkpoint serves `python -m amber2 analyze --model` and the app's Analyzer, and the
    run leaves per-item predictions that reproduce the report."""
    from amber2.__main__ import main as amber2_main
    from amber2.model import load_model
    from amber2.pipeline import Analyzer

    out = tmp_path / "deep"
    assert train_cli("iemocap", corpora["iemocap"], out, feature_cache, "--head-layers", "2", "--loss", "eq6") == 0
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["head_layers"] == 2 and report["config"]["ensemble"] == "generic"
    assert report["config"]["lambda_expert"] == 0 and not report["config"]["detach_experts"]
    assert set(report["paired"]) == {"js", "jsd_bits", "bc", "r2", "acc", "f1", "wf1", "ece"}
    model = load_model(out / "model")
    assert model.config.head_layers == 2 and len(model.heads["AT"]) == 7
    # predictions.npz alone reproduces the report: every metric (ECE included) and the paired intervals
    from amber2.metrics import all_metrics
    from train.results import paired_bootstrap
    with np.load(out / "predictions.npz") as z:
        assert z["amber2_AT"].shape == (2, *z["y"].shape) and len(z["ids"]) == len(z["folds"]) == len(z["y"])
        for method in ("cbce", "amber2"):
            for head in ("A", "T", "AT"):
                per_seed = [all_metrics(z["y"], p) for p in z[f"{method}_{head}"]]
                for metric, stat in report["metrics"][method][head].items():
                    assert np.mean([m[metric] for m in per_seed]) == pytest.approx(stat["mean"]), metric
        again = paired_bootstrap(z["y"], z["amber2_AT"], z["cbce_AT"])
    for metric, row in report["paired"].items():
        assert again[metric] == pytest.approx(row), metric
    md = (out / "report.md").read_text()
    assert "JSD (bits)" in md and "paired" in md and "ECE" in md and (out / "reliability.png").is_file()
    clip = next((corpora["iemocap"] / "Session1" / "sentences" / "wav").rglob("*.wav"))
    capsys.readouterr()
    assert amber2_main(["analyze", str(clip), "--model", str(out / "model"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    printed = printed[0] if isinstance(printed, list) else printed
    assert abs(sum(printed["fused"]) - 1.0) < 1e-5
    result = Analyzer(model=out / "model").analyze(clip, transcript=printed["transcript"])
    np.testing.assert_allclose(result.fused, printed["fused"], atol=1e-6)


@pytest.mark.slow
def test_msp_podcast_end_to_end(corpora, feature_cache, tmp_path):
    from amber2.model import load_model

    assert train_cli("msp-podcast", corpora["msp-podcast"], tmp_path / "out", feature_cache,
                     "--seeds", "1") == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert len(report["metrics"]["amber2"]["AT"]["acc"]["per_seed"]) == 1
    assert load_model(tmp_path / "out" / "model").classes == ["neutral", "happy", "sad", "angry", "disgust",
                                                               "fear", "surprise", "contempt"]


def test_user_mistakes_are_one_line_errors(tmp_path):
    for args, needle in [
        (["--dataset", "iemocap", "--root", str(tmp_path / "missing"), "--out", str(tmp_path / "o")], "missing"),
        (["--dataset", "timit", "--root", str(tmp_path), "--out", str(tmp_path / "o")], "unknown dataset"),
        (["--dataset", "msp-podcast", "--root", str(tmp_path), "--out", str(tmp_path / "o")], "MSP"),
        (["--dataset", "csv", "--out", str(tmp_path / "o")], "--root"),
    ]:
        res = cli(*args)
        assert res.returncode == 2, (args, res.stderr)
        assert needle.lower() in res.stderr.lower(), res.stderr
        assert "Traceback" not in res.stderr


class FakeHfApi:
    """Records what would be sent to the Hub (the one boundary this file replaces)."""

    instances: list["FakeHfApi"] = []

    def __init__(self, token=None, **_):
        self.token, self.calls = token, []
        FakeHfApi.instances.append(self)

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", repo_id, kw))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, repo_id, folder_path, **kw):
        folder = Path(folder_path)
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        self.calls.append(("upload_folder", repo_id, {"folder": folder, "files": files, **kw}))


@pytest.mark.slow
def test_push_to_hub_uploads_the_exact_checkpoint_folder(iemocap_run, corpora, feature_cache, monkeypatch,
                                                         capsys):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    FakeHfApi.instances.clear()
    assert train_cli("iemocap", corpora["iemocap"], iemocap_run, feature_cache,
                     "--push-to-hub", "someone/amber2-iemocap", "--token", "hf_fake") == 0
    api, = FakeHfApi.instances
    (create, repo, _), (upload, repo2, sent) = api.calls
    assert (create, repo, upload, repo2) == ("create_repo", "someone/amber2-iemocap", "upload_folder",
                                             "someone/amber2-iemocap")
    model_dir = iemocap_run / "model"
    assert sent["folder"] == model_dir
    on_disk = {p.name: p.read_bytes() for p in model_dir.iterdir() if p.is_file() and not p.name.startswith(".")}
    assert set(on_disk) >= {"model.safetensors", "config.json", "README.md"}
    assert sent["files"] == on_disk
    assert "someone/amber2-iemocap" in capsys.readouterr().out


@pytest.mark.slow
def test_offline_push_is_a_clear_error(iemocap_run, corpora, feature_cache, monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    code = train_cli("iemocap", corpora["iemocap"], iemocap_run, feature_cache,
                     "--push-to-hub", "someone/amber2-iemocap", "--token", "hf_fake")
    err = capsys.readouterr().err
    assert code == 2
    assert "error:" in err and "HF_HUB_OFFLINE" in err and "Traceback" not in err


# ----------------------------------------------------------------------------------------------------------
# The demo corpus (real RAVDESS + EmotionLines from ../shared)


def test_dialogue_selection_keeps_whole_dialogues_within_budget_and_prefers_emotion(shared_dir):
    from train.datasets import load_dataset
    from train.demo import select_dialogues

    lines = load_dataset("emotionlines", shared_dir / "data" / "emotionlines", space="demo7")
    chosen = select_dialogues(lines.items, 300, folds=5)
    assert 250 <= len(chosen) <= 300
    by_group = {}
    for it in lines.items:
        by_group.setdefault(it.group, []).append(it.id)
    picked = {}
    for it in chosen:
        picked.setdefault(it.group, []).append(it.id)
    assert all(picked[g] == by_group[g] for g in picked), "dialogues are taken whole, in order"
    neutral_share = lambda items: np.mean([int(np.argmax(it.votes)) == 0 for it in items])
    assert neutral_share(chosen) < neutral_share(lines.items) - 0.15
    assert {it.fold for it in chosen} == set(range(5))
    fold_sizes = np.bincount([it.fold for it in chosen])
    assert fold_sizes.max() - fold_sizes.min() <= 2 * max(len(v) for v in picked.values())
    # deterministic, and independent of the order the corpus lists its dialogues in
    items_of = {}
    for it in lines.items:
        items_of.setdefault(it.group, []).append(it)
    shuffled = [it for g in reversed(list(items_of)) for it in items_of[g]]
    again = select_dialogues(shuffled, 300, folds=5)
    assert sorted((it.id, it.fold) for it in again) == sorted((it.id, it.fold) for it in chosen)


def test_demo_corpus_holds_all_voices_and_pairs_words_with_a_flat_voice(tmp_path, shared_dir):
    import soundfile as sf

    from train.demo import POOL_SENTENCES, POOL_VOICES, VOICE_CORPORA, DemoConfig, build_demo_corpus
    from train.transfer import corpus_of

    data = shared_dir / "data"
    cfg = DemoConfig(ravdess_root=data / "ravdess", nemo_root=data / "nemo", emotionlines_root=data / "emotionlines",
                     goemotions_root=data / "goemotions", emotionlines_max=40, goemotions_per_class=10,
                     cache_dir=tmp_path / "demo")
    corpus = build_demo_corpus(cfg, progress=False)
    assert corpus.space.name == "demo7"
    by_source = {}
    for it in corpus.items:
        by_source.setdefault(it.id.split("/")[0], []).append(it)
    # every RAVDESS speech clip (24 actors) and every nEMO clip (9 speakers); folds by speaker
    assert len(by_source["ravdess"]) == 1440 and len({it.group for it in by_source["ravdess"]}) == 24
    assert len(by_source["nemo"]) == 4481 and len({it.group for it in by_source["nemo"]}) == 9
    for name in ("ravdess", "nemo"):
        folds_of = {}
        for it in by_source[name]:
            folds_of.setdefault(it.group, set()).add(it.fold)
        assert all(len(f) == 1 for f in folds_of.values()), f"a {name} speaker straddles folds"
    assert 30 <= len(by_source["emotionlines"]) <= 40
    # GoEmotions: at most 10 per majority class, all seven classes present
    majority = np.bincount([int(np.argmax(it.votes)) for it in by_source["goemotions"]], minlength=7)
    assert majority.max() <= 10 and (majority > 0).all()
    voices = by_source["ravdess"] + by_source["nemo"]
    assert all(it.votes.sum() == 1 for it in voices)
    # `demo --transfer` leaves out each voice corpus by the id prefix; every other item is a words item
    voice_ids = corpus_of(np.array([it.id for it in corpus.items]))
    assert sorted(set(voice_ids) & set(VOICE_CORPORA)) == sorted(VOICE_CORPORA)
    assert all((src in VOICE_CORPORA) == (it.audio.parent != cfg.speech_dir)
               for src, it in zip(voice_ids, corpus.items))
    assert all(it.votes.sum() == 5 for it in by_source["emotionlines"])
    # words items carry a clip of the flat-voice pool, the same clip for the same words
    words = by_source["emotionlines"] + by_source["goemotions"]
    pool = {it.audio for it in words}
    assert 1 < len(pool) <= len(POOL_SENTENCES) * len(POOL_VOICES)
    assert all(p.parent == cfg.speech_dir and sf.info(p).duration > 0.5 for p in pool)
    assert {it.fold for it in corpus.items} == set(range(5))
    again = build_demo_corpus(cfg, progress=False)
    assert [(it.id, it.audio, it.fold) for it in again.items] == [(it.id, it.audio, it.fold) for it in corpus.items]


def test_demo_transfer_flags_reach_the_protocol():
    from train.demo import TRANSFER_AT, build_parser
    from train.cli import protocol_from_args

    args = build_parser().parse_args(["--transfer", "--weight-decay", "0.5", "--seeds", "0", "2"])
    protocol = protocol_from_args(args)
    assert args.transfer and tuple(args.transfer_at) == TRANSFER_AT
    assert protocol.weight_decay == 0.5 and protocol.seeds == (0, 2)
    assert not build_parser().parse_args([]).transfer


def test_demo_pairing_flags_and_the_loss_ablation_share_state_folders(tmp_path):
    """`--loss eq6` trains in the folder the default run's ablation fills, and the reverse, so deciding the
    loss never trains a protocol twice."""
    from train.demo import ablation_protocol, build_parser, protocol_dir
    from train.cli import loss_name, protocol_from_args

    args = build_parser().parse_args(["--pairing", "voice-plain", "--conflict-items", "5"])
    assert args.pairing == ["voice-plain"] and args.conflict_items == 5
    assert build_parser().parse_args(["--pairing"]).pairing == []
    default = protocol_from_args(build_parser().parse_args([]))
    eq6 = protocol_from_args(build_parser().parse_args(["--loss", "eq6"]))
    assert loss_name(default) == "default" and loss_name(eq6) == "eq6"
    recipe = {"pairing": ["voice-plain"]}
    assert protocol_dir(tmp_path, recipe, ablation_protocol(default)) == protocol_dir(tmp_path, recipe, eq6)
    assert protocol_dir(tmp_path, recipe, ablation_protocol(eq6)) == protocol_dir(tmp_path, recipe, default)
    assert protocol_dir(tmp_path, recipe, default) != protocol_dir(tmp_path, {"pairing": []}, default)


def test_inspect_subcommand_is_delegated(shared_dir, capsys, tmp_path):
    out_csv = tmp_path / "items.csv"
    assert main(["inspect", "--dataset", "ravdess", "--root", str(shared_dir / "data" / "ravdess"),
                 "--space", "demo7", "--csv", str(out_csv)]) == 0
    printed = capsys.readouterr().out
    assert "1440 items" in printed and "neutral       288" in printed
    assert len(out_csv.read_text().strip().splitlines()) == 1441


# ----------------------------------------------------------------------------------------------------------
# Command-line help


@pytest.mark.parametrize("command", ["run", "demo", "evaluate", "inspect"])
def test_every_flag_says_what_it_does(command):
    from train import corpus_summary, demo, evaluate, run

    parser = {"run": run, "demo": demo, "evaluate": evaluate, "inspect": corpus_summary}[command].build_parser()
    for action in parser._actions:
        if action.dest != "help":
            said = re.sub(r"\(default[^)]*\)", "", action.help or "")
            assert len(said.split()) >= 3, f"{command} {action.option_strings}: {action.help!r}"


def test_every_protocol_setting_is_described_and_head_layers_reaches_the_config():
    from train.config import ProtocolConfig
    from train.cli import PROTOCOL_HELP, protocol_from_args
    from train.run import build_parser

    assert {f.name for f in dataclasses.fields(ProtocolConfig)} - {"seeds"} <= set(PROTOCOL_HELP)
    args = build_parser().parse_args(["--dataset", "csv", "--out", "x", "--device", "cpu", "--head-layers", "2"])
    assert protocol_from_args(args).head_layers == 2
