"""The run screen: a real CPU run end to end through the app, a run that outlives a killed app and
is reattached and stopped, the no-GPU panel, failures, and leaving a live run."""

from __future__ import annotations

import fcntl
import functools
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

from app_helpers import NO_GPU, settle
from app_helpers import wait_until as wait_state
from conftest import ROOT
from engine_helpers import events, wait_for, write_dataset

from mgtui.runs import rundir
from mgtui.tui.app import MgApp
from mgtui.tui.screens.form import FormScreen
from mgtui.tui.screens.run import RunScreen

wait_until = functools.partial(wait_state, timeout=180.0)  # a real run trains

DATA = ROOT / "tests" / "data"


def tiny_settings(model: Path, data: Path, out: Path, steps: int) -> dict:
    return dict(
        base_model=str(model),
        dataset=str(data),
        output_dir=str(out),
        max_seq_length=64,
        batch_size=2,
        gradient_accumulation_steps=1,
        max_steps=steps,
        save_steps=1000,
        learning_rate=1e-2,
        warmup_steps=0,
    )


async def test_form_start_progress_done_and_adapter(tmp_path, tiny_model):
    data = write_dataset(tmp_path / "d.jsonl", "messages", n=64)
    app = MgApp(tiny_settings(tiny_model, data, tmp_path / "run", 15), None, NO_GPU, offer_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen))
        screen: RunScreen = app.screen
        await wait_until(pilot, lambda: screen.view.step > 0)  # progress shows while it trains
        # (a fast run may have ended by the time the screen drains: the phase it went through is logged)
        assert any(text.startswith("phase: training") for _, text in screen.view.log)
        assert screen.view.total_steps == 15
        await wait_until(pilot, lambda: screen.view.finished)
        assert screen.view.end["type"] == "done"
        assert [s for s, _ in screen.view.losses] == list(range(1, 16))
        end = str(screen.query_one("#end").render())
        assert "Done: 15 steps" in end and "AutoPeftModelForCausalLM.from_pretrained" in end
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file()


def spawn_in_pty(argv: list[str], cols: int = 80, rows: int = 24) -> tuple[subprocess.Popen, int, list[bytes]]:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = dict(os.environ, TERM="xterm-256color")
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    screen: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            screen.append(chunk)

    threading.Thread(target=drain, daemon=True).start()
    return proc, master, screen


async def test_killed_app_leaves_the_run_training_then_reattach_and_stop(tmp_path, tiny_model):
    data = write_dataset(tmp_path / "d.jsonl", "messages", n=240)
    run = tmp_path / "run"
    preset = tmp_path / "p.toml"
    import tomli_w

    preset.write_text(tomli_w.dumps({"schema": 1, **tiny_settings(tiny_model, data, run, 2000)}))
    app_proc, master, screen = spawn_in_pty([sys.executable, "-m", "mgtui", "--preset", str(preset)])
    try:
        wait_for(lambda: b"Start" in b"".join(screen), timeout=60)
        time.sleep(1.0)
        os.write(master, b"\x12")  # ctrl+r
        wait_for(lambda: run.exists() and any(e["type"] == "log" and e["step"] >= 3 for e in events(run)), timeout=120)
        engine = rundir.read_json(run / rundir.RUN_FILE)["pid"]
        app_proc.kill()  # the app dies (SIGKILL), as when an SSH session is torn down
        app_proc.wait(10)
        os.kill(engine, signal.SIGHUP)  # and the terminal hangs up on whatever is left of it
        step_then = max(e["step"] for e in events(run) if e["type"] == "log")
        wait_for(lambda: max(e["step"] for e in events(run) if e["type"] == "log") >= step_then + 5, timeout=60)
        assert rundir.pid_alive(engine) and rundir.run_state(run).state == "running"
    finally:
        app_proc.kill()
        os.close(master)

    # A later mgtui lists it and reattaches: history first, then live; and it can stop it.
    from mgtui.runs.registry import list_runs

    assert [r.output_dir for r in list_runs()] == [str(run.resolve())]
    app = MgApp({}, None, NO_GPU, attach=run, offer_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen))
        screen_: RunScreen = app.screen
        await wait_until(pilot, lambda: screen_.view.step > step_then + 5)
        assert screen_.view.losses[0][0] == 1  # the history from the event log, from step 1
        seen = screen_.view.step
        await wait_until(pilot, lambda: screen_.view.step > seen)  # then live
        await pilot.press("s")
        await pilot.pause()
        await pilot.press("y")
        await wait_until(pilot, lambda: screen_.view.finished, timeout=60)
        assert screen_.view.end["type"] == "stopped"
    assert (run / "adapter_model.safetensors").is_file()
    wait_for(lambda: not rundir.pid_alive(engine), timeout=30)


