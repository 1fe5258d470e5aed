"""The queue for shared GPU boxes: a fake GPU whose free memory changes over time drives the
decisions and the waiter; real processes add at once; a waiter killed with SIGKILL is noticed
and its runs start, for real, on the tiny model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from engine_helpers import wait_for
from runs_helpers import queued_run

from mgtui.cli import main
from mgtui.nvml import GpuReading, GpuSample
from mgtui.runs import history, queue, rundir, waiter
from mgtui.runs.events import read_events
from mgtui.settings import resolve

GIB = 1024**3


def card(index: int, free_gib: float, total_gib: float = 24.0) -> GpuSample:
    used = int((total_gib - free_gib) * GIB)
    return GpuSample(index, "RTX 4090", int(total_gib * GIB), used, process_memory={9000 + index: used})


class ChangingGpus:
    """A GPU source whose readings change as the test goes (each read takes the next, the last stays)."""

    def __init__(self, *frees: tuple[float, ...]) -> None:
        self.readings = [GpuReading(tuple(card(i, f) for i, f in enumerate(free))) for free in frees]

    def read(self) -> GpuReading:
        return self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]

    def describe(self, pid: int) -> tuple[str, str]:
        return "someone", "python train.py"


@pytest.fixture
def started(monkeypatch) -> list[tuple[str, list[int]]]:
    """What the waiter starts, in order (the engine itself is started for real in the last tests)."""
    calls: list[tuple[str, list[int]]] = []

    def start_queued(run_dir: Path, cards: list[int], nproc: int):
        calls.append((Path(run_dir).name, cards))
        info = rundir.read_json(run_dir / rundir.RUN_FILE)
        rundir.write_json_atomic(run_dir / rundir.RUN_FILE, {**info, "state": "done"})

    monkeypatch.setattr("mgtui.runs.launch.start_queued", start_queued)
    return calls


def reasons() -> dict[str, str]:
    return {Path(e.output_dir).name: e.reason for e in queue.read_queue().entries}


def test_runs_start_in_order_as_memory_frees_up(tmp_path, started):
    for name, est in [("big", 13.2), ("bigger", 15.0), ("small", 2.0)]:
        queued_run(tmp_path / name, est)
    gpus = ChangingGpus((9.8,), (9.8,), (20.0,), (3.4,), (17.0,), (24.0,))
    assert waiter.step(gpus, os.getpid())
    assert reasons() == {
        "big": "GPU 0: needs 14.2 GB, 9.8 GB free",
        "bigger": "1 earlier queued run",
        "small": "2 earlier queued runs",  # it would fit, but it keeps its place
    }
    assert waiter.step(gpus, os.getpid()) and started == []
    assert waiter.step(gpus, os.getpid())  # 20 GB free
    assert started == [("big", [0])]
    waiter.step(gpus, os.getpid())  # 3.4 GB free: the next one waits
    assert reasons()["bigger"] == "GPU 0: needs 16.0 GB, 3.4 GB free" and len(started) == 1
    assert waiter.step(gpus, os.getpid())  # 17 GB free: the second starts, the third waits for its turn
    assert not waiter.step(gpus, os.getpid())  # the third starts, and nothing is left
    assert started == [("big", [0]), ("bigger", [0]), ("small", [0])]
    assert queue.read_queue().waiter_pid is None  # nothing waits: the waiter leaves


def test_cards_chosen_or_needed_together(tmp_path):
    (tmp_path / "a").mkdir()
    reading = GpuReading((card(0, 20.0), card(1, 5.0), card(2, 18.0)))
    only_1 = queue.Entry(str(tmp_path / "a"), 10.0, gpus="1")
    assert queue.pick_cards(only_1, reading) == (None, "GPU 1: needs 10.0 GB, 5.0 GB free")
    two = queue.Entry(str(tmp_path / "a"), 10.0, nproc=2)
    assert queue.pick_cards(two, reading) == ([0, 2], "")
    three = queue.Entry(str(tmp_path / "a"), 10.0, nproc=3)
    assert queue.pick_cards(three, reading) == (None, "GPU 1: needs 10.0 GB, 5.0 GB free (3 cards needed)")
    promised = queue.pick_cards(queue.Entry(str(tmp_path / "a"), 10.0), reading, pending={0: 12.0, 2: 9.0})
    assert promised == (None, "GPU 2: needs 10.0 GB, 9.0 GB free")  # the best card, less what started runs will take
    unknown = queue.Entry(str(tmp_path / "a"), None)
    assert queue.pick_cards(unknown, reading) == ([], "")
    assert queue.pick_cards(queue.Entry(str(tmp_path / "a"), 10.0), GpuReading(error="no NVIDIA GPU found")) == ([], "")


def test_cancel_and_a_vanished_directory_or_dataset(tmp_path, started):
    data = tmp_path / "data.jsonl"
    data.write_text('{"text": "hello"}\n')
    queued_run(tmp_path / "first", 20.0)
    queued_run(tmp_path / "second", 20.0)
    queued_run(tmp_path / "third", 1.0, dataset=str(data))
    queued_run(tmp_path / "fourth", 1.0)
    assert queue.cancel(tmp_path / "second")
    assert not queue.cancel(tmp_path / "second")
    assert rundir.run_state(tmp_path / "second").state == "cancelled"
    for f in (tmp_path / "first").iterdir():
        f.unlink()
    (tmp_path / "first").rmdir()
    data.unlink()
    waiter.step(ChangingGpus((24.0,)), os.getpid())
    ended = {Path(e.output_dir).name: (e.state, e.reason) for e in queue.read_queue().entries}
    assert ended["first"] == ("failed", f"its run directory {tmp_path / 'first'} is gone")
    assert ended["second"] == ("cancelled", "cancelled by the user")
    assert ended["third"] == ("failed", f"its dataset {data} is gone")
    assert started == [("fourth", [0])]
    last = list(read_events(tmp_path / "third" / "events.jsonl"))[-1]
    assert last["type"] == "failed" and str(data) in last["message"]
    assert rundir.run_state(tmp_path / "third").state == "failed"
    listed = {r.name: r.state for r in history.collect()}
    assert listed["first"] == "missing" and listed["third"] == "failed" and listed["second"] == "cancelled"


ADD = """
import sys, time
from pathlib import Path
from mgtui.runs import queue
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.01)
for i in range(15):
    d = Path(sys.argv[2]) / f"{sys.argv[3]}-{i}"
    d.mkdir()
    queue.add(d, 1.0)
