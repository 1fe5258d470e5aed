"""The history of runs and their comparison, from real run directories: three runs of the tiny
model trained on the CPU with different settings, read back as the runs screen and
`model-garden runs --all/--json` show them."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from engine_helpers import events, run_in_process, settings, write_dataset
from runs_helpers import recorded_run

from mgtui.cli import main
from mgtui.runs import history, registry
from mgtui.runs.rundir import read_json

VARIANTS = {"r8": {"lora_r": 8}, "r16": {"lora_r": 16}, "r16-lr-half": {"lora_r": 16, "learning_rate": 5e-3}}


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict[str, Path]:
    """Three finished runs that differ in lora_r and learning_rate, evaluated every 6 steps."""
    base = tmp_path_factory.mktemp("history")
    data = write_dataset(base / "data.jsonl", "messages", n=64)
    out = {}
    for name, overrides in VARIANTS.items():
        res = settings(
            tiny_model, data, base / "runs" / name, max_steps=12, eval_split=0.125, save_steps=6, **overrides
        )
        code, run_dir = run_in_process(res)
        assert code == 0, (run_dir / "train.log").read_text()[-2000:]
        out[name] = run_dir
    return out


@pytest.fixture
def registered(real_runs: dict[str, Path]) -> dict[str, Path]:
    for path in real_runs.values():
        registry.register(path)
    return real_runs


def test_the_table_shows_each_runs_summary_and_only_the_settings_that_differ(registered):
    runs = history.collect()
    assert {r.name for r in runs} == set(VARIANTS)
    for rec in runs:
        summary = read_json(rec.path / "summary.json")
        evals = [e["eval_loss"] for e in events(rec.path) if e["type"] == "eval"]
        assert rec.state == "done"
        assert rec.final_loss == summary["final_loss"]
        assert rec.steps == summary["steps"] == 12
        assert rec.tokens_per_s == summary["steady_tokens_per_s"]
        assert rec.duration_s == summary["runtime_s"]
        assert rec.estimate_gb == summary["estimate_gb"]
        assert evals and rec.best_eval_loss == min(evals) and rec.final_eval_loss == evals[-1]
    assert history.differing(runs) == ["lora_r", "learning_rate"]
    heads, rows = history.table(runs)
    assert heads == [
        "state",
        "run",
        "lora-r",
        "learning-rate",
        "final loss",
        "best eval",
        "tok/s",
        "peak/est",
        "time",
        "when",
        "base model",
    ]
    for rec, row in zip(runs, rows):
        cells = dict(zip(heads, row))
        assert cells["run"] == rec.name
        assert cells["lora-r"] == str(VARIANTS[rec.name]["lora_r"])
        assert cells["final loss"] == f"{rec.final_loss:.4g}"
        assert cells["best eval"] == f"{rec.best_eval_loss:.4g}"
        assert cells["base model"] == "tiny-llama"


def test_runs_json_prints_the_same_figures_for_scripts(registered, capsys):
    assert main(["runs", "--json"]) == 0
    printed = {Path(r["output_dir"]).name: r for r in json.loads(capsys.readouterr().out)}
    for rec in history.collect():
        row = printed[rec.name]
        assert row["final_loss"] == rec.final_loss and row["best_eval_loss"] == rec.best_eval_loss
        assert row["tokens_per_s"] == rec.tokens_per_s and row["duration_s"] == rec.duration_s
        assert row["differing"] == {"lora_r": rec.settings["lora_r"], "learning_rate": rec.settings["learning_rate"]}
    assert main(["runs", "--all"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["state", "when", "run", "base"] and len(table) == 4


def test_the_curves_are_the_logged_losses_by_step_and_by_tokens_seen(registered):
    for rec in history.collect():
        logs = [e for e in events(rec.path) if e["type"] == "log"]
        assert history.series(rec.curves.train, "step") == [(float(e["step"]), e["loss"]) for e in logs]
        by_tokens = history.series(rec.curves.train, "tokens")
        assert [x for x, _ in by_tokens] == [float(e["tokens_seen"]) for e in logs]
        assert all(b > a for (a, _), (b, _) in zip(by_tokens, by_tokens[1:]))
        evals = [(float(e["step"]), e["eval_loss"]) for e in events(rec.path) if e["type"] == "eval"]
        assert history.series(rec.curves.eval, "step") == evals
        smoothed = history.smooth(history.series(rec.curves.train, "step"), 0.6)
        assert [x for x, _ in smoothed] == [float(e["step"]) for e in logs]
        assert smoothed[0][1] == logs[0]["loss"] and smoothed[-1][1] != logs[-1]["loss"]


def test_a_resumed_runs_token_count_carries_on(tmp_path):
    """The engine's count restarts at 0 in a resumed process: the x axis must not go back."""
    run = tmp_path / "run"
    run.mkdir()
    logs = [(1, 100), (2, 200), (3, 100), (4, 200)]  # steps 3 and 4 after a resume
    lines = [
        {"v": 1, "seq": i, "t": 1.0 + i, "type": "log", "step": s, "loss": 1.0, "tokens_seen": k}
        for i, (s, k) in enumerate(logs)
    ]
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    rec = history.read_record(run)
    assert [x for x, _ in history.series(rec.curves.train, "tokens")] == [100, 200, 300, 400]


