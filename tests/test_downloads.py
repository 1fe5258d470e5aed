"""The long waits before the first step, against a local stand-in of the Hub (tests/hub_stand_in.py):
the checks before the engine starts, the download as a phase with progress, a dropped connection,
a stop during the download, and a Hub dataset by subset and split.

huggingface_hub reads HF_ENDPOINT when it is imported, so every client here is a process of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_helpers import events, wait_for, write_dataset
from hub_stand_in import HubStandIn

from mgtui.hub_check import model_files, room_problem
from mgtui.runs.launch import request_stop


@pytest.fixture
def hub(tmp_path: Path, tiny_model: Path) -> Iterator[HubStandIn]:
    with HubStandIn(tmp_path / "hub-root") as stand_in:
        files = {p.name: p.read_bytes() for p in tiny_model.iterdir() if p.is_file()}
        stand_in.add_repo("org/tiny", files)
        stand_in.add_repo("org/licensed", files, gated="manual")
        stand_in.add_repo("org/secret", files, private=True)
        yield stand_in


def train(hub: HubStandIn, home: Path, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = hub.client_env(home, token=token)
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "mgtui", "train", "--max-steps", "1", "--warmup-steps", "0", "--batch-size", "1", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_files_loading_reads_are_picked_from_a_repository():
    names = ["config.json", "model-00001-of-00002.safetensors", "model.safetensors.index.json",
             "pytorch_model.bin", "pytorch_model.bin.index.json", "original/consolidated.00.pth",
             "consolidated.safetensors", "tokenizer.json", "README.md", "modeling_x.py", "chat_template.jinja"]  # fmt: skip
    assert model_files(names) == [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
        "chat_template.jinja",
    ]
    assert "modeling_x.py" in model_files(names, remote_code=True)
    assert "pytorch_model.bin" in model_files(["config.json", "pytorch_model.bin"])  # no safetensors: the .bin


def test_room_in_the_cache_is_checked_before_the_download(tmp_path):
    gb = 10**9
    assert room_problem(15.2 * 2**30, tmp_path, 9.1 * 2**30) == (
        f"the download needs 15.2 GB in {tmp_path}, 9.1 GB free; free some space or point HF_HOME at a larger disk"
    )
    assert room_problem(gb, tmp_path, 2 * gb) is None


def test_gated_private_and_misspelt_models_are_refused_before_the_engine_starts(hub, tmp_path):
    data = write_dataset(tmp_path / "train.jsonl", "messages", n=8)
    home = tmp_path / "home"
    (home / "hub" / "models--org--tiny" / "snapshots" / "abc").mkdir(parents=True)  # in the user's cache

    def refused(model: str, token: str | None = None) -> str:
        run = tmp_path / model.replace("/", "-")
        done = train(hub, home, "--base-model", model, "--dataset", str(data), "--output-dir", str(run), token=token)
        assert done.returncode == 2, done.stderr[-2000:]
        assert not run.exists()  # nothing started, nothing written
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        return lines[0]

    assert f"accept the license at {hub.endpoint}/org/licensed" in refused("org/licensed")
    assert "org/secret: no such model on the Hub (if it is private, set HF_TOKEN)" in refused("org/secret")
    assert "org/tinyy: no such model on the Hub (if it is private, set HF_TOKEN); did you mean org/tiny?" in (
        refused("org/tinyy")
    )
    # The token opens the private one (the check passes; the run itself is tested below).
    assert not hub.requests_to("/org/tiny/resolve/")


def test_a_disk_without_room_refuses_the_download(hub, tmp_path):
    """The real check against the stand-in, with the disk's free space read as 1 kB."""
    code = (
        "import json, mgtui.hub_check as h\n"
        "h.free_bytes = lambda path: 1000\n"
        "print(json.dumps(h.check_hub('org/tiny', '').problems))\n"
    )
    env = hub.client_env(tmp_path / "home")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    [problem] = json.loads(done.stdout.strip().splitlines()[-1])
    assert problem.startswith("the download needs 0.0 GB in ") and "0.0 GB free" in problem


def test_the_download_is_a_phase_with_progress_and_a_dropped_connection_resumes(hub, tmp_path):
    data = write_dataset(tmp_path / "train.jsonl", "messages", n=8)
    home, run = tmp_path / "home", tmp_path / "run"
    weights = next(n for n in model_files(sorted(p.name for p in hub.repo_dir("org/tiny").iterdir())) if "safet" in n)
    hub.drop_after("org/tiny", weights, 1000)  # the connection drops once, part-way through the weights
    done = train(hub, home, "--base-model", "org/tiny", "--dataset", str(data), "--output-dir", str(run))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "hub: --base-model org/tiny: 0.0 GB to download" in done.stderr
    evs = events(run)
    downloads = [e for e in evs if e["type"] == "phase" and e["phase"] == "downloading"]
    total = sum(p.stat().st_size for p in hub.repo_dir("org/tiny").iterdir() if p.name in model_files([p.name]))
    assert downloads[-1]["done_bytes"] == downloads[-1]["total_bytes"] == total
    assert downloads[-1]["progress"] == 1.0
    assert any("the connection dropped during the download; resuming" in e.get("message", "") for e in evs)
    phases = [e["phase"] for e in evs if e["type"] == "phase"]
    assert phases.index("downloading") < phases.index("loading_model", phases.index("downloading"))
    assert any(e.get("detail") == "loading weights" and e.get("progress") == 1.0 for e in evs)
    assert evs[-1]["type"] == "done"
    # A second run finds the model in the cache: no download phase.
    again = train(hub, home, "--base-model", "org/tiny", "--dataset", str(data), "--output-dir", str(tmp_path / "r2"))
    assert again.returncode == 0 and "hub: --base-model org/tiny: in the cache" in again.stderr
    assert not [e for e in events(tmp_path / "r2") if e["type"] == "phase" and e["phase"] == "downloading"]


