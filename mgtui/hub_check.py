"""Know before loading: the base model and a Hub dataset resolved through huggingface_hub's metadata
API before the engine starts (exists? gated? private? how much is left to download, and is there room
in the cache?). Each problem is one line with its fix; offline with a cached copy goes ahead, and says so.

The checks run in the CLI before the engine starts and in a worker of the app: huggingface_hub is
imported on first use (it is light, and never pulls in torch)."""

from __future__ import annotations

import difflib
import fnmatch
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .demo_model import BUILTIN_MODEL
from .hub_cache import endpoint, hub_cache_dir, hub_cached, offline, repo_cache_dir
from .units import GIB

# What from_pretrained reads from a model repository: config, weights, tokenizer and template.
MODEL_FILES = ["*.json", "*.safetensors", "*.bin", "*.model", "*.txt", "*.jinja", "*.tiktoken"]
# Copies of the weights that from_pretrained never reads (Meta's and Mistral's originals).
NOT_READ = ["original/*", "consolidated*", "*/consolidated*", "training_args.bin", "*.pth", "*.gguf"]


def model_files(names: list[str], remote_code: bool = False) -> list[str]:
    """The files of a model repository that loading it needs: safetensors weights when there are
    any (else the .bin ones), and the repository's Python files when its code is trusted."""
    wanted = [*MODEL_FILES, "*.py"] if remote_code else MODEL_FILES
    picked = [
        n
        for n in names
        if any(fnmatch.fnmatch(n, p) for p in wanted) and not any(fnmatch.fnmatch(n, p) for p in NOT_READ)
    ]
    if any(n.endswith(".safetensors") for n in picked):
        picked = [n for n in picked if not n.endswith(".bin") and not n.endswith(".bin.index.json")]
    return picked


def is_hub_name(name: str) -> bool:
    """org/name (not a local directory, nor the demo's built-in model)."""
    return name != BUILTIN_MODEL and name.count("/") == 1 and not Path(name).expanduser().exists()


def is_hub_dataset(dataset: str) -> bool:
    """A dataset named org/name[:subset] (not a file, a directory or a built-in)."""
    from .data.scan import resolve_source

    if not dataset or dataset.startswith("builtin:"):
        return False
    try:
        return resolve_source(dataset) is None
    except ValueError:  # a path that doesn't exist: the dataset check says so
        return False


def is_cached(repo: str, kind: str = "model") -> bool:
    snaps = repo_cache_dir(repo, kind) / "snapshots"
    return snaps.is_dir() and any(snaps.iterdir())


def did_you_mean(repo: str, kind: str = "model") -> str:
    """'; did you mean X?' from the cached repositories, or ''."""
    close = difflib.get_close_matches(repo, hub_cached(f"{kind}s"), n=1, cutoff=0.75)
    return f"; did you mean {close[0]}?" if close else ""


def free_bytes(path: Path) -> int:
    """Free space where `path` is (or would be created)."""
    for p in (path, *path.parents):
        if p.exists():
            return shutil.disk_usage(p).free
    return 0


@dataclass
class HubCheck:
    problems: list[str] = field(default_factory=list)  # each one line: the run can't start
    notes: list[str] = field(default_factory=list)  # said, and the run goes ahead
    download_bytes: int = 0  # still to download, model and dataset together
    files: int = 0


def _token() -> str | None:
    from huggingface_hub import get_token

    return get_token()


@dataclass
class RemoteFiles:
    sha: str  # the commit they were listed at: downloading at it skips a second look-up
    sizes: dict[str, int]  # what loading reads (a dataset: every file), in bytes
    left: list[str]  # those not in the cache

    def bytes(self, names: list[str]) -> int:
        return sum(self.sizes[n] for n in names)


