"""Shared fixtures. Every test runs with its own config home, so user presets and the run
registry never touch the developer's real ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_tokenizer  # noqa: E402  (its cache is read now, before each test gets a cache of its own)

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One OpenMP thread for the tiny model's CPU training (inherited by every engine the tests start):
# on a busy 2-core machine torch's threads spin at each barrier waiting for a descheduled peer, and
# a step took 2.7 s instead of 0.1 s beside one busy loop per core.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "state"))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))  # where the demo's model is built
    return home


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch):
    """Local times shown as on every machine."""
    import time

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def busy_gpu_for_the_waiter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A queue waiter started by the code under test sees one RTX 4090 with 2 GiB free (so queued
    runs keep waiting), and is stopped when the test ends."""
    import json
    import signal

    gib = 1024**3
    reading = tmp_path / "waiter-gpus.json"
    used = 22 * gib
    gpu = {"index": 0, "name": "RTX 4090", "memory_total": 24 * gib, "memory_used": used, "process_memory": {"1": used}}
    reading.write_text(json.dumps({"gpus": [gpu]}))
    monkeypatch.setenv("MGTUI_GPU_READING", str(reading))
    yield reading
    from mgtui.runs import queue

    pid = queue.read_queue().waiter_pid
    if pid and queue.waiter_alive(pid):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def engine_pid() -> Iterator[int]:
    """A live process that is taken for a run's engine (its command line names the engine's
    module, as rundir.engine_alive checks): a run.json naming it reads as running."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(86400)",
            "mgtui.train.worker",
        ]
    )
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama and its tokenizer, built locally once per test session."""
    from mgtui.train.tiny import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def rl_tiny_model(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """The tiny Llama's architecture and tokenizer with weights drawn 10x wider (initializer_range 0.2).
    The demo's (0.02) predicts near-uniformly, its logits bounded by tied embeddings of norm 0.16 that
    no adapter changes, so no reward moves what it samples; this one's can move, as a real model's do."""
    from transformers import AutoTokenizer

    from mgtui.demo_model import TINY_LLAMA_CONFIG
    from mgtui.train.tiny import write_tiny_llama

    config = dict(TINY_LLAMA_CONFIG, initializer_range=0.2)
    target = tmp_path_factory.mktemp("models") / "tiny-llama-wide"
    return write_tiny_llama(AutoTokenizer.from_pretrained(tiny_model), target, config, 0, "tiny Llama for RL tests")


@pytest.fixture(scope="session")
def real_tokenizer_model() -> Path:
    """The tiny Llama on Qwen2's real tokenizer (tests/real_tokenizer.py), built once per machine."""
    return real_tokenizer.qwen2_tiny_llama()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """A finished run of the tiny model on the demo data, trained long enough that the adapter
    changes the answers, with three prompts for the quick look (one in each form the file takes)."""
    from engine_helpers import run_in_process, settings, write_dataset

    base = tmp_path_factory.mktemp("after")
    data = write_dataset(base / "data.jsonl", "messages", n=64)
    prompts = base / "prompts.txt"
    prompts.write_text(
        "What is 11 plus 5?\n"
        '{"prompt": "What is 7 plus 2?"}\n'
        '{"messages": [{"role": "user", "content": "Name a colour."}]}\n'
    )
    res = settings(tiny_model, data, base / "run", max_steps=30, eval_prompts=str(prompts))
    code, run_dir = run_in_process(res)
    assert code == 0, (run_dir / "train.log").read_text()[-2000:]
    return run_dir