def replay(tmp_path: Path, log: str, pid: int | None) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(DATA / log, run / "events.jsonl")
    if pid:
        (run / "run.json").write_text(json.dumps({"pid": pid, "state": "running", "uid": os.getuid()}))
    return run


async def test_no_gpu_panel_says_why_and_the_rest_works(tmp_path):
    run = replay(tmp_path, "run_done.jsonl", None)
    app = MgApp({}, None, NO_GPU, attach=run, offer_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen: RunScreen = app.screen
        gpus = str(screen.query_one("#gpus").render())
        assert "GPU: N/A" in gpus and "no NVIDIA GPU found" in gpus
        assert screen.view.end["type"] == "done" and len(screen.view.losses) == 120


async def test_real_nvml_source_never_raises_here():
    from mgtui.nvml import NvmlSource

    reading = NvmlSource().read()
    assert reading.gpus or reading.error  # on this machine: no driver, a reason instead of a crash


async def test_a_killed_engine_is_reported(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = replay(tmp_path, "run_running.jsonl", dead.pid)
    app = MgApp({}, None, NO_GPU, attach=run, offer_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen: RunScreen = app.screen
        await wait_until(pilot, lambda: screen.exit_note is not None, timeout=5)
        assert "without a last word" in str(screen.query_one("#end").render())


async def test_oom_failure_offers_advice_and_a_key_goes_back_with_the_step(tmp_path):
    run = replay(tmp_path, "run_failed_oom.jsonl", None)
    app = MgApp({"batch_size": 4}, None, NO_GPU, attach=run, offer_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        end = str(app.screen.query_one("#end").render())
        assert "Failed (oom) at step 35" in end and "reserved 22.1 GB of 23.55 GB" in end and "alt+1" in end
        await pilot.press("alt+1")
        await pilot.pause()
        assert isinstance(app.screen, FormScreen)
        assert app.screen.model.value("batch_size") == 1
        # The form was focused while the run screen covered it: its help line says so on return.
        assert str(app.screen.query_one("#helpline").render()).startswith("base-model: ")


async def test_quitting_a_live_run_asks_detach_or_stop(tmp_path, engine_pid):
    run = replay(tmp_path, "run_running.jsonl", engine_pid)
    app = MgApp({}, None, NO_GPU, attach=run, offer_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert "still training" in str(app.screen.query_one(".title").render())
        await pilot.press("d")
        await pilot.pause()
    assert app.return_code == 0 or app.return_code is None


def test_attach_to_a_directory_without_a_run_is_one_line_exit_2(tmp_path, capsys):
    from mgtui.cli import main

    (tmp_path / "notes.txt").write_text("mine")
    assert main(["attach", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"model-garden attach: error: {tmp_path}: not a run directory (no run.json or events file)\n"
    assert (tmp_path / "notes.txt").read_text() == "mine"  # nothing created or touched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_the_app_leaves_when_its_terminal_goes_away_without_a_hangup_signal():
    """Started in a session of its own, the app gets no SIGHUP when the terminal closes; Textual
    would then read end-of-file in a busy loop for ever. It notices and exits."""
    proc, master, screen = spawn_in_pty([sys.executable, "-m", "mgtui"])
    try:
        wait_for(lambda: b"Model and data" in b"".join(screen), timeout=60)
        os.close(master)
        assert proc.wait(timeout=15) == 0
    finally:
        proc.kill()
