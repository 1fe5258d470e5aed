"""Every run as a row: the history that the runs screen and `model-garden runs --all` list, and
what a comparison of two or more shows (the settings that differ, their curves). Pure: it reads
run directories and the registry, and imports no Textual or torch."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..settings import BY_NAME, DEFAULTS
from .events import EVENTS_FILE, read_events
from .queue import cancel, place_of, read_queue
from .registry import forget, pointers, registry_dir
from .rundir import SUMMARY_FILE, is_run_dir, launcher_alive, read_json, run_info, run_state, write_json_atomic
from .view import FUNC

# Settings that differ between any two runs without telling them apart.
NOT_COMPARED = ("output_dir", "resume", "base_model")  # base_model has a column of its own
FOLDERS_FILE = "folders.json"  # beside the registry: the folders the user asked to look in
SEARCH_DEPTH = 3  # how deep under a folder run directories are looked for


# The curves a comparison can plot, with their labels: the loss, a preference run's reward margin
# and accuracy, GRPO's reward mean and spread, KL, completion length and the share clipped. A GRPO
# run's reward functions add FUNC + name ("reward:answer_match"), labelled "reward: answer_match".
CURVES = {
    "train": "loss", "reward_margin": "reward margin", "reward_accuracy": "reward accuracy", "reward": "reward mean",
    "reward_std": "reward spread (std)", "kl": "KL", "completion_length": "completion length",
    "clipped_ratio": "share clipped at max length",
}  # fmt: skip
LOGGED = tuple(k for k in CURVES if k != "train")  # a log event's keys, beside its loss


@dataclass
class Curves:
    """(step, tokens seen, value) for each logged training loss and each evaluation; a preference
    run's reward margin and accuracy, and a GRPO run's reward mean, spread, KL, completion length
    and share clipped, as its trainer logged them beside the loss; GRPO's reward functions' means
    by name."""

    train: list[tuple[int, float, float]] = field(default_factory=list)
    eval: list[tuple[int, float, float]] = field(default_factory=list)
    reward_margin: list[tuple[int, float, float]] = field(default_factory=list)
    reward_accuracy: list[tuple[int, float, float]] = field(default_factory=list)
    reward: list[tuple[int, float, float]] = field(default_factory=list)
    reward_std: list[tuple[int, float, float]] = field(default_factory=list)
    kl: list[tuple[int, float, float]] = field(default_factory=list)
    completion_length: list[tuple[int, float, float]] = field(default_factory=list)
    clipped_ratio: list[tuple[int, float, float]] = field(default_factory=list)
    funcs: dict[str, list[tuple[int, float, float]]] = field(default_factory=dict)

    def get(self, key: str) -> list[tuple[int, float, float]]:
        """A curve by its CURVES key, or a reward function's by FUNC + name."""
        if key.startswith(FUNC):
            return self.funcs.get(key.removeprefix(FUNC), [])
        return getattr(self, key)


def curve_label(key: str) -> str:
    return f"reward: {key.removeprefix(FUNC)}" if key.startswith(FUNC) else CURVES[key]


def offered(runs: list[RunRecord]) -> list[str]:
    """The curves some run logged, in CURVES' order with the reward functions after the reward
    spread: the loss always."""
    keys = [k for k in CURVES if k == "train" or any(r.curves.get(k) for r in runs)]
    funcs = list(dict.fromkeys(FUNC + f for r in runs for f in r.curves.funcs if r.curves.funcs[f]))
    at = keys.index("reward_std") + 1 if "reward_std" in keys else len(keys)
    return keys[:at] + funcs + keys[at:]


