"""Entry point for both `mgtui` and `model-garden`.

No subcommand opens the app; a subcommand works headless. Flags are generated from the
settings model. Heavy modules (textual, torch) are imported only by the path that needs them.

Exit codes: 0 done, 1 the run failed, 2 bad input (flags, preset, dataset), 130 stopped.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn, Sequence

from .errors import EXIT_OK, EXIT_STOPPED, EXIT_USAGE, UsageError
from .settings import SETTINGS, Resolved, Setting, SettingError, resolve


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, never the usage block
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _type_for(setting: Setting):
    def parse(text: str) -> Any:
        try:
            return setting.parse(text)
        except SettingError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix(f"{setting.flag}: ")) from None

    parse.__name__ = setting.type.__name__  # argparse names the type in some messages
    return parse


def add_setting_flags(p: argparse.ArgumentParser) -> None:
    """One flag per setting, grouped as in the form. SUPPRESS tells explicit flags from defaults."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for s in SETTINGS:
        g = groups.get(s.group) or groups.setdefault(s.group, p.add_argument_group(s.group))
        default = "" if s.default == "" else f" (default: {s.default})"
        if s.type is bool:
            g.add_argument(
                s.flag,
                dest=s.name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=s.help + default,
            )
        else:
            metavar = "{" + ",".join(s.choices) + "}" if s.choices else s.name.upper()
            g.add_argument(
                s.flag,
                dest=s.name,
                type=_type_for(s),
                default=argparse.SUPPRESS,
                metavar=metavar,
                help=s.help + default,
            )
    p.add_argument("--preset", metavar="NAME|PATH", help="start from a preset; flags override it")


def add_gpu_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--gpu-memory", type=float, metavar="GB", help="plan for this much GPU memory instead of the detected GPU"
    )
    p.add_argument("--gpu-name", metavar="NAME", help="plan for a common GPU by name, e.g. 'RTX 4090', 'A100 80GB'")