def test_runs_under_a_folder_are_found_and_a_deleted_one_is_missing(real_runs, tmp_path, capsys):
    folder = tmp_path / "elsewhere" / "project"
    shutil.copytree(real_runs["r8"], folder / "outputs" / "r8-copy")
    gone = recorded_run(tmp_path / "gone")
    shutil.rmtree(gone)
    assert main(["runs", "--all", "--under", str(tmp_path / "elsewhere")]) == 0
    out = capsys.readouterr().out
    assert "r8-copy" in out and "missing" in out and "Traceback" not in out
    # a checkpoint inside a run is not a run of its own
    assert history.found_under(tmp_path / "elsewhere") == [(folder / "outputs" / "r8-copy").resolve()]
    assert main(["runs", "--under", str(tmp_path / "nowhere")]) == 2
    assert "--under" in capsys.readouterr().err
    assert history.add_folder(tmp_path / "elsewhere") is None
    assert {r.name for r in history.collect()} == {"r8-copy", "gone"}


def test_archive_hides_a_run_and_delete_frees_it_but_never_a_running_one(tmp_path, engine_pid):
    done = recorded_run(tmp_path / "done")
    live = recorded_run(tmp_path / "live")
    (live / "run.json").write_text(json.dumps({"pid": engine_pid, "state": "running", "uid": os.getuid()}))
    runs = {r.name: r for r in history.collect()}
    assert runs["live"].state == "running"

    history.set_archived(runs["done"], True)
    assert [r.name for r in history.visible(history.collect())] == ["live"]
    assert {r.name for r in history.visible(history.collect(), archived=True)} == {"done", "live"}
    assert all(Path(r.output_dir).name != "done" for r in registry.list_runs())
    history.set_archived(runs["done"], False)

    assert history.delete_problem(runs["live"]) == f"{live} is running: stop it first"
    with pytest.raises(ValueError):
        history.delete(runs["live"])
    assert live.exists()
    assert history.size_bytes(done) == sum(f.stat().st_size for f in done.iterdir())
    history.delete(runs["done"])
    assert not done.exists()
    assert [r.name for r in history.collect()] == ["live"]


def test_filter_and_sort(tmp_path):
    recorded_run(tmp_path / "a-r64", scale=0.9, hours=1, lora_r=64)
    recorded_run(tmp_path / "b-r16", hours=2)
    runs = history.collect()
    assert [r.name for r in history.visible(runs, sort="when")] == ["b-r16", "a-r64"]
    assert [r.name for r in history.visible(runs, sort="final loss")] == ["a-r64", "b-r16"]
    assert [r.name for r in history.visible(runs, "lora-r=64")] == ["a-r64"]
    assert [r.name for r in history.visible(runs, "DONE b-")] == ["b-r16"]
    assert history.visible(runs, "nothing-like-this") == []