@dataclass
class RunRecord:
    path: Path
    state: str  # running | done | stopped | failed | dead | new | missing | damaged | unreadable
    started: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    steps: int | None = None
    final_loss: float | None = None
    best_eval_loss: float | None = None
    final_eval_loss: float | None = None
    reward_accuracy: float | None = None  # a preference run's last, as its trainer logged them
    reward_margin: float | None = None
    reward: float | None = None  # a GRPO run's last reward mean
    tokens_per_s: float | None = None
    peak_gb: float | None = None
    estimate_gb: float | None = None
    duration_s: float | None = None
    backend: str = ""
    device: str = ""
    archived: bool = False
    curves: Curves = field(default_factory=Curves)
    queue_place: int | None = None  # 1 = next, while it waits in the queue
    waiting_for: str = ""  # what the queue's waiter last saw it wait for
    problem: str = ""  # why it is damaged or unreadable

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def base_model(self) -> str:
        return str(self.settings.get("base_model", ""))

    def as_json(self, differing: Iterable[str] = ()) -> dict[str, Any]:
        return {
            "output_dir": str(self.path),
            "state": self.state,
            "started": self.started,
            "base_model": self.base_model or None,
            "differing": {k: self.settings.get(k) for k in differing},
            "steps": self.steps,
            "final_loss": self.final_loss,
            "best_eval_loss": self.best_eval_loss,
            "final_eval_loss": self.final_eval_loss,
            "reward_accuracy": self.reward_accuracy,
            "reward_margin": self.reward_margin,
            "reward": self.reward,
            "tokens_per_s": self.tokens_per_s,
            "peak_gb": self.peak_gb,
            "estimate_gb": self.estimate_gb,
            "duration_s": self.duration_s,
            "archived": self.archived,
            "queue_place": self.queue_place,
            "waiting_for": self.waiting_for or None,
        }


def read_record(path: Path, archived: bool = False) -> RunRecord:
    """One run's row, from its event log, run.json and summary.json. A directory that is gone is
    "missing", and one whose files are unreadable or of another shape is "damaged" or
    "unreadable", with why: never an error, and the other runs still list."""
    path = Path(path)
    try:
        return _read_record(path, archived)
    except (OSError, ValueError, TypeError, AttributeError, KeyError) as e:
        return RunRecord(path, "damaged", archived=archived, problem=f"{type(e).__name__}: {e}"[:200])


def _read_record(path: Path, archived: bool) -> RunRecord:
    if not path.is_dir() or not is_run_dir(path):
        return RunRecord(path, "missing", archived=archived)
    st = run_state(path)
    if st.problem:
        return RunRecord(path, st.state, archived=archived, problem=st.problem)
    info, _ = run_info(path)
    rec = RunRecord(path, st.state, started=info.get("started") or info.get("queued"), archived=archived)
    _fold_events(rec, path)
    summary = read_json(path / SUMMARY_FILE)
    if summary:  # the engine's own figures where it wrote them: steady speed, peak, runtime
        rec.final_loss = summary.get("final_loss", rec.final_loss)
        rec.reward_accuracy = summary.get("reward_accuracy", rec.reward_accuracy)
        rec.reward_margin = summary.get("reward_margin", rec.reward_margin)
        rec.reward = summary.get("reward", rec.reward)
        rec.steps = summary.get("steps", rec.steps)
        rec.tokens_per_s = summary.get("steady_tokens_per_s") or rec.tokens_per_s
        rec.peak_gb = summary.get("peak_nvml_gb") or summary.get("peak_reserved_gb") or rec.peak_gb
        rec.estimate_gb = summary.get("estimate_gb", rec.estimate_gb)
        rec.duration_s = summary.get("runtime_s", rec.duration_s)
    if rec.duration_s is None and rec.started:
        end = info.get("ended") or (time.time() if st.state == "running" else None)
        rec.duration_s = round(end - rec.started, 2) if end else None
    if not rec.settings:
        rec.settings = _settings_file(path)
    return rec