def remote_files(repo: str, kind: str = "model", remote_code: bool = False) -> RemoteFiles:
    """One metadata call: the repository's files with their sizes, and which are not cached yet."""
    from huggingface_hub import HfApi, try_to_load_from_cache

    api = HfApi()
    info = api.model_info(repo, files_metadata=True) if kind == "model" else api.dataset_info(repo, files_metadata=True)
    assert info.sha is not None, "the Hub names the commit it listed"
    sizes = {s.rfilename: (s.lfs.size if s.lfs else s.size) or 0 for s in info.siblings or []}
    wanted = {n: sizes[n] for n in (model_files(list(sizes), remote_code) if kind == "model" else sizes)}
    left = [
        n for n in wanted if not isinstance(try_to_load_from_cache(repo, n, revision=info.sha, repo_type=kind), str)
    ]
    return RemoteFiles(info.sha, wanted, left)


def check_repo(repo: str, kind: str, remote_code: bool, out: HubCheck) -> None:
    """Resolve one repository (kind "model" or "dataset") and add what was found to `out`."""
    what = "model" if kind == "model" else "dataset"
    flag = "--base-model" if kind == "model" else "--dataset"
    if offline():
        if is_cached(repo, kind):
            out.notes.append(f"{flag} {repo}: offline (HF_HUB_OFFLINE): using the cached copy")
        else:
            out.problems.append(
                f"{flag} {repo}: not in the cache ({hub_cache_dir()}) and HF_HUB_OFFLINE is set; unset it to download"
            )
        return
    import httpx
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    try:
        found = remote_files(repo, kind, remote_code)
        probe = next(iter(found.sizes), "README.md")
        # a gated repository lists its files but refuses them
        get_hf_file_metadata(hf_hub_url(repo, probe, repo_type=kind, revision=found.sha))
    except GatedRepoError:
        out.problems.append(
            f"{flag} {repo}: a gated {what}; accept the license at {endpoint()}/"
            f"{'datasets/' if kind == 'dataset' else ''}{repo} and set HF_TOKEN"
        )
        return
    except RepositoryNotFoundError:
        hint = "" if _token() else " (if it is private, set HF_TOKEN)"
        out.problems.append(f"{flag} {repo}: no such {what} on the Hub{hint}{did_you_mean(repo, kind)}")
        return
    except (httpx.HTTPError, OfflineModeIsEnabled, LocalEntryNotFoundError, OSError) as e:
        if isinstance(e, HfHubHTTPError) and e.response is not None and e.response.status_code < 500:
            out.problems.append(f"{flag} {repo}: the Hub refused it: {str(e).splitlines()[0]}")
        elif is_cached(repo, kind):
            out.notes.append(f"{flag} {repo}: the Hub can't be reached ({type(e).__name__}): using the cached copy")
        else:
            out.problems.append(f"{flag} {repo}: the Hub can't be reached ({endpoint()}) and it is not in the cache")
        return
    left = found.bytes(found.left)
    out.download_bytes += left
    out.files += len(found.left)
    if found.left:
        out.notes.append(f"{flag} {repo}: {left / GIB:.1f} GB to download ({len(found.left)} files)")
    else:
        out.notes.append(f"{flag} {repo}: in the cache")


def hub_names(base_model: str, dataset: str) -> bool:
    """Whether the model or the dataset is a Hub name (and so worth asking the Hub about)."""
    return is_hub_name(base_model) or is_hub_dataset(dataset)


def check_hub(base_model: str, dataset: str, remote_code: bool = False) -> HubCheck:
    """The base model and the dataset, where they are Hub names, and the room their download needs."""
    from .data.scan import hub_dataset

    out = HubCheck()
    if is_hub_name(base_model):
        check_repo(base_model, "model", remote_code, out)
    if is_hub_dataset(dataset):
        check_repo(hub_dataset(dataset)[0], "dataset", False, out)
    if out.download_bytes and not out.problems:
        cache = hub_cache_dir()
        problem = room_problem(out.download_bytes, cache, free_bytes(cache))
        if problem:
            out.problems.append(problem)
    return out


def room_problem(need: float, cache: Path, free: float) -> str | None:
    if need <= free:
        return None
    return (
        f"the download needs {need / GIB:.1f} GB in {cache}, {free / GIB:.1f} GB free; "
        "free some space or point HF_HOME at a larger disk"
    )
