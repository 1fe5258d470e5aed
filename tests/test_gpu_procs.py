"""Who holds the GPUs: NVML's process list joined with the real process table, this user's runs
named, and PIDs that a container hides said as such."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

from app_helpers import GIB, wait_until
from conftest import ROOT
from engine_helpers import wait_for

from mgtui.gpu_procs import THIS_RUN, hidden_note, line, processes
from mgtui.nvml import NOT_VISIBLE, FixedSource, GpuReading, GpuSample, describe_pid
from mgtui.runs import registry
from mgtui.tui.app import MgApp


def card(used_gib: float, procs: dict[int, float]) -> GpuSample:
    return GpuSample(
        0, "RTX 4090", 24 * GIB, int(used_gib * GIB), process_memory={p: int(g * GIB) for p, g in procs.items()}
    )


def test_a_process_is_named_by_its_user_and_its_command(tmp_path):
    (tmp_path / "sleeper.py").write_text("import time\ntime.sleep(120)\n")
    child = subprocess.Popen([sys.executable, "-m", "sleeper", "--quietly"], cwd=tmp_path)
    try:
        wait_for(lambda: b"sleeper" in Path(f"/proc/{child.pid}/cmdline").read_bytes())
        assert describe_pid(child.pid) == (pwd.getpwuid(os.getuid()).pw_name, "sleeper --quietly")
    finally:
        child.kill()
        child.wait()
    assert describe_pid(child.pid) == NOT_VISIBLE  # gone, or in another PID namespace


def test_largest_first_runs_named_and_hidden_memory_said():
    g = card(15.0, {os.getpid(): 2.0, 4242: 9.0, 5151: 4.0})
    procs = processes(
        g, {os.getpid(): THIS_RUN}, FixedSource(GpuReading(), {4242: ("alice", "python train.py")}).describe
    )
    assert [p.pid for p in procs] == [4242, 5151, os.getpid()]
    assert line(procs[0], 40) == "4242 alice   9.0G python train.py"
    assert line(procs[1], 40) == "5151 ?       4.0G not visible here (ano…" and not procs[1].visible
    assert line(procs[2], 80).endswith("this run")
    assert hidden_note(g) is None
    assert hidden_note(card(12.0, {})) == (
        "12.0 GB in use that NVML names no process for: their PIDs are hidden here (a container, or another user's namespace)"
    )
    assert "processes for only part of it" in (hidden_note(card(12.0, {4242: 2.0})) or "")


def test_this_users_runs_are_found_among_the_pids_on_a_card(tmp_path, engine_pid):
    run = tmp_path / "my-run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"pid": engine_pid, "state": "running", "uid": os.getuid()}))
    registry.register(run)
    assert registry.runs_by_pid([engine_pid, 4242]) == {engine_pid: "my-run"}
    # a live pid that is not the run's engine (a recycled pid) is not taken for the run
    (run / "run.json").write_text(json.dumps({"pid": os.getpid(), "state": "running", "uid": os.getuid()}))
    assert registry.runs_by_pid([os.getpid()]) == {}
    (run / "run.json").write_text(json.dumps({"pid": engine_pid, "state": "done", "uid": os.getuid()}))
    assert registry.runs_by_pid([engine_pid]) == {}


async def test_the_run_screen_lists_the_cards_processes_and_marks_its_own(tmp_path, monkeypatch, engine_pid):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(ROOT / "tests" / "data" / "run_running.jsonl", run / "events.jsonl")
    (run / "run.json").write_text(json.dumps({"pid": engine_pid, "state": "running", "uid": os.getuid()}))
    source = FixedSource(GpuReading((card(14.0, {engine_pid: 10.0, 4242: 4.0}),)), {4242: ("alice", "ollama serve")})
    app = MgApp({}, None, source, attach=Path("run"), offer_runs=False)
    async with app.run_test(size=(120, 40)) as pilot:
        panel = pilot.app.screen.query_one("#gpus")
        await wait_until(pilot, lambda: bool(panel.procs), "the panel's processes")
        text = str(panel.render())
        assert f"{engine_pid} " in text and "this run" in text
        assert "4242 alice   4.0G ollama serve" in text
        assert "run 10.0" in text  # the gauge's share of this run