def _fold_events(rec: RunRecord, path: Path) -> None:
    speeds: list[float] = []
    tokens = offset = last_tokens = prev_elapsed = 0.0
    first_t = last_t = None
    for e in read_events(path / EVENTS_FILE):
        kind = e.get("type")
        first_t = first_t if first_t is not None else e.get("t")
        last_t = e.get("t", last_t)
        if kind == "start":
            rec.settings = {**DEFAULTS, **(e.get("settings") or {})}
            rec.estimate_gb = e.get("estimate_gb", rec.estimate_gb)
            rec.backend, rec.device = e.get("backend", ""), e.get("device", "")
            rec.started = rec.started or e.get("t")
        elif kind == "log" and e.get("loss") is not None:
            if e.get("tokens_seen") is not None:  # the engine's count; it restarts at 0 on resume
                if e["tokens_seen"] < last_tokens:
                    offset = tokens
                last_tokens = e["tokens_seen"]
                tokens = offset + last_tokens
            else:  # older logs: the speed over the time since the previous log (a resumed run's
                # clock restarts, and its first log counts from its own start)
                now = e.get("elapsed_s") or 0.0
                tokens += (e.get("tokens_per_s") or 0.0) * (now - prev_elapsed if now >= prev_elapsed else now)
                prev_elapsed = now
            rec.curves.train.append((e["step"], tokens, e["loss"]))
            rec.final_loss, rec.steps = e["loss"], e["step"]
            rec.reward_accuracy = e.get("reward_accuracy", rec.reward_accuracy)
            rec.reward_margin = e.get("reward_margin", rec.reward_margin)
            rec.reward = e.get("reward", rec.reward)
            for key in LOGGED:
                if e.get(key) is not None:
                    getattr(rec.curves, key).append((e["step"], tokens, e[key]))
            for name, value in (e.get("reward_funcs") or {}).items():
                if value is not None:
                    rec.curves.funcs.setdefault(name, []).append((e["step"], tokens, value))
            if e.get("tokens_per_s"):
                speeds.append(e["tokens_per_s"])
        elif kind == "eval" and e.get("eval_loss") is not None:
            rec.curves.eval.append((e.get("step", rec.steps or 0), tokens, e["eval_loss"]))
        elif kind == "memory":
            rec.peak_gb = e.get("peak_nvml_gb") or e.get("peak_reserved_gb") or rec.peak_gb
        elif kind in ("done", "stopped", "failed"):
            rec.steps = e.get("steps", e.get("step", rec.steps))
            rec.final_loss = e.get("final_loss", rec.final_loss)
            rec.duration_s = e.get("runtime_s")
    evals = [v for _, _, v in rec.curves.eval]
    if evals:
        rec.best_eval_loss, rec.final_eval_loss = min(evals), evals[-1]
    if speeds:
        rec.tokens_per_s = round(sum(speeds[1:] or speeds) / len(speeds[1:] or speeds), 1)  # past warm-up
    if rec.duration_s is None and first_t is not None and last_t is not None and rec.state != "running":
        rec.duration_s = round(last_t - first_t, 2)