def test_a_stop_during_the_download_says_what_was_fetched(hub, tmp_path):
    """A connection that keeps dropping holds the download (the client retries each second); a stop
    is answered at once, and the run ends stopped, saying the next run fetches the rest."""
    data = write_dataset(tmp_path / "train.jsonl", "messages", n=8)
    run = tmp_path / "run"
    weights = next(n for n in model_files(sorted(p.name for p in hub.repo_dir("org/tiny").iterdir())) if "safet" in n)
    hub.drop_after("org/tiny", weights, 10, times=10**6)
    env = hub.client_env(tmp_path / "home")
    args = ["--base-model", "org/tiny", "--dataset", str(data), "--output-dir", str(run), "--detach"]
    started = subprocess.run(
        [sys.executable, "-m", "mgtui", "train", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert started.returncode == 0, started.stderr
    wait_for(
        lambda: any(e.get("phase") == "downloading" for e in events(run)) if (run / "events.jsonl").exists() else False
    )
    wait_for(lambda: len(hub.requests_to("/__cdn/", "GET")) >= 2)  # it is retrying
    request_stop(run)
    wait_for(lambda: (run / "events.jsonl").exists() and events(run)[-1]["type"] in ("stopped", "failed"))
    end = events(run)[-1]
    assert end["type"] == "stopped" and end["download"] is True
    assert "the next run fetches the rest" in end["message"]


README = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train.jsonl
- config_name: qa
  data_files:
  - split: train
    path: qa/train.jsonl
---
"""


def test_a_hub_dataset_by_subset_and_split_trains_and_a_bad_row_is_named(hub, tmp_path):
    """--dataset org/name:subset with --dataset-split train[:N]: the slice trains, and the rows are
    checked as a file's are, a bad one named by its number."""
    local = write_dataset(tmp_path / "train.jsonl", "messages", n=12).read_text()
    qa = "".join(json.dumps({"question": f"{i} + {i}?", "answer": f"{2 * i}."}) + "\n" for i in range(10))
    hub.add_repo(
        "org/chat", {"README.md": README, "data/train.jsonl": local, "qa/train.jsonl": qa}, repo_type="dataset"
    )
    home, run = tmp_path / "home", tmp_path / "run"
    done = train(
        hub, home, "--base-model", "org/tiny", "--dataset", "org/chat:qa", "--dataset-split", "train[:6]",
        "--columns", "prompt=question,completion=answer", "--output-dir", str(run),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((run / "summary.json").read_text())["dataset"]
    assert report["rows"] == 6 and report["format"] == "prompt_completion"
    assert any(e.get("detail") == "dataset org/chat:qa (train[:6])" for e in events(run))
    fetched = [e for e in events(run) if e.get("phase") == "downloading" and e.get("total_bytes")]
    served = len(qa.encode()) + len(README.encode())  # the subset's file, and the card that names it
    assert fetched and fetched[-1]["done_bytes"] == fetched[-1]["total_bytes"] == served
    assert fetched[-1]["detail"] == "dataset org/chat:qa (train[:6])" and fetched[-1]["progress"] == 1.0
    bad = local.splitlines()
    bad[2] = json.dumps({"messages": [{"role": "robot", "content": "hi"}]})
    hub.add_repo("org/bad", {"data/train.jsonl": "\n".join(bad) + "\n"}, repo_type="dataset")
    failed = train(hub, home, "--base-model", "org/tiny", "--dataset", "org/bad", "--output-dir", str(tmp_path / "b"))
    assert failed.returncode == 2
    assert "org/bad (train): row 3: turn 1: unknown role 'robot'" in failed.stderr + json.dumps(events(tmp_path / "b"))


async def test_the_form_asks_the_hub_when_start_is_pressed(tmp_path, isolated_home, monkeypatch):
    """Offline (as the tests are) with a model that is not cached: Start is refused with the fix, in
    one line, by a check that ran in a thread while the form kept answering keys."""
    from app_helpers import NO_GPU, settle

    from mgtui.tui.app import MgApp

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = write_dataset(tmp_path / "train.jsonl", "messages", n=8)
    out = tmp_path / "out"
    values = {"base_model": "org/not-here", "dataset": str(data), "output_dir": str(out)}
    app = MgApp(values, None, NO_GPU, offer_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+r")
        said = "Start refused: --base-model org/not-here: not in the cache"
        for _ in range(2400):  # the check's answer arrives from its thread
            if any(n.message.startswith(said) for n in app._notifications):
                break
            await pilot.pause(0.05)
        assert any(n.message.startswith(said) and "HF_HUB_OFFLINE is set" in n.message for n in app._notifications)
        assert not out.exists()
