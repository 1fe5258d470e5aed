"""The settings form, driven through the real app with Pilot."""

from __future__ import annotations

import dataclasses

import pytest
from app_helpers import NO_GPU, one_gpu, settle, type_into, wait_until
from textual import events

from mgtui import presets
from mgtui.nvml import FixedSource, GpuReading
from mgtui.tui.app import MgApp
from mgtui.tui.screens.form import FormScreen


def make_app(chosen=None, target=None, gpu=NO_GPU, **kw) -> MgApp:
    return MgApp(chosen or {}, target, gpu, offer_runs=False, **kw)


def field(app, name: str):
    """A row's name label: it carries the row's -invalid and -explicit state."""
    return app.screen.query_one(f"#f-{name}")


def note(app, name: str) -> str:
    return str(app.screen.query_one(f"#n-{name}").render())


async def test_editing_and_inline_validation():
    app = make_app({"dataset": "builtin:demo-chat"})
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await type_into(pilot, "lora_r", "abc")
        form: FormScreen = app.screen
        assert field(app, "lora_r").has_class("-invalid")
        assert "'abc' is not an integer from 1 to 1024" in note(app, "lora_r")
        assert "✗" in str(app.screen.query_one("#command").render())
        await pilot.press("ctrl+r")  # Start is refused while a field is invalid
        await pilot.pause()
        assert isinstance(app.screen, FormScreen)
        assert any("fix the marked fields" in n.message for n in app._notifications)
        await type_into(pilot, "lora_r", "32")
        assert not field(app, "lora_r").has_class("-invalid")
        assert form.model.value("lora_r") == 32
        assert "--lora-r 32" in str(app.screen.query_one("#command").render())
        # A cross-field conflict marks the field it names.
        form.model.set_value("load_in_16bit", True)
        form.refresh_form()
        assert field(app, "base_model").has_class("-invalid")
        assert "pre-quantized 4-bit checkpoint" in note(app, "base_model")


async def test_keys_that_arrive_in_a_burst_are_applied_in_order():
    """Over SSH keys arrive in bursts: a fast correction, or keys typed while a frame renders, are
    read together and posted at once, as here. Every key must land, in order, in the field that
    had focus when it was typed, and the form must not write its older text over them."""
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        form: FormScreen = app.screen
        warmup, decay, seed = (form.query_one(f"#i-{n}") for n in ("warmup_steps", "weight_decay", "seed"))
        assert form.focus_chain.index(decay) == form.focus_chain.index(warmup) + 1
        warmup.focus()
        await pilot.pause()
        burst = [
            "end",
            "backspace",
            "1",
            "2",
            "backspace",
            "0",
            "tab",  # warm-up 5 -> 10, on to weight decay
            "end",
            *["backspace"] * 4,
            "1",
            "e",
            "-",
            "1",
            "tab",
        ]  # 0.01 -> 1e-1, on to the seed
        for key in burst:
            app.post_message(events.Key(key, key if len(key) == 1 else None))
        await wait_until(
            pilot,
            lambda: (
                app.focused is seed
                and form.model.value("warmup_steps") == 10
                and form.model.value("weight_decay") == 0.1
                and decay.value == "0.1"
            ),
            "the burst's last key",
        )
        assert app.focused is seed
        assert warmup.value == "10" and form.model.value("warmup_steps") == 10
        assert form.model.value("weight_decay") == 0.1
        assert decay.value == "0.1"  # typed as 1e-1; once left, shown as the command line has it
        # Switches too: space and tab are bound keys, which Textual ran after the keys behind them.
        form.query_one("#i-packing").focus()
        await pilot.pause()
        # trust-remote-code, then the training method's rows (method, adapter-from), then LoRA's first
        for key in ["space", "tab", "space", "tab", "tab", "tab", "tab", "l"]:
            app.post_message(events.Key(key, " " if key == "space" else key if len(key) == 1 else None))
        await wait_until(
            pilot,
            lambda: (
                app.focused.id == "i-lora_r"
                and app.focused.value == "16l"
                and form.model.value("packing")
                and form.model.value("train_on_responses_only")
            ),
            "the last key",
        )
        assert form.model.value("packing") and form.model.value("train_on_responses_only")
        assert app.focused.id == "i-lora_r" and app.focused.value == "16l"


async def test_oom_warning_appears_and_clears_and_a_step_applies_with_one_key():
    app = make_app({"dataset": "builtin:demo-chat"}, target=("RTX 3060 (planning)", 12.0))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        form: FormScreen = app.screen
        assert form.plan.estimate.state in ("fits", "tight")
        await type_into(pilot, "batch_size", "16")
        assert form.plan.estimate.state == "over"
        panel = str(app.screen.query_one("#vram").render())
        assert "OVER" in panel and "Out of memory - try in order" in panel and "alt+1" in panel
        await type_into(pilot, "batch_size", "2")
        assert form.plan.estimate.state != "over" and not form.plan.steps
        assert "OVER" not in str(app.screen.query_one("#vram").render())
        # Over again, then the first step (batch 1) with one key.
        await type_into(pilot, "max_seq_length", "16384")
        assert form.plan.estimate.state == "over"
        first = form.plan.steps[0]
        await pilot.press("alt+1")
        await pilot.pause()
        assert form.model.value("batch_size") == 1 and first.changes == {"batch_size": 1}
        assert app.screen.query_one("#i-batch_size").value == "1"


