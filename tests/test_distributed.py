"""Multi-process training through torchrun on the CPU (gloo): one run, one record; two nodes on
localhost; a killed rank fails the run cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from engine_helpers import events, wait_for, write_dataset

from mgtui.runs import rundir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_args(model: Path, data: Path, out: Path, steps: int) -> list[str]:
    return [
        "train",
        "--base-model",
        str(model),
        "--dataset",
        str(data),
        "--output-dir",
        str(out),
        "--max-steps",
        str(steps),
        "--batch-size",
        "2",
        "--gradient-accumulation-steps",
        "1",
        "--max-seq-length",
        "64",
        "--save-steps",
        "1000",
        "--learning-rate",
        "0.01",
        "--master-port",
        str(free_port()),
    ]


def mg(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mgtui", *args], capture_output=True, text=True, timeout=timeout)


def test_two_processes_train_and_leave_one_adapter_and_one_log(tmp_path, tiny_model):
    data = write_dataset(tmp_path / "d.jsonl", "messages", n=64)
    out = tmp_path / "run"
    done = mg(*train_args(tiny_model, data, out, 8), "--nproc-per-node", "2")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    evs = events(out)
    assert [e["seq"] for e in evs] == list(range(len(evs)))  # one writer: no duplicated or interleaved events
    assert [e["type"] for e in evs].count("start") == 1 and evs[-1]["type"] == "done"
    assert next(e for e in evs if e["type"] == "start")["world_size"] == 2
    assert [e["step"] for e in evs if e["type"] == "log"] == list(range(1, 9))
    assert len(list(out.rglob("adapter_model.safetensors"))) == 2  # the adapter and its checkpoint copy
    assert (out / "adapter_model.safetensors").is_file() and len(list(out.rglob("events.jsonl"))) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 8


def test_two_nodes_on_localhost_rendezvous_and_train(tmp_path, tiny_model):
    data = write_dataset(tmp_path / "d.jsonl", "messages", n=64)
    port = str(free_port())
    common = ["--nnodes", "2", "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port", port]
    node = []
    for rank, out in ((0, tmp_path / "run"), (1, tmp_path / "node1")):
        args = train_args(tiny_model, data, out, 6)
        args = args[: args.index("--master-port")]
        node.append(
            subprocess.Popen(
                [sys.executable, "-m", "mgtui", *args, *common, "--node-rank", str(rank)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outs = [p.communicate(timeout=300) for p in node]
    assert [p.returncode for p in node] == [0, 0], outs
    evs = events(tmp_path / "run")
    assert evs[-1]["type"] == "done" and next(e for e in evs if e["type"] == "start")["world_size"] == 2
    assert not (tmp_path / "node1" / "events.jsonl").exists()  # node 1 keeps no record of its own
    assert not (tmp_path / "node1" / "adapter_model.safetensors").exists()
    assert "its progress and files are on node 0" in outs[1][0]


def test_a_killed_rank_fails_the_run_cleanly_and_in_bounded_time(tmp_path, tiny_model):
    data = write_dataset(tmp_path / "d.jsonl", "messages", n=240)
    out = tmp_path / "run"
    started = mg(*train_args(tiny_model, data, out, 5000), "--nproc-per-node", "2", "--detach")
    assert started.returncode == 0, started.stderr
    wait_for(lambda: any(e["type"] == "log" and e["step"] >= 3 for e in events(out)), timeout=180)
    supervisor = psutil.Process(int(started.stdout.split("pid ")[1].split(";")[0]))
    workers = [p for p in supervisor.children(recursive=True) if "mgtui.train.worker" in " ".join(p.cmdline())]
    rank1 = next(p for p in workers if p.environ().get("RANK") == "1")
    t0 = time.time()
    rank1.send_signal(signal.SIGKILL)
    wait_for(lambda: events(out)[-1]["type"] == "failed", timeout=120)
    elapsed = time.time() - t0
    last = events(out)[-1]
    assert "rank 1" in last["message"] and "SIGKILL" in last["message"], last
    assert elapsed < 120
    wait_for(lambda: not supervisor.is_running() or supervisor.status() == psutil.STATUS_ZOMBIE, timeout=60)
    assert all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in workers)
    assert rundir.run_state(out).state == "failed"


def test_stop_and_resume_work_for_the_whole_group(tmp_path, tiny_model):
    from mgtui.runs.launch import request_stop

    data = write_dataset(tmp_path / "d.jsonl", "messages", n=240)
    out = tmp_path / "run"
    args = train_args(tiny_model, data, out, 400)
    assert mg(*args, "--nproc-per-node", "2", "--detach").returncode == 0
    wait_for(lambda: any(e["type"] == "log" and e["step"] >= 3 for e in events(out)), timeout=180)
    assert request_stop(out)  # SIGINT to rank 0; every rank agrees to stop at the same step
    wait_for(lambda: events(out)[-1]["type"] == "stopped", timeout=120)
    stopped_at = events(out)[-1]["steps"]
    assert (out / f"checkpoint-{stopped_at}").is_dir() and (out / "adapter_model.safetensors").is_file()
    wait_for(lambda: rundir.run_state(out).state == "stopped", timeout=60)
    wait_for(lambda: rundir.launcher_alive(out) is None, timeout=120)  # torchrun has let go of its port
    before = len(events(out))
    resumed = mg(*args, "--nproc-per-node", "2", "--resume")
    assert resumed.returncode == 0, resumed.stdout[-2000:]
    logs = [e for e in events(out)[before:] if e["type"] == "log"]
    assert logs[0]["step"] == stopped_at + 1 and logs[-1]["step"] == 400


def test_a_resume_waits_until_the_previous_run_has_let_go(tmp_path):
    """Rank 0 marks a run stopped before torchrun and the supervisor exit; resuming then would
    meet the old rendezvous port and the supervisor's last word. It is refused, in one line."""
    from mgtui.runs.launch import LaunchError, prepare
    from mgtui.settings import resolve

    out = tmp_path / "run"
    (out / "checkpoint-4").mkdir(parents=True)
    sup = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mgtui.runs.supervise",
            str(out),
            "--",
            sys.executable,
            "-c",
            "import time; time.sleep(60)",
        ],
        start_new_session=True,
    )
    try:
        rundir.write_json_atomic(out / rundir.RUN_FILE, {"state": "stopped", "pid": 1, "launcher_pid": sup.pid})
        wait_for(lambda: rundir.launcher_alive(out) == sup.pid)
        res = resolve([{"base_model": "m", "dataset": "d.jsonl", "output_dir": str(out), "resume": True}])
        with pytest.raises(LaunchError, match=f"still shutting down \\(pid {sup.pid}\\)"):
            prepare(res)
    finally:
        os.killpg(sup.pid, 9)
        sup.wait()
    assert rundir.launcher_alive(out) is None


def test_a_crash_is_explained_by_this_runs_log_not_the_previous_one(tmp_path):
    from mgtui.runs.supervise import cause

    old = "Root Cause (first observed failure):\n  rank      : 1\n  exitcode  : 130\n"
    (tmp_path / rundir.LOG_FILE).write_text(old)
    offset = len(old)
    with (tmp_path / rundir.LOG_FILE).open("a") as f:
        f.write("torch.distributed.elastic: rendezvous failed: address already in use\n")
    assert cause(tmp_path, 1) == "rank 1 died (exit status 130)"  # what it said before: the old run's
    assert cause(tmp_path, 1, offset) == "the engine ended with exit status 1 without a last word"
