"""The form's token count on a large dataset: how long it takes, and whether keys stay answered
while it runs in the background.

A 20 000-row chat file (~50 MB) is counted with the demo's tiny byte-level tokenizer (512 merges:
many tokens per character, a worst case), as the app counts it: in a process of its own, on one
tokenizer thread, at low priority. Then the real `mgtui` opens on it in a pty at 80x24 and we type
into a form field while the count runs, timing each key from send to echo.

Run: uv run python benchmarks/dataset_count_keys.py
No target is set: keys should echo as fast as with no dataset (measured too, as the baseline).
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

from mgtui.data.tokens import count_command
from mgtui.train.tiny import build_tiny_llama

MARKS = "αβγδεζηθικλμνξοπρστυφχψωΓΔΘΛΞΠ"  # typed into a form field, one per key; nowhere else on screen
WORDS = "the quick brown fox jumps over a lazy dog while training language models on remote machines".split()


def write_data(path: Path, rows: int = 20000) -> None:
    random.seed(0)
    with path.open("w") as f:
        for _ in range(rows):
            q = " ".join(random.choices(WORDS, k=random.randint(20, 400)))
            f.write(
                json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": q[::-1]}]})
                + "\n"
            )


def key_latencies(preset: Path, home: str, keys: int = 30) -> list[float]:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = dict(os.environ, TERM="xterm-256color", XDG_CONFIG_HOME=home, XDG_STATE_HOME=home)
    exe = os.path.join(os.path.dirname(sys.executable), "mgtui")
    proc = subprocess.Popen(
        [exe, "--preset", str(preset)], stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
    )
    os.close(slave)
    seen = b""

    def read_until(done, limit: float = 10.0) -> None:
        nonlocal seen
        t = time.perf_counter()
        while not done(seen):
            assert time.perf_counter() - t < limit, f"no echo; the screen said: {seen[-300:]!r}"
            if select.select([master], [], [], 0.1)[0]:
                seen += os.read(master, 65536)

    try:
        read_until(lambda s: b"Model and data" in s)
        time.sleep(0.5)  # the groups below the fold mount just after the first frame; the count starts
        os.write(master, b"\t" * 9)  # to lora-r: not something the count depends on
        time.sleep(0.2)
        out = []
        for mark in MARKS[:keys]:
            seen = b""
            t = time.perf_counter()
            os.write(master, mark.encode())
            # Each key is a character new to the screen: a late frame for an earlier key can't pass for it.
            key = mark.encode()
            read_until(lambda s, key=key: key in s)
            out.append(time.perf_counter() - t)
            time.sleep(0.1)
        return out
    finally:
        proc.kill()
        proc.wait()
        os.close(master)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_llama(Path(tmp) / "tiny-llama")
        data = Path(tmp) / "big.jsonl"
        write_data(data)
        megabytes = data.stat().st_size / 1e6
        # The count as the app runs it: its own process, one tokenizer thread, low priority.
        argv, env = count_command(
            source=str(data), fmt="messages", limit=20000, base_model=str(model), chat_template=""
        )
        t = time.perf_counter()
        out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
        count_s = time.perf_counter() - t
        tokens = json.loads(out.splitlines()[-1])["tokens"]
        preset = Path(tmp) / "big.toml"
        preset.write_text(f'schema = 1\ndescription = "big"\nbase_model = "{model}"\ndataset = "{data}"\n')
        during = key_latencies(preset, tmp)
        plain = Path(tmp) / "plain.toml"  # the same app with no dataset: the baseline
        plain.write_text('schema = 1\ndescription = "no dataset"\n')
        without = key_latencies(plain, tmp)
    result = {
        "rows": len(tokens),
        "megabytes": round(megabytes, 1),
        "count_s": round(count_s, 2),
        "keys": len(during),
        "key_echo_ms_median": round(1000 * statistics.median(during), 1),
        "key_echo_ms_max": round(1000 * max(during), 1),
        "no_dataset_key_echo_ms_median": round(1000 * statistics.median(without), 1),
        "no_dataset_key_echo_ms_max": round(1000 * max(without), 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