def build_parser(prog: str) -> Parser:
    p = Parser(
        prog=prog,
        allow_abbrev=False,
        description="Configure, run and follow LoRA/QLoRA fine-tuning. No subcommand opens the app.",
    )
    p.add_argument("--preset", metavar="NAME|PATH", help="open the app with a preset applied")
    add_gpu_flags(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    t = sub.add_parser(
        "train", help="train headless (or --dry-run to check and print the settings)", allow_abbrev=False
    )
    add_setting_flags(t)
    t.add_argument(
        "--dry-run", action="store_true", help="resolve, validate and print the settings as TOML; train nothing"
    )
    t.add_argument("--save-preset", metavar="NAME|PATH", help="save the resolved settings as a preset")
    t.add_argument(
        "--force", action="store_true", help="let --save-preset overwrite, and train into an occupied output directory"
    )
    t.add_argument("--detach", action="store_true", help="start the run in the background and return")
    t.add_argument(
        "--queue",
        action="store_true",
        help="wait in this user's queue until the GPUs have room for the estimate, then start (survives logout)",
    )

    e = sub.add_parser(
        "estimate", help="predict peak GPU memory and what to change if it won't fit", allow_abbrev=False
    )
    add_setting_flags(e)
    add_gpu_flags(e)
    e.add_argument("--json", action="store_true", help="print one JSON object")

    ins = sub.add_parser(
        "inspect",
        help="a row exactly as the trainer gets it: its tokens, which are trained, warnings",
        allow_abbrev=False,
    )
    add_setting_flags(ins)
    ins.add_argument("--row", type=int, default=1, metavar="N", help="the row's number in the file (default: 1)")
    ins.add_argument("--ids", action="store_true", help="one line per token: position, id, label, text")

    ps = sub.add_parser("presets", help="list or show presets")
    psub = ps.add_subparsers(dest="presets_command", metavar="ACTION", parser_class=Parser, required=True)
    psub.add_parser("list", help="list built-in and user presets")
    show = psub.add_parser("show", help="print a preset")
    show.add_argument("name", metavar="NAME|PATH")

    a = sub.add_parser("attach", help="open the app on a run directory (running or finished)")
    a.add_argument("output_dir", metavar="OUTPUT_DIR")
    c = sub.add_parser("chat", help="try a finished run: its answers beside the base model's, in the app")
    c.add_argument("output_dir", metavar="OUTPUT_DIR")
    from .runs.export_job import add_arguments  # the flags only: the export's libraries load when it runs

    x = sub.add_parser(
        "export", help="a finished run as a merged 16-bit model, a GGUF file, or on the Hub", allow_abbrev=False
    )
    add_arguments(x)
    r = sub.add_parser(
        "runs", help="list this user's runs that are going or finished since last seen (--all: every run)"
    )
    r.add_argument("--all", action="store_true", help="every run, with its figures and the settings that differ")
    r.add_argument("--json", action="store_true", help="the --all table as one JSON array, for scripts")
    r.add_argument(
        "--under",
        action="append",
        default=[],
        metavar="DIR",
        help="also list run directories found under DIR (repeatable; the app's runs screen remembers its own)",
    )
    r.add_argument("--archived", action="store_true", help="with --all: include archived runs")
    r.add_argument("--cancel", metavar="OUTPUT_DIR", help="take a queued run out of the queue")
    r.add_argument("--start-now", metavar="OUTPUT_DIR", help="start a queued run at once, whatever the GPUs hold")
    return p


def resolve_args(args: argparse.Namespace) -> Resolved:
    """Preset, then flags, then quality mode. Raises UsageError."""
    from . import presets  # loaded by the commands that use it: the app starts sooner

    layers: list[dict[str, Any]] = []
    explicit: set[str] = set()
    try:
        if args.preset:
            pre = presets.load(args.preset)
            layers.append(pre.values)
            explicit |= pre.explicit_keys()
        flags = {s.name: getattr(args, s.name) for s in SETTINGS if hasattr(args, s.name)}
        layers.append(flags)
        explicit |= set(flags)
        return resolve(layers, explicit)
    except (presets.PresetError, SettingError) as e:
        raise UsageError(str(e)) from None


def settings_toml(res: Resolved) -> str:
    """The resolved settings in the preset format, with what quality mode set as comments."""
    from . import presets  # loaded by the commands that use it: the app starts sooner

    text = presets.dumps(res, include_paths=True)
    if res.quality_set:
        import tomli_w

        text += "\n# Set by quality mode (re-derived when this is loaded):\n"
        text += "".join("# " + line + "\n" for line in tomli_w.dumps(res.quality_set).splitlines())
    return text


def cmd_train(args: argparse.Namespace) -> int:
    from . import presets  # loaded by the commands that use it: the app starts sooner

    res = resolve_args(args)
    if args.dry_run:  # a run says them once it has started: a refusal stays one line
        for w in res.warnings:
            print(f"warning: {w}", file=sys.stderr)
    if args.save_preset:
        try:
            path = presets.save(res, args.save_preset, force=args.force)
        except presets.PresetError as e:
            raise UsageError(str(e)) from None
        print(f"saved preset {path}", file=sys.stderr)
    if args.dry_run:
        check_data_dry(res)
        sys.stdout.write(settings_toml(res))
        return EXIT_OK
    from .runs.headless import train_headless

    return train_headless(res, force=args.force, detach=args.detach, queue=args.queue)


def check_data_dry(res: Resolved) -> None:
    """--dry-run reads and checks the dataset as a run does before its model loads (no torch). A
    file that isn't there is only warned of: the guide's commands name placeholder paths."""
    from .data.preflight import preflight
    from .data.scan import DatasetError, resolve_source

    try:
        if not res["dataset"] or resolve_source(res["dataset"]) is None:
            checked = None  # none given, or a Hub dataset: checked when the run starts
        else:
            checked = preflight(res)
    except DatasetError as e:
        if res["dataset"] and "no such file or directory" in str(e):
            print(f"warning: {e}; a run would refuse it", file=sys.stderr)
            return
        raise UsageError(str(e)) from None
    if checked is not None:
        r = checked.report
        print(f"dataset: {r.source}: {r.format} · {r.usable} rows to train", file=sys.stderr)
        for w in checked.warnings:
            print(f"warning: {w}", file=sys.stderr)


def cmd_inspect(args: argparse.Namespace) -> int:
    from .data.inspect_command import run_inspect

    return run_inspect(resolve_args(args), args.row, args.ids)


def cmd_estimate(args: argparse.Namespace) -> int:
    from .estimate.command import run_estimate

    res = resolve_args(args)
    return run_estimate(res, gpu_memory=args.gpu_memory, gpu_name=args.gpu_name, as_json=args.json)


def cmd_presets(args: argparse.Namespace) -> int:
    from . import presets  # loaded by the commands that use it: the app starts sooner

    if args.presets_command == "list":
        rows = []
        for name, (path, builtin) in presets.listing().items():
            try:
                desc = presets.load_path(path, builtin).description
            except presets.PresetError as e:
                desc = f"BROKEN: {e}"
            rows.append((name, "built-in" if builtin else "user", desc))
        width = max((len(r[0]) for r in rows), default=4)
        for name, kind, desc in rows:
            print(f"{name:<{width}}  {kind:<8}  {desc}")
        print(f"\nuser presets: {presets.user_dir()}", file=sys.stderr)
        return EXIT_OK
    try:
        pre = presets.load(args.name)
    except presets.PresetError as e:
        raise UsageError(str(e)) from None
    print(f"# {pre.path}{' (built-in)' if pre.builtin else ''}")
    sys.stdout.write(pre.path.read_text(encoding="utf-8"))
    return EXIT_OK


def cmd_app(args: argparse.Namespace) -> int:
    import gc

    # Textual's import makes tens of thousands of long-lived objects and no garbage: the cyclic
    # collector, walking them again and again, cost a tenth of the start-up (run_app freezes them).
    gc.disable()
    try:
        from .tui.app import run_app
    finally:
        gc.enable()

    target = getattr(args, "output_dir", None)
    chat = target if args.command == "chat" else None
    attach = target if args.command == "attach" else None
    return run_app(preset=args.preset, gpu_memory=args.gpu_memory, gpu_name=args.gpu_name, attach=attach, chat=chat)


def cmd_runs(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .runs import queue
    from .runs.registry import list_runs

    noticed = queue.ensure_waiter()  # a waiter that died is noticed, and replaced, here
    if noticed:
        print(f"note: {noticed}", file=sys.stderr)
    if args.cancel or args.start_now:
        target = Path(args.cancel or args.start_now).expanduser()
        if args.cancel:
            if not queue.cancel(target):
                raise UsageError(f"--cancel {target}: not waiting in the queue")
            print(f"cancelled {target}", file=sys.stderr)
            return EXIT_OK
        problem = queue.start_now(target)
        if problem:
            raise UsageError(f"--start-now {target}: {problem}")
        print(f"started {target}; follow it with: mgtui attach {target}", file=sys.stderr)
        return EXIT_OK
    if args.all or args.json or args.under:
        return print_history(args.under, args.archived, args.json)
    q = queue.read_queue()
    for run in list_runs():
        if run.problem:
            print(f"{run.state:<9} {run.output_dir}  ({run.problem})")
        elif run.state == "queued" and (place := queue.place_of(Path(run.output_dir), q)):
            print(f"queued #{place[0]:<2} {run.output_dir}  (waits for {place[1]})")
        elif run.state == "queued":
            print(f"queued    {run.output_dir}  (not in the queue file: --cancel {run.output_dir} takes it out)")
        else:
            print(f"{run.state:<9} {run.output_dir}  (pid {run.pid}, started {run.started})")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from .train.export import run

    return run(args)


def print_history(under: list[str], archived: bool, as_json: bool) -> int:
    import json
    from pathlib import Path

    from .runs import history

    for folder in under:
        if not Path(folder).expanduser().is_dir():
            raise UsageError(f"--under {folder}: no such folder")
    runs = history.collect([Path(f) for f in under], include_archived=archived)
    if as_json:
        diff = history.differing(runs)
        print(json.dumps([r.as_json(diff) for r in runs], indent=2))
        return EXIT_OK
    if not runs:
        print("no runs yet: start one with `model-garden train` or the app", file=sys.stderr)
        return EXIT_OK
    heads, rows = history.table(runs, full=True)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(heads)]
    for row in [heads, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = "mgtui" if sys.argv and sys.argv[0].endswith("mgtui") else "model-garden"
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.command in ("attach", "chat"):
        args.gpu_memory = args.gpu_name = args.preset = None
    handler = {
        None: cmd_app,
        "attach": cmd_app,
        "chat": cmd_app,
        "export": cmd_export,
        "train": cmd_train,
        "estimate": cmd_estimate,
        "inspect": cmd_inspect,
        "presets": cmd_presets,
        "runs": cmd_runs,
    }[args.command]
    try:
        return handler(args)
    except UsageError as e:
        print(f"{prog}{' ' + args.command if args.command else ''}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_STOPPED


if __name__ == "__main__":
    sys.exit(main())