def _settings_file(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        data = tomllib.loads((path / "settings.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {**DEFAULTS, **{k: v for k, v in data.items() if k in BY_NAME}}


# --- where runs are found --------------------------------------------------------------------


def folders() -> list[Path]:
    data = read_json(registry_dir().parent / FOLDERS_FILE)
    return [Path(p) for p in data.get("folders", [])]


def add_folder(folder: Path) -> str | None:
    """Remember a folder to look for runs in. Returns why not, or None."""
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        return f"{folder}: no such folder"
    known = [str(p) for p in folders()]
    if str(folder) not in known:
        target = registry_dir().parent / FOLDERS_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(target, {"folders": [*known, str(folder)]})
    return None


def found_under(folder: Path, depth: int = SEARCH_DEPTH) -> list[Path]:
    """Run directories in `folder` and below it (not inside a run: its checkpoints are not runs)."""
    out: list[Path] = []
    folder = Path(folder).expanduser()
    if is_run_dir(folder):
        return [folder.resolve()]
    if depth <= 0:
        return out
    try:
        children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return out
    for child in children:
        out += found_under(child, depth - 1)
    return out


def collect(extra: Iterable[Path] = (), include_archived: bool = True) -> list[RunRecord]:
    """This user's registered runs and any run under the remembered folders and `extra`, newest
    first. Another user's run found in a folder is listed too: it is readable, and compared."""
    seen: dict[str, RunRecord] = {}
    for pointer in pointers():
        if "pointer" in pointer:  # its run can't be named: the pointer itself is the row
            seen[pointer["pointer"]] = RunRecord(Path(pointer["pointer"]), "damaged", problem="unreadable pointer")
            continue
        out = Path(pointer["output_dir"])
        info, _ = run_info(out)
        if info.get("uid", os.getuid()) != os.getuid():
            continue
        seen[str(out)] = read_record(out, archived=bool(pointer.get("archived")))
    for folder in [*folders(), *extra]:
        for path in found_under(folder):
            if str(path) not in seen:
                seen[str(path)] = read_record(path)
    runs = [r for r in seen.values() if include_archived or not r.archived]
    q = read_queue()
    for r in runs:
        if r.state == "queued" and (place := place_of(r.path, q)):
            r.queue_place, r.waiting_for, r.estimate_gb = place
    return sorted(runs, key=lambda r: r.started or 0.0, reverse=True)


# --- comparing ------------------------------------------------------------------------------


def differing(runs: list[RunRecord]) -> list[str]:
    """The settings whose values are not the same in every listed run (with settings), in the
    settings model's order."""
    known = [r.settings for r in runs if r.settings]
    if len(known) < 2:
        return []
    return [
        name
        for name in DEFAULTS
        if name not in NOT_COMPARED and len({repr(s.get(name, DEFAULTS[name])) for s in known}) > 1
    ]


def label(name: str) -> str:
    """A setting's column heading: its flag without the dashes."""
    return BY_NAME[name].flag.removeprefix("--") if name in BY_NAME else name


def smooth(points: list[tuple[float, float]], weight: float) -> list[tuple[float, float]]:
    """An exponential moving average, as TensorBoard's smoothing slider: 0 is the raw curve."""
    if weight <= 0 or not points:
        return points
    out, last = [], points[0][1]
    for x, y in points:
        last = weight * last + (1 - weight) * y
        out.append((x, last))
    return out


def series(curve: list[tuple[int, float, float]], x: str) -> list[tuple[float, float]]:
    """(x, value) with x the step or the tokens seen."""
    i = 0 if x == "step" else 1
    return [(float(p[i]), p[2]) for p in curve]


# --- tidying up -----------------------------------------------------------------------------


def size_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                continue
    return total


def set_archived(rec: RunRecord, archived: bool) -> None:
    """Archived runs are kept on disk and hidden from the list until asked for."""
    from .registry import register, set_flag

    if rec.state != "missing":
        register(rec.path, keep=True)
    set_flag(rec.path, "archived", archived)
    rec.archived = archived


def delete_problem(rec: RunRecord) -> str | None:
    """Why a run can't be deleted, or None."""
    if rec.state == "missing":
        return None
    if run_state(rec.path).state == "running" or launcher_alive(rec.path):
        return f"{rec.path} is running: stop it first"
    if not is_run_dir(rec.path):
        return f"{rec.path} is not a run directory"
    return None


def delete(rec: RunRecord) -> None:
    """The run directory and its registry entry. Refuses a running run (delete_problem)."""
    problem = delete_problem(rec)
    if problem:
        raise ValueError(problem)
    if rec.state == "queued":
        cancel(rec.path)
    if rec.path.exists():
        shutil.rmtree(rec.path)
    forget(rec.path)


# --- the table ------------------------------------------------------------------------------


def fmt(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def when(started: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(started)) if started else "-"


def memory(rec: RunRecord) -> str:
    """Peak against the estimate, GiB (labelled GB, as everywhere in mgtui)."""
    if rec.peak_gb is None and rec.estimate_gb is None:
        return "-"
    peak = f"{rec.peak_gb:.2f}" if rec.peak_gb is not None else "-"
    est = f"{rec.estimate_gb:.2f}" if rec.estimate_gb is not None else "-"
    return f"{peak}/{est} GB"


def short_path(path: Path) -> str:
    home = str(Path.home())
    text = str(path)
    return "~" + text[len(home) :] if text.startswith(home + os.sep) else text


def table(runs: list[RunRecord], full: bool = False) -> tuple[list[str], list[list[str]]]:
    """The runs list's headings and cells, for the app and `model-garden runs --all` alike. The
    app's are compact (the run's name, the model's last part: the screen shows the whole path of
    the highlighted run); `full` gives the paths and the year."""
    from .view import fmt_duration

    diff = differing(runs)
    figures = ["final loss", "best eval", "tok/s", "peak/est", "time"]
    if any(r.reward_margin is not None for r in runs):  # preference runs among them
        figures[1:1] = ["reward acc", "margin"]
    if any(r.reward is not None for r in runs):  # GRPO runs among them
        figures.insert(1, "reward")
    if full:
        heads = ["state", "when", "run", "base model", *map(label, diff), *figures]
    else:  # what tells runs apart first: at 80 columns the figures stay in view
        heads = ["state", "run", *map(label, diff), *figures, "when", "base model"]
    rows = []
    for r in runs:
        model = r.base_model.rstrip("/")
        cells = {
            "state": (f"queued #{r.queue_place}" if r.queue_place else r.state) + (" (archived)" if r.archived else ""),
            "when": when(r.started) if full else when(r.started)[5:],
            "run": short_path(r.path) if full else r.name,
            "base model": (short_path(Path(model)) if full else model.rsplit("/", 1)[-1]) if model else "-",
            "final loss": fmt(r.final_loss),
            "best eval": fmt(r.best_eval_loss),
            "reward acc": "-" if r.reward_accuracy is None else f"{r.reward_accuracy:.0%}",
            "margin": fmt(r.reward_margin),
            "reward": fmt(r.reward),
            "tok/s": fmt(r.tokens_per_s),
            "peak/est": memory(r),
            "time": fmt_duration(r.duration_s) if r.duration_s is not None else "-",
        }
        cells |= {label(k): fmt(r.settings.get(k)) if r.settings else "-" for k in diff}
        rows.append([cells[h] for h in heads])
    return heads, rows


# --- what the runs screen shows --------------------------------------------------------------

# name: (key, newest/best first)
SORTS: dict[str, tuple[Any, bool]] = {
    "when": (lambda r: r.started or 0.0, True),
    "final loss": (lambda r: r.final_loss if r.final_loss is not None else float("inf"), False),
    "best eval": (lambda r: r.best_eval_loss if r.best_eval_loss is not None else float("inf"), False),
    "tok/s": (lambda r: r.tokens_per_s or 0.0, True),
    "time": (lambda r: r.duration_s if r.duration_s is not None else float("inf"), False),
    "state": (lambda r: r.state, False),
}


def visible(runs: list[RunRecord], text: str = "", sort: str = "when", archived: bool = False) -> list[RunRecord]:
    """The runs a list shows: archived ones only when asked, those whose row or path contains
    every word of `text` (any case), in `sort`'s order."""
    words = text.lower().split()
    _, rows = table(runs, full=True)
    keep = []
    for run, cells in zip(runs, rows):
        hay = " ".join([*cells, str(run.path), *(f"{label(k)}={fmt(v)}" for k, v in run.settings.items())]).lower()
        if (archived or not run.archived) and all(w in hay for w in words):
            keep.append(run)
    key, reverse = SORTS[sort]
    return sorted(keep, key=key, reverse=reverse)


def compare_rows(runs: list[RunRecord]) -> tuple[list[tuple[str, list[str]]], list[tuple[str, list[str]]]]:
    """Side by side: each run's summary figures, then only the settings that differ."""
    from .view import fmt_duration

    summary = [
        ("state", [r.state for r in runs]),
        ("started", [when(r.started) for r in runs]),
        ("base model", [short_path(Path(r.base_model)) if r.base_model else "-" for r in runs]),
        ("steps", [fmt(r.steps) for r in runs]),
        ("final loss", [fmt(r.final_loss) for r in runs]),
        ("best eval loss", [fmt(r.best_eval_loss) for r in runs]),
        *(
            [
                ("reward accuracy", ["-" if r.reward_accuracy is None else f"{r.reward_accuracy:.0%}" for r in runs]),
                ("reward margin", [fmt(r.reward_margin) for r in runs]),
            ]
            if any(r.reward_margin is not None for r in runs)
            else []
        ),
        *([("reward mean", [fmt(r.reward) for r in runs])] if any(r.reward is not None for r in runs) else []),
        ("tokens/s", [fmt(r.tokens_per_s) for r in runs]),
        ("peak/estimate", [memory(r) for r in runs]),
        ("duration", [fmt_duration(r.duration_s) if r.duration_s is not None else "-" for r in runs]),
        ("engine", [f"{r.backend} on {r.device}" if r.backend else "-" for r in runs]),
    ]
    settings = [(label(k), [fmt(r.settings.get(k)) if r.settings else "-" for r in runs]) for k in differing(runs)]
    return summary, settings
