"""Operator faults, tried as a careful operator would: real processes, real files. A Stop never
signals a process that is not the run's engine; one writer per run directory; nothing of the user's
is overwritten; --resume refuses what the checkpoint can't honour and says what it honours; damaged
records are shown as such, set aside, never read as empty; a stalled engine is said."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from engine_helpers import as_killed, events, run_in_process, settings, wait_for, write_dataset
from runs_helpers import queued_run

from mgtui.hub_cache import hub_cache_dir, repo_id_problem
from mgtui.runs import history, launch, queue, registry, rundir
from mgtui.runs.events import EventWriter, read_events
from mgtui.runs.stall import stall_note
from mgtui.settings import SettingError, resolve


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mgtui", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


# --- 1. a Stop signals only this run's engine ---------------------------------------------------


@pytest.fixture
def bystander():
    """An unrelated process of this user, alive: what a recycled pid points at."""
    proc = subprocess.Popen(["sleep", "600"])
    yield proc
    proc.kill()
    proc.wait()


def running_record(run: Path, **info) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    (run / "events.jsonl").write_text(json.dumps({"v": 1, "seq": 0, "t": 1.0, "type": "start"}) + "\n")
    (run / "run.json").write_text(json.dumps({"state": "running", "uid": os.getuid(), **info}))
    return run


def test_a_recycled_pid_is_never_signalled_and_the_run_reads_as_gone(tmp_path, bystander, tiny_model):
    run = running_record(tmp_path / "run", pid=bystander.pid)
    assert rundir.run_state(run).state == "dead"
    assert not launch.request_stop(run)
    assert bystander.poll() is None  # still alive: no SIGINT reached it
    # and --force can take the directory over, keeping the old record
    data = write_dataset(tmp_path / "d.jsonl", "text", n=4)
    _, said = launch.prepare(settings(tiny_model, data, run), force=True)
    assert said and "moved the previous contents aside" in said


@pytest.mark.parametrize("pid", [-1, 0])
def test_a_pid_below_one_is_never_signalled(tmp_path, pid):
    run = running_record(tmp_path / "run", pid=pid)
    assert not rundir.pid_alive(pid)
    assert rundir.run_state(run).state == "dead"
    assert not launch.request_stop(run)


def test_the_engines_start_time_is_checked_with_its_pid(tmp_path, engine_pid):
    run = running_record(tmp_path / "run", pid=engine_pid, pid_start=rundir.proc_start_ticks(engine_pid))
    assert rundir.run_state(run).state == "running"
    running_record(run, pid=engine_pid, pid_start=(rundir.proc_start_ticks(engine_pid) or 0) + 1)
    assert rundir.run_state(run).state == "dead"


# --- 2. one writer per run directory ------------------------------------------------------------

RACER = """
import signal, sys
from mgtui import cli
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
print("ready", flush=True)
signal.sigwait({signal.SIGUSR1})
sys.exit(cli.main(sys.argv[1:]))
"""


def test_two_starts_into_one_directory_on_the_same_signal_one_wins(tmp_path):
    data = write_dataset(tmp_path / "d.jsonl", "text", n=8)
    for i in range(8):
        out = tmp_path / f"run-{i}"
        flags = ["train", "--detach", "--base-model", "builtin:tiny-llama", "--dataset", str(data)]
        racers = [
            subprocess.Popen(
                [sys.executable, "-c", RACER, *flags, "--output-dir", str(out), "--max-steps", "1"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        for r in racers:
            assert r.stdout is not None and r.stdout.readline().strip() == "ready"
        for r in racers:
            r.send_signal(signal.SIGUSR1)
        results = [(r.wait(timeout=120), r.stderr.read() if r.stderr else "") for r in racers]
        info = rundir.read_json(out / "run.json")
        os.killpg(info["launcher_pid"], signal.SIGKILL)  # the winner's engine: not needed here
        codes = sorted(code for code, _ in results)
        assert codes == [0, 2], results
        loser = next(err for code, err in results if code == 2)
        assert "in use by" in loser or "holds a running run" in loser, loser
        starts = [e for e in read_events(out / "events.jsonl") if e["type"] == "start"]
        assert len(starts) <= 1


def test_the_lock_is_held_for_the_engines_life_and_let_go_when_it_ends(tmp_path):
    out = tmp_path / "run"
    claim = rundir.Claim(out).take()
    with pytest.raises(rundir.Busy, match=r"in use by model-garden train \(pid \d+\)"):
        rundir.Claim(out).take()
    claim.release()
    rundir.Claim(out).take().release()


# --- 3. the user's own files, and an output directory that is a file ---------------------------


def test_a_folder_of_the_users_own_files_is_refused_and_force_keeps_them(tmp_path):
    data = write_dataset(tmp_path / "d.jsonl", "text", n=8)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "README.md").write_text("my notes")
    (out / "tokenizer.json").write_text("{}")
    done = cli("train", "--base-model", "builtin:tiny-llama", "--dataset", str(data), "--output-dir", str(out))
    line = one_line(done.stderr)
    assert done.returncode == 2 and "not an mgtui run (README.md, tokenizer.json)" in line and "--force" in line
    assert (out / "README.md").read_text() == "my notes" and sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "tokenizer.json",
    ]
    res = resolve([{"base_model": "builtin:tiny-llama", "dataset": str(data), "output_dir": str(out)}])
    _, said = launch.prepare(res, force=True)
    assert said is not None
    kept = Path(said.rsplit(" ", 1)[1])
    assert (kept / "README.md").read_text() == "my notes"


@pytest.mark.parametrize("force", [False, True])
def test_an_output_directory_that_is_a_file_or_under_one_is_one_line(tmp_path, force):
    data = write_dataset(tmp_path / "d.jsonl", "text", n=8)
    (tmp_path / "afile").write_text("keep me")
    for out in (tmp_path / "afile", tmp_path / "afile" / "run"):
        flags = ["--force"] if force else []
        done = cli(
            "train", "--base-model", "builtin:tiny-llama", "--dataset", str(data), "--output-dir", str(out), *flags
        )
        assert done.returncode == 2 and "is a file, not a directory" in one_line(done.stderr)
    assert (tmp_path / "afile").read_text() == "keep me"


# --- 4, 5. what --resume accepts -----------------------------------------------------------------


@pytest.fixture
def killed_run(tmp_path, tiny_model) -> tuple[Path, list[str]]:
    """A run whose engine was killed after its checkpoints (no last word), and its flags."""
    data = write_dataset(tmp_path / "d.jsonl", "text", n=16)
    out = tmp_path / "run"
    code, _ = run_in_process(settings(tiny_model, data, out, max_steps=2, save_steps=1))
    assert code == 0
    assert rundir.run_state(as_killed(out)).state == "dead"
    flags = [
        "train",
        *("--base-model", str(tiny_model), "--dataset", str(data), "--output-dir", str(out)),
        *("--max-seq-length", "128", "--batch-size", "8", "--gradient-accumulation-steps", "1"),
        *("--learning-rate", "1e-2", "--warmup-steps", "0", "--lora-r", "8", "--lora-alpha", "16"),
        *("--lr-scheduler-type", "constant", "--save-steps", "1", "--resume"),
    ]
    return out, flags


def test_resume_refuses_by_name_what_the_checkpoint_holds_before_loading(killed_run, tmp_path):
    out, flags = killed_run
    before = (out / "settings.toml").read_text()
    other = write_dataset(tmp_path / "other.jsonl", "text", n=16)
    for change, named in [
        (["--lora-r", "4"], "lora_r 8 → 4"),
        (["--learning-rate", "0.1"], "learning_rate 0.01 → 0.1"),
        (["--dataset", str(other)], "dataset"),
        (["--base-model", "builtin:tiny-llama"], "base_model"),
    ]:
        done = cli(*flags, "--max-steps", "2", *change)
        line = one_line(done.stderr)
        assert done.returncode == 2 and named in line and "the checkpoint holds the old value" in line, line
    assert (out / "settings.toml").read_text() == before
    assert rundir.run_state(out).state == "dead"  # nothing was started, nothing marked


def test_resume_honours_and_says_a_longer_run_and_a_new_cadence(killed_run):
    out, flags = killed_run
    done = cli(*flags, "--max-steps", "4", "--logging-steps", "2")
    assert done.returncode == 0, done.stderr
    assert "max_steps 2 → 4 (honoured)" in done.stderr and "logging_steps 1 → 2 (honoured)" in done.stderr
    evs = events(out)
    said = [e["message"] for e in evs if e["type"] == "message" and "resuming" in e["message"]]
    assert said and "max_steps 2 → 4 (honoured)" in said[-1]
    logs = [e["step"] for e in evs if e["type"] == "log" and e["step"] > 2]
    assert logs == [4]  # steps 3 and 4 trained, logged every 2nd: the checkpoint's cadence was 1
    assert evs[-1]["type"] == "done" and evs[-1]["steps"] == 4

    # a done run is not resumed, and the app doesn't offer it
    again = cli(*flags, "--max-steps", "6")
    assert again.returncode == 2 and "is done: a finished run is not resumed" in one_line(again.stderr)
    assert "resume" not in rundir.occupied_answers(out)
    assert [e["type"] for e in events(out)][-1] == "done"


# --- 6, 7. damaged records -----------------------------------------------------------------------


def test_a_torn_queue_file_is_set_aside_and_its_runs_recovered(tmp_path, busy_gpu_for_the_waiter):
    first = queued_run(tmp_path / "first", 5.0)
    second = queued_run(tmp_path / "second", 6.0)
    path = queue.queue_path()
    path.write_text(path.read_text()[:40])  # torn mid-write
    assert [Path(e.output_dir).name for e in queue.read_queue().waiting] == ["first", "second"]
    done = cli("runs")
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert "queue file" in done.stderr and "was damaged" in done.stderr and "2 waiting runs recovered" in done.stderr
    assert "queued #1  " in done.stdout and "queued #2  " in done.stdout
    assert list(path.parent.glob("queue.json.damaged-*"))
    assert queue.cancel(second) and rundir.run_state(second).state == "cancelled"
    assert [Path(e.output_dir) for e in queue.read_queue().waiting] == [first.resolve()]


@pytest.mark.parametrize("content", ["[]", '{"entries": [1, "x"]}', '{"waiter_pid": "abc", "entries": []}'])
def test_a_queue_file_of_another_shape_is_no_traceback(tmp_path, content, busy_gpu_for_the_waiter):
    queued_run(tmp_path / "first", 5.0)
    queue.queue_path().write_text(content)
    for args in (["runs"], ["runs", "--all"]):
        done = cli(*args)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert [Path(e.output_dir).name for e in queue.read_queue().waiting] == ["first"]


@pytest.mark.parametrize(
    "content, why",
    [
        ("[]", "holds list"),
        ("null", "holds NoneType"),
        ('{"pid": "abc", "state": "running"}', "pid is 'abc'"),
        ('{"started": "yesterday", "state": "done"}', "started is 'yesterday'"),
        ('{"state": "run', "not valid JSON"),
        (None, "can't be read"),  # run.json is a directory: unreadable, whoever runs the test
    ],
)
def test_one_damaged_run_is_listed_as_such_and_the_rest_still_list(tmp_path, content, why, busy_gpu_for_the_waiter):
    good = queued_run(tmp_path / "good", 5.0)
    bad = tmp_path / "bad"
    bad.mkdir()
    if content is None:
        (bad / "run.json").mkdir()
    else:
        (bad / "run.json").write_text(content)
    registry.register(bad)
    st = rundir.run_state(bad)
    assert st.state in ("damaged", "unreadable") and why in (st.problem or "")
    listed = cli("runs")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr
    assert str(bad) in listed.stdout and why in listed.stdout and str(good) in listed.stdout
    full = cli("runs", "--all")
    assert full.returncode == 0 and "Traceback" not in full.stderr and "bad" in full.stdout and "good" in full.stdout
    rows = {r.name: r for r in history.collect()}
    assert rows["bad"].state in ("damaged", "unreadable") and rows["good"].state == "queued"
    train = cli(
        "train", "--base-model", "builtin:tiny-llama", "--dataset", "builtin:demo-chat", "--output-dir", str(bad)
    )
    assert train.returncode == 2 and why in one_line(train.stderr)


def test_a_torn_event_log_is_mended_before_the_next_writer_appends(tmp_path):
    log = tmp_path / "events.jsonl"
    w = EventWriter(log)
    w.emit("start")
    w.emit("log", step=1)
    w.close()
    with log.open("a") as f:
        f.write('{"v": 1, "seq": 2, "t": 1.0, "type": "lo')  # a writer killed mid-line
    w = EventWriter(log)
    w.emit("message", message="resumed")
    w.close()
    assert w.torn is not None and w.torn.read_text().startswith('{"v": 1, "seq": 2')
    kinds = [e["type"] for e in read_events(log)]
    assert kinds == ["start", "log", "message"]  # the resumed writer's first event survives
    assert log.read_text().count("\n") == 3


# --- 8. Hub names, and the app's workers ---------------------------------------------------------


@pytest.mark.parametrize("name", ["e-9x0e-", "bad/na me", "a/b/c", "org/x--y", "org/name.git", "café/x"])
def test_a_name_the_hub_refuses_is_refused_where_it_is_typed(name):
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    with pytest.raises(HFValidationError):
        validate_repo_id(name)
    assert repo_id_problem(name)
    with pytest.raises(SettingError, match="--base-model"):
        resolve([{"base_model": name}])
    done = cli("train", "--base-model", name, "--dataset", "builtin:demo-chat", "--dry-run")
    assert done.returncode == 2 and "--base-model" in one_line(done.stderr)


@pytest.mark.parametrize("name", ["gpt2", "unsloth/llama-3.1-8b-bnb-4bit", "Qwen/Qwen2.5-0.5B", "a.b_c-d/e.f"])
def test_names_the_hub_accepts_pass(name):
    from huggingface_hub.utils import validate_repo_id

    validate_repo_id(name)
    assert repo_id_problem(name) is None


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"XDG_CACHE_HOME": "/x/cache"},
        {"HF_HOME": "~/hf"},
        {"HF_HOME": "/h", "XDG_CACHE_HOME": "/x"},
        {"HUGGINGFACE_HUB_CACHE": "/legacy"},
        {"HF_HUB_CACHE": "/new", "HUGGINGFACE_HUB_CACHE": "/legacy"},
    ],
)
def test_the_cache_is_found_where_huggingface_hub_finds_it(env, monkeypatch):
    names = ("XDG_CACHE_HOME", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")
    clean = {k: v for k, v in os.environ.items() if k not in names}
    theirs = subprocess.run(
        [sys.executable, "-c", "from huggingface_hub import constants; print(constants.HF_HUB_CACHE)"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    for k in names:
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert str(hub_cache_dir()) == theirs


async def test_a_worker_that_fails_is_said_and_the_app_goes_on(tmp_path, monkeypatch):
    from app_helpers import settle, wait_until

    from mgtui.tui.app import MgApp

    def broken(*args, **kwargs):
        raise RuntimeError("the Hub answered nonsense")

    monkeypatch.setattr("mgtui.hub_check.check_hub", broken)
    data = write_dataset(tmp_path / "d.jsonl", "text", n=8)
    app = MgApp({"dataset": str(data), "base_model": "org/model", "output_dir": str(tmp_path / "o")}, offer_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        form = app.screen
        await pilot.press("ctrl+r")  # Start asks the Hub in a worker: here it raises
        await wait_until(pilot, lambda: any("the Hub answered nonsense" in str(n.message) for n in app._notifications))
        assert app.is_running and app.screen is form
        log = (registry.registry_dir().parent / "app-errors.log").read_text()
        assert log.count("RuntimeError: the Hub answered nonsense") == 1
        await pilot.press("tab")  # and keys still work
        assert app.is_running


# --- 12. a stalled engine ------------------------------------------------------------------------


def test_stall_is_a_frozen_or_silent_engine_never_a_long_step():
    assert stall_note(100.0, 10.0, 95.0, "R", 42, 60) is None  # a long step: the heart still beats
    assert "for 70 s" in (stall_note(100.0, 30.0, 20.0, "S", 42, 60) or "")
    assert "kill -CONT 42" in (stall_note(100.0, 99.0, 99.0, "T", 42, 60) or "")
    assert stall_note(100.0, None, None, "R", 42, 60) is None  # nothing heard yet: starting


async def test_the_run_screen_says_when_the_engine_is_frozen(tmp_path, tiny_model):
    from app_helpers import wait_until

    from mgtui.nvml import FixedSource, GpuReading
    from mgtui.tui.app import MgApp

    data = write_dataset(tmp_path / "d.jsonl", "text", n=64)
    res = settings(tiny_model, data, tmp_path / "run", max_steps=100000, save_steps=100000)
    run_dir, proc, _ = launch.start(res, source=FixedSource(GpuReading()))
    try:
        wait_for(lambda: any(e["type"] == "log" for e in events(run_dir)))
        wait_for(lambda: (run_dir / ".heartbeat").exists())
        pid = rundir.read_json(run_dir / "run.json")["pid"]
        os.kill(pid, signal.SIGSTOP)
        app = MgApp({}, None, FixedSource(GpuReading()), attach=run_dir, offer_runs=False)
        async with app.run_test(size=(80, 24)) as pilot:
            progress = app.screen.query_one("#progress")
            await wait_until(pilot, lambda: "stalled" in str(progress.render()))
            assert f"kill -CONT {pid}" in str(progress.render())
            os.kill(pid, signal.SIGCONT)
            await wait_until(pilot, lambda: "stalled" not in str(progress.render()))
    finally:
        os.kill(pid, signal.SIGCONT)
        launch.request_stop(run_dir)
        proc.wait(timeout=120)


# --- smaller: warm-up, a folder among the presets -------------------------------------------------


def test_warmup_as_long_as_the_run_is_said():
    res = resolve([{"max_steps": 10, "warmup_steps": 11}])
    assert any("never reaches its peak" in w for w in res.warnings)
    assert not resolve([{"max_steps": 10, "warmup_steps": 10}]).warnings


def test_a_folder_named_like_a_preset_is_not_listed():
    from mgtui import presets

    (presets.user_dir() / "x.toml").mkdir(parents=True)
    assert "x" not in presets.listing()


async def test_the_form_marks_a_name_the_hub_refuses_and_start_is_refused():
    from app_helpers import NO_GPU, settle, type_into

    from mgtui.tui.app import MgApp

    app = MgApp({"dataset": "builtin:demo-chat"}, None, NO_GPU, offer_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        form = app.screen
        await type_into(pilot, "base_model", "e-9x0e-")
        assert "--base-model 'e-9x0e-'" in form.model.errors.get("base_model", "")
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert app.screen is form and any("Start refused" in str(n.message) for n in app._notifications)


def test_a_torn_registry_pointer_is_listed_as_damaged_and_the_rest_still_list(tmp_path, busy_gpu_for_the_waiter):
    good = queued_run(tmp_path / "good", 5.0)
    (registry.registry_dir() / "0123456789abcdef.json").write_text('{"output_dir": "/x", "regis')
    done = cli("runs")
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert "damaged" in done.stdout and "0123456789abcdef.json" in done.stdout and str(good) in done.stdout