async def test_quality_mode_shows_what_it_sets_and_keeps_explicit_values():
    app = make_app({"base_model": "unsloth/llama-3.1-8b", "lora_r": 64, "dataset": "builtin:demo-chat"})
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        form: FormScreen = app.screen
        form.model.set_value("optim", "adamw_8bit")  # the user picks 8-bit Adam explicitly
        await pilot.press("ctrl+t")
        await pilot.pause()
        m = form.model
        assert m.value("quality_mode") and m.resolved.precision == 16
        assert m.value("use_gradient_checkpointing") == "true" and m.value("use_rslora") is True
        assert m.value("optim") == "adamw_8bit"  # explicit wins
        assert "quality mode sets true" in note(app, "use_gradient_checkpointing")
        assert "sets load-in-16bit=True" in note(app, "quality_mode")
        assert app.screen.query_one("#i-use_gradient_checkpointing").value == "true"
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert m.value("use_gradient_checkpointing") == "unsloth" and m.resolved.precision == 4 or m.cross_error is None


async def test_preset_saved_and_loaded_back_through_the_ui(isolated_home):
    app = make_app({"dataset": "builtin:demo-chat", "lora_r": 48, "learning_rate": 1e-4})
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+s")
        await pilot.pause()
        await pilot.press(*"mine", "enter")
        await pilot.pause()
        saved = presets.user_dir() / "mine.toml"
        assert saved.is_file() and "lora_r = 48" in saved.read_text()
        await type_into(pilot, "lora_r", "8")
        # Saving again under the same name asks first; "n" keeps the old file.
        await pilot.press("ctrl+s")
        await pilot.pause()
        await pilot.press(*"mine", "enter")
        await pilot.pause()
        await pilot.press("n")
        await pilot.pause()
        assert "lora_r = 48" in saved.read_text()
        # Load it back from the list.
        await pilot.press("ctrl+o")
        await pilot.pause()
        options = app.screen.query_one("#options")
        names = [options.get_option_at_index(i).id for i in range(options.option_count)]
        options.highlighted = names.index("mine")
        await pilot.pause()
        detail = str(app.screen.query_one("#detail").render())
        assert "lora-r: 8 → 48" in detail
        await pilot.press("enter")
        await pilot.pause()
        form: FormScreen = app.screen
        assert form.model.value("lora_r") == 48 and form.model.value("learning_rate") == 1e-4


async def test_broken_preset_shows_its_error_and_leaves_the_form(isolated_home):
    bad = presets.user_dir() / "broken.toml"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text("schema = 1\nlora_r = 'many'\n")
    app = make_app({"dataset": "builtin:demo-chat", "lora_r": 24})
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        form: FormScreen = app.screen
        before = dict(form.model.chosen)
        assert form.load_preset("broken") is False
        await pilot.pause()
        assert form.model.chosen == before
        assert any("line 2" in n.message and "broken.toml" in n.message for n in app._notifications)


async def test_broken_preset_on_the_command_line_opens_with_a_notice(isolated_home):
    app = make_app({}, notice="/x/p.toml: line 3: unknown key 'hf_token'")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, FormScreen)
        assert any("unknown key 'hf_token'" in n.message for n in app._notifications)


@pytest.mark.parametrize(
    "content, expected",
    [
        ('{"text": "ok"}\n{"text": oops}\n', ":2: invalid JSON"),
        ('{"question": "a"}\n', "no recognised fields; found columns ['question']"),
    ],
)
async def test_dataset_scan_errors_show_with_their_line(tmp_path, content, expected):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    app = make_app({"dataset": str(bad)})
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert expected in str(app.screen.query_one("#dataset").render())
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert isinstance(app.screen, FormScreen)


async def test_the_side_panel_shows_the_dataset_while_its_field_has_focus():
    """At 80x24 the VRAM panel can fill the side: the dataset report comes up with its field."""
    app = make_app(
        {
            "dataset": "builtin:demo-chat",
            "base_model": "unsloth/llama-3.1-8b",
            "quality_mode": True,
            "lora_r": 64,
            "batch_size": 8,
        },
        ("RTX 4090 24GB (planning)", 24.0),
    )
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        side, title = app.screen.query_one("#side"), app.screen.query_one("#dataset-title")
        assert side.scroll_y == 0 and title.region.y >= side.region.bottom  # below the fold at first
        app.screen.query_one("#i-dataset").focus()

        # The focus message, the scroll, then the layout that moves the title: states, not time.
        def in_view() -> bool:
            return side.scroll_y > 0 and side.region.y <= title.region.y < side.region.bottom

        await wait_until(pilot, in_view, "the dataset's title in view", timeout=60.0)
        assert side.region.y <= title.region.y < side.region.bottom
        app.screen.query_one("#i-lora_r").focus()
        # and the estimate comes back with the other fields
        await wait_until(pilot, lambda: side.scroll_y == 0, "the side scrolled home", timeout=60.0)