"""


def test_processes_adding_at_once_all_land(tmp_path):
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", ADD, str(go), str(tmp_path), f"p{n}"]) for n in range(3)]
    go.touch()  # all three are waiting on it: they add at the same moment
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    names = [Path(e.output_dir).name for e in queue.read_queue().waiting]
    assert sorted(names) == sorted(f"p{n}-{i}" for n in range(3) for i in range(15))
    for n in range(3):  # each process's runs keep their order
        mine = [x for x in names if x.startswith(f"p{n}-")]
        assert mine == [f"p{n}-{i}" for i in range(15)]


def write_reading(path: Path, free_gib: float) -> None:
    used = int((24 - free_gib) * GIB)
    gpu = {"index": 0, "name": "RTX 4090", "memory_total": 24 * GIB, "memory_used": used, "process_memory": {"1": used}}
    path.write_text(json.dumps({"gpus": [gpu]}))


def test_a_killed_waiter_is_noticed_and_its_runs_start_for_real(tmp_path, tiny_model, monkeypatch, capsys):
    """Two real runs queued with the CLI; the waiter SIGKILLed while they wait; `model-garden runs`
    notices and restarts it; one is started now by hand, the other when memory frees up."""
    from engine_helpers import write_dataset

    reading = tmp_path / "gpus.json"
    write_reading(reading, 0.5)
    monkeypatch.setenv("MGTUI_GPU_READING", str(reading))  # what the waiter sees
    data = write_dataset(tmp_path / "data.jsonl", "messages", n=16)
    common = ["train", "--base-model", str(tiny_model), "--dataset", str(data), "--max-steps", "2"]
    common += ["--batch-size", "4", "--max-seq-length", "64", "--queue"]
    for name in ("first", "second"):
        assert main([*common, "--output-dir", str(tmp_path / name)]) == 0
    out = capsys.readouterr().out
    assert "queued #1" in out and "queued #2" in out
    wait_for(lambda: reasons()["first"].startswith("GPU 0: needs"), timeout=120)
    pid = queue.read_queue().waiter_pid
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not rundir.pid_alive(pid), timeout=60)

    assert main(["runs"]) == 0
    captured = capsys.readouterr()
    assert f"waiter (pid {pid}) had died: restarted" in captured.err
    assert "queued #1" in captured.out and "queued #2" in captured.out  # nothing lost
    assert queue.read_queue().waiter_pid != pid

    assert main(["runs", "--start-now", str(tmp_path / "second")]) == 0  # no room, started anyway
    wait_for(lambda: rundir.run_state(tmp_path / "second").finished, timeout=300)
    assert rundir.run_state(tmp_path / "second").state == "done", (tmp_path / "second" / "train.log").read_text()[
        -1500:
    ]
    assert rundir.run_state(tmp_path / "first").state == "queued"
    write_reading(reading, 20.0)
    wait_for(lambda: rundir.run_state(tmp_path / "first").finished, timeout=300)
    assert rundir.run_state(tmp_path / "first").state == "done", (tmp_path / "first" / "train.log").read_text()[-1500:]
    for name in ("first", "second"):  # exactly as a run started by hand
        kinds = [e["type"] for e in read_events(tmp_path / name / "events.jsonl")]
        assert kinds[-1] == "done" and "start" in kinds
        assert (tmp_path / name / "adapter_model.safetensors").exists()
    assert main(["runs", "--cancel", str(tmp_path / "first")]) == 2  # no longer queued
    wait_for(lambda: not rundir.pid_alive(queue.read_queue().waiter_pid), timeout=60)


def test_queue_refuses_what_it_cannot_wait_for(tmp_path, capsys):
    base = ["train", "--base-model", "builtin:tiny-llama", "--dataset", "builtin:demo-chat", "--queue"]
    assert main([*base, "--output-dir", str(tmp_path / "r"), "--resume"]) == 2
    assert "--queue: a resumed run starts at once" in capsys.readouterr().err
    assert main(["runs", "--cancel", str(tmp_path / "nothing")]) == 2
    assert "not waiting in the queue" in capsys.readouterr().err


def test_max_gpu_memory_caps_the_plan_and_the_allocator():
    from mgtui.estimate import lookup, plan
    from mgtui.train.boot import cap_memory

    res = resolve([{"base_model": "unsloth/llama-3.1-8b-bnb-4bit", "max_gpu_memory": 5.0}])
    p = plan(res, lookup(res["base_model"], online=False), 80.0, "GPU 0 H100 (free)")
    assert p.gpu_gib == 5.0 and p.gpu_label == "GPU 0 H100 (free) capped at 5 GB"
    assert p.estimate is not None and p.estimate.state == "over" and p.steps  # with the guide's steps for 5 GB

    class FakeCuda:  # torch.cuda's two calls, on a 80 GiB card
        fraction: tuple[float, int] | None = None

        def mem_get_info(self, device: int) -> tuple[int, int]:
            return 70 * GIB, 80 * GIB

        def set_per_process_memory_fraction(self, fraction: float, device: int) -> None:
            self.fraction = (fraction, device)

    cuda, said = FakeCuda(), []
    assert cap_memory(cuda, 10.0, 1, lambda kind, **kw: said.append(kw["message"])) == 10.0
    assert cuda.fraction == (0.125, 1)
    assert said == ["GPU memory capped at 10 GB (12% of the card)"]
    with pytest.raises(SystemExit) as bad:
        main(["train", "--max-gpu-memory", "-1", "--dry-run"])
    assert bad.value.code == 2
