"""After training: the chat process, the quick look at quality, and the export, on a real run of
the tiny model trained on the CPU. The Hub upload goes to the local stand-in of the Hub's API."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from engine_helpers import events
from hub_stand_in import HubStandIn

from mgtui.cli import main
from mgtui.data.templates import NAMED_TEMPLATES, saved_template
from mgtui.runs.chat import ChatProcess, Sampling, Turn, parse_sampling, save_conversation

QUESTION = [{"role": "user", "content": "What is 11 plus 5?"}]


def test_the_quick_look_answers_each_prompt_with_base_and_tuned(demo_run):
    rows = [json.loads(x) for x in (demo_run / "answers.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["What is 11 plus 5?", "What is 7 plus 2?", "Name a colour."]
    assert all(r["tuned"] and r["base"] is not None for r in rows)
    assert any(r["tuned"] != r["base"] for r in rows)
    said = [e for e in events(demo_run) if e["type"] == "answers"]
    assert said and said[0]["count"] == 3 and said[0]["sample"][0]["tuned"] == rows[0]["tuned"][:300]
    from mgtui.runs.view import RunView
    from mgtui.tui.screens.run import answers_text

    view = RunView()
    view.apply(events(demo_run))
    shown = str(answers_text(view.answers))
    assert "3 prompts answered (all in answers.jsonl)" in shown and "› What is 7 plus 2?" in shown


def test_the_exact_chat_template_is_saved_with_the_run(demo_run):
    assert saved_template(demo_run) == NAMED_TEMPLATES["chatml"]  # the tiny model's own, as trained


def test_base_with_the_adapter_disabled_is_the_plain_base_model(demo_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mgtui.train.generate import Loaded, answer, base_model_of, load

    m = load(demo_run, device="cpu")
    tuned = answer(m, QUESTION, "tuned", max_new_tokens=24)[0]
    disabled = answer(m, QUESTION, "base", max_new_tokens=24)[0]
    base = base_model_of(demo_run)
    plain = Loaded(
        AutoModelForCausalLM.from_pretrained(base).eval(),
        AutoTokenizer.from_pretrained(base),
        m.template,
        False,
        "",
        "cpu",
    )
    assert answer(plain, QUESTION, "tuned", max_new_tokens=24)[0] == disabled
    assert tuned != disabled


def wait_events(chat: ChatProcess, until, timeout: float = 120.0) -> list[dict]:
    seen: list[dict] = []
    end = time.time() + timeout
    while not until(seen):
        if time.time() > end:
            raise TimeoutError(f"the chat process never got there: {seen[-5:]}")
        seen += chat.drain()
        time.sleep(0.02)
    return seen


def test_the_chat_process_streams_both_answers_and_stops_on_request(demo_run):
    chat = ChatProcess(demo_run)
    chat.start()
    try:
        ready = wait_events(chat, lambda s: any(e["type"] in ("ready", "error") for e in s))
        assert ready[-1] == {"type": "ready", "adapter": True, "backend": "transformers", "device": "cpu"}
        greedy = Sampling(temperature=0, max_new_tokens=24)
        chat.ask(1, QUESTION, greedy, ["tuned", "base"])
        seen = wait_events(chat, lambda s: sum(e["type"] == "done" for e in s) == 2)
        text = {
            w: "".join(e["text"] for e in seen if e["type"] == "token" and e["which"] == w) for w in ("tuned", "base")
        }
        assert [e["which"] for e in seen if e["type"] == "done"] == ["tuned", "base"]
        assert sum(e["type"] == "token" for e in seen) > 2  # streamed, not sent whole
        assert text["tuned"] != text["base"]

        long = Sampling(temperature=1.0, top_p=1.0, max_new_tokens=20000)
        chat.ask(2, QUESTION, long, ["tuned", "base"])
        wait_events(chat, lambda s: any(e["type"] == "token" for e in s))
        chat.stop(2)
        # The answer being written when the stop arrived ends stopped, long before its 20 000 tokens
        # (the tuned one may end by itself first: then the base is the one stopped).
        seen = wait_events(chat, lambda s: any(e["type"] == "done" and e["stopped"] for e in s))
        stopped = next(e for e in seen if e["type"] == "done" and e["stopped"])
        assert stopped["tokens"] < 20000
        chat.ask(3, QUESTION, greedy, ["tuned"])  # nothing of request 2 follows its stop
        after = wait_events(chat, lambda s: any(e["type"] == "done" and e["id"] == 3 for e in s))
        assert not [e for e in after if e.get("id") == 2]
    finally:
        chat.close()
    assert chat.proc is not None and chat.proc.returncode == 0


def test_sampling_fields_and_saving_a_conversation(tmp_path):
    assert parse_sampling({"temperature": "0.2", "top_p": "0.95", "max_new_tokens": "64", "system": "Be brief."}) == (
        Sampling(0.2, 0.95, 64, "Be brief."),
        None,
    )
    assert (
        parse_sampling({"temperature": "hot", "top_p": "1", "max_new_tokens": "1"})[1]
        == "temperature: 'hot' is not a number"
    )
    assert (
        parse_sampling({"temperature": "0", "top_p": "2", "max_new_tokens": "1"})[1]
        == "top-p: 2 is not between 0.01 and 1"
    )
    path = tmp_path / "conversations.jsonl"
    turn = Turn("Hi?", {"tuned": "Hello.", "base": "…"})
    assert save_conversation(path, [turn], "Be brief.") == 1
    assert save_conversation(path, [turn]) == 2  # appended, never overwritten
    first = json.loads(path.read_text().splitlines()[0])
    assert first == {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi?"},
            {"role": "assistant", "content": "Hello."},
        ]
    }
    from mgtui.data.scan import scan

    assert scan(str(path)).format == "messages"  # it trains as it is


def logits(model, tokenizer) -> "object":
    import torch

    ids = tokenizer("What is 11 plus 5?", return_tensors="pt")
    with torch.no_grad():
        return model(**ids).logits.float()


def test_the_merged_export_is_base_plus_adapter_and_keeps_the_template(demo_run, tmp_path, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mgtui.train.generate import base_model_of

    target = tmp_path / "out"
    assert main(["export", str(demo_run), "--merged", "--to", str(target)]) == 0
    merged_dir = target  # the folder itself, as Unsloth's save_pretrained_merged writes it
    assert capsys.readouterr().out.strip() == str(merged_dir)
    merged = AutoModelForCausalLM.from_pretrained(str(merged_dir)).eval()  # plain from_pretrained
    assert str(merged.dtype) == "torch.bfloat16"
    tok = AutoTokenizer.from_pretrained(str(merged_dir))
    base = AutoModelForCausalLM.from_pretrained(base_model_of(demo_run)).eval()
    tuned = PeftModel.from_pretrained(base, str(demo_run)).eval()
    expected, got = logits(tuned, tok), logits(merged, tok)
    assert float((expected - got).abs().max()) < 0.05 * float(expected.abs().max())  # bf16's rounding
    assert saved_template(merged_dir) == saved_template(demo_run)

    stamp = (merged_dir / "model.safetensors").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["export", str(demo_run), "--merged", "--to", str(target)]) == 2
    err = capsys.readouterr().err
    assert (
        err.strip() == f"model-garden export: error: {merged_dir} exists: choose another --to, or --force to replace it"
    )
    assert (merged_dir / "model.safetensors").stat().st_mtime_ns == stamp
    assert main(["export", str(demo_run), "--merged", "--to", str(target), "--force"]) == 0
    assert (merged_dir / "model.safetensors").stat().st_mtime_ns != stamp
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # nothing left beside it

    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("mine")
    capsys.readouterr()
    assert main(["export", str(demo_run), "--to", str(foreign), "--force"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"model-garden export: error: {foreign} holds files that no export wrote: choose another --to"
    )
    assert [p.name for p in foreign.iterdir()] == ["todo.txt"]  # --force replaces only an earlier export


def test_broken_run_directories_and_a_missing_converter_get_one_line(demo_run, tmp_path, capsys, monkeypatch):
    half = tmp_path / "half"
    half.mkdir()
    (half / "settings.toml").write_text('schema = 1\nbase_model = "x"\n')
    (half / "run.json").write_text(json.dumps({"state": "failed"}))
    for target, expected in [
        (half, f"{half}: no trained weights yet (the run is failed); a run saves them when it ends"),
        (tmp_path / "nothing", f"{tmp_path / 'nothing'}: no such directory"),
        (tmp_path, f"{tmp_path}: not a run directory (no settings.toml or adapter_config.json)"),
    ]:
        assert main(["export", str(target)]) == 2
        assert capsys.readouterr().err.strip() == f"model-garden export: error: {expected}"
    monkeypatch.setenv("LLAMA_CPP_DIR", str(tmp_path / "no-llama"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("HOME", str(tmp_path))
    from mgtui.train import llama_cpp_source

    monkeypatch.setattr(llama_cpp_source, "SDIST_URL", "http://127.0.0.1:9/offline.tar.gz")  # nothing listens
    assert main(["export", str(demo_run), "--gguf", "q8_0", "--to", str(tmp_path / "gg")]) == 2
    fetching, *err = capsys.readouterr().err.strip().splitlines()  # the fetch's phase, then one line
    assert fetching.startswith("fetching: llama.cpp's converter") and len(err) == 1, err
    assert err[0].startswith("model-garden export: error: --gguf needs llama.cpp's converter: could not fetch")
    assert "LLAMA_CPP_DIR" in err[0]
    assert not (tmp_path / "gg").exists()  # nothing half-written
    assert main(["export", str(demo_run), "--gguf", "q9_z"]) == 2
    assert "--gguf q9_z: not a type llama.cpp writes" in capsys.readouterr().err


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_push_to_hub_uploads_privately_and_the_token_is_written_nowhere(demo_run, tmp_path):
    with HubStandIn(tmp_path / "hub") as hub:
        home = tmp_path / "hf-home"
        before = digest(demo_run)
        cmd = [sys.executable, "-m", "mgtui", "export", str(demo_run), "--push-to-hub", "me/tiny-adapter"]
        wrong = subprocess.run(
            cmd, env=hub.client_env(home, token="hf_" + "x" * 34), capture_output=True, text=True, timeout=300
        )
        assert wrong.returncode == 1, wrong.stderr
        assert (
            wrong.stderr.strip()
            .splitlines()[-1]
            .startswith("model-garden export: error: --push-to-hub me/tiny-adapter: the upload failed")
        )
        assert digest(demo_run) == before  # a failed upload leaves the local files as they were

        done = subprocess.run(
            cmd, env=hub.client_env(home, token=hub.token), capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        repo = hub.repo_dir("me/tiny-adapter")
        uploaded = {p.name for p in repo.iterdir() if p.is_file()}
        assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "chat_template.jinja"} <= uploaded
        assert "events.jsonl" not in uploaded and "summary.json" not in uploaded
        assert (repo / "adapter_model.safetensors").read_bytes() == (
            demo_run / "adapter_model.safetensors"
        ).read_bytes()
        assert hub.settings("me/tiny-adapter").private is True
        assert digest(demo_run) == before
        for output in (wrong.stdout, wrong.stderr, done.stdout, done.stderr):
            assert hub.token not in output
        for folder in (demo_run, home, tmp_path / "hub"):
            for p in folder.rglob("*"):
                if p.is_file() and p.stat().st_size < 50_000_000:
                    assert hub.token.encode() not in p.read_bytes(), p
    assert os.environ.get("HF_TOKEN") is None