async def test_dataset_scan_shows_format_rows_and_a_sample(tmp_path):
    app = make_app({"dataset": "builtin:demo-chat"})
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        text = str(app.screen.query_one("#dataset").render())
        assert "messages · 240 rows" in text and "assistant:" in text


async def test_gpu_from_nvml_and_planning_target():
    app = make_app({"dataset": "builtin:demo-chat"}, gpu=one_gpu(24.0, 0.5))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        form: FormScreen = app.screen
        assert form.plan.gpu_gib == pytest.approx(23.5)
        assert "RTX 4090" in form.plan.gpu_label
        await pilot.press("ctrl+g")
        await pilot.pause()
        options = app.screen.query_one("#options")
        ids = [options.get_option_at_index(i).id for i in range(options.option_count)]
        options.highlighted = ids.index("plan:H100 80GB")
        await pilot.press("enter")
        await pilot.pause()
        assert form.plan.gpu_gib == pytest.approx(79.6)


async def test_gpus_to_train_on_are_ticked_from_the_detected_ones():
    samples = one_gpu().read().gpus[0]
    four = FixedSource(GpuReading(tuple(dataclasses.replace(samples, index=i) for i in range(4))))
    app = make_app(gpu=four)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        form: FormScreen = app.screen
        form.query_one("#i-gpus").focus()
        await pilot.pause()
        await pilot.press("enter")  # all four ticked: the default
        await pilot.pause()
        await pilot.press("down", "space", "down", "down", "space", "enter")  # untick GPUs 1 and 3
        await pilot.pause()
        assert isinstance(app.screen, FormScreen)
        assert form.model.value("gpus") == "0,2" and form.query_one("#i-gpus").value == "0,2"
        assert note(app, "nproc_per_node").startswith("2 processes")
        assert "--gpus 0,2" in str(form.query_one("#command").render())
        await pilot.press("enter", "down", "space", "down", "down", "space", "enter")  # tick them back: all
        await pilot.pause()
        assert form.model.value("gpus") == "" and note(app, "nproc_per_node").startswith("4 processes")


async def test_every_action_is_bound_and_in_the_palette():
    app = make_app({"dataset": "builtin:demo-chat"})
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        keys = {b.key for b in FormScreen.BINDINGS}
        assert {"ctrl+r", "ctrl+b", "ctrl+l", "ctrl+o", "ctrl+s", "ctrl+y", "ctrl+g", "ctrl+t", "alt+1"} <= keys
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for title in (
            "Start the run",
            "Queue the run",
            "Runs",
            "Load preset",
            "Save preset",
            "Copy command line",
            "Choose GPU target",
            "Toggle quality mode",
            "Help",
        ):
            assert title in titles
        await pilot.press("f1")
        await pilot.pause()
        assert "command palette" in str(app.screen.query_one("VerticalScroll > Static").render())


async def test_copy_command_uses_the_clipboard():
    app = make_app({"dataset": "builtin:demo-chat", "lora_r": 32})
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+y")
        await pilot.pause()
        assert app.clipboard.startswith("model-garden train") and "--lora-r 32" in app.clipboard


async def test_a_gpu_box_whose_torch_cant_use_its_cards_is_shown_and_start_refused():
    from mgtui.nvml import GpuSample

    old_driver = FixedSource(
        GpuReading((GpuSample(0, "Tesla T4", 16 * 2**30, 2**30, capability=(7, 5)),), None, "535.104.05", "12.2")
    )
    app = make_app({"dataset": "builtin:demo-chat"}, gpu=old_driver)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.pause()
        assert any("535.104.05" in n.message and "CUDA 12.2" in n.message for n in app._notifications)
        assert field(app, "gpus").has_class("-invalid")
        assert "535.104.05" in note(app, "gpus")
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert isinstance(app.screen, FormScreen)
        assert any(n.message.startswith("Start refused: torch") for n in app._notifications)


def test_help_is_generated_from_every_screens_bindings():
    from mgtui.tui.app import help_text
    from mgtui.tui.screens.run import RunScreen

    text = help_text()
    for owner in (FormScreen, RunScreen, MgApp):
        for b in owner.BINDINGS:
            assert b.tooltip and b.tooltip in text, (owner.__name__, b.key)
            if "(" not in b.action:  # a numbered family is one line: alt+1..6
                assert f"  {b.key} " in text, b.key
    assert text.count("alt+1..6") == 2
