"""The Hub stand-in (tests/hub_stand_in.py) driven by the real huggingface_hub and datasets clients.

Each client runs in a subprocess with `HubStandIn.client_env()`, since both libraries read HF_ENDPOINT at import
time; a client script prints one JSON line with what it saw.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hub_stand_in import HubStandIn, git_blob_sha1

# http_get reads the body in chunks of huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE (10 MiB) and only writes whole
# chunks: bytes of a partial chunk are lost when the connection drops, so a resume with Range needs more than one
# chunk to have arrived first.
CHUNK = 10 * 1024 * 1024


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubStandIn]:
    with HubStandIn(tmp_path / "hub") as stand_in:
        yield stand_in


def run_client(hub: HubStandIn, home: Path, code: str, *, token: str | None = None) -> dict[str, Any]:
    """Run `code` in a fresh interpreter pointed at the stand-in; returns the JSON of its last stdout line.

    `code` may call `catch(fn)`, which returns None or the error `fn` raised as [class name, HTTP status, message].
    """
    proc = subprocess.run(
        [sys.executable, "-c", CATCH + textwrap.dedent(code)],
        env=hub.client_env(home, token=token),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


CATCH = """
def catch(fn):
    try:
        fn()
    except Exception as e:
        response = getattr(e, "response", None)
        return [type(e).__name__, getattr(response, "status_code", None), str(e)]
    return None
"""


def test_model_info_snapshot_and_missing_file(hub: HubStandIn, tmp_path: Path) -> None:
    files = {
        "config.json": json.dumps({"model_type": "llama", "hidden_size": 8}).encode(),
        "tokenizer.json": b'{"version": "1.0"}',
        "model.safetensors": bytes(range(256)) * 4,  # LFS: served through the CDN redirect
        "nested/notes.txt": b"hello",
    }
    hub.add_repo("org/tiny", files)
    out = run_client(
        hub,
        tmp_path / "home",
        """
        import json, os
        from huggingface_hub import HfApi, HfFileSystem, hf_hub_download, snapshot_download
        api = HfApi()
        fs = HfFileSystem()
        with fs.open("org/tiny/model.safetensors", "rb") as f:
            f.seek(1000)
            tail = f.read()
        info = api.model_info("org/tiny", files_metadata=True)
        at_rev = api.model_info("org/tiny", revision=info.sha)
        folder = snapshot_download("org/tiny")
        snapshot = {}
        for d, _, names in os.walk(folder):
            for f in names:
                with open(os.path.join(d, f), "rb") as fh:
                    snapshot[os.path.relpath(os.path.join(d, f), folder).replace(os.sep, "/")] = fh.read().hex()
        paths_info = api.get_paths_info("org/tiny", ["config.json", "nested", "x"])
        print(json.dumps({
            "sha": info.sha, "sha_at_rev": at_rev.sha, "gated": info.gated, "private": info.private,
            "siblings": {s.rfilename: [s.size, s.blob_id, s.lfs and s.lfs.sha256] for s in info.siblings},
            "folder": folder, "snapshot": snapshot,
            "paths_info": [[p.path, type(p).__name__] for p in paths_info],
            "fs_glob": fs.glob("org/tiny/**/*.txt"),
            "fs_info": fs.info("org/tiny/tokenizer.json")["size"],
            "fs_tail": tail.hex(),
            "missing": catch(lambda: hf_hub_download("org/tiny", "nope.json")),
            "bad_rev": catch(lambda: hf_hub_download("org/tiny", "config.json", revision="v9")),
        }))
        """,
    )
    assert out["sha"] == out["sha_at_rev"] == hub.sha("org/tiny")
    assert out["gated"] is False and out["private"] is False
    assert {name: entry[0] for name, entry in out["siblings"].items()} == {n: len(c) for n, c in files.items()}
    assert out["siblings"]["config.json"] == [len(files["config.json"]), git_blob_sha1(files["config.json"]), None]
    assert out["siblings"]["model.safetensors"][2] == hashlib.sha256(files["model.safetensors"]).hexdigest()
    assert out["folder"].endswith(hub.sha("org/tiny"))
    assert out["snapshot"] == {name: content.hex() for name, content in files.items()}
    assert out["paths_info"] == [["config.json", "RepoFile"], ["nested", "RepoFolder"]]
    assert out["fs_glob"] == ["org/tiny/nested/notes.txt"]
    assert out["fs_info"] == len(files["tokenizer.json"])
    assert bytes.fromhex(out["fs_tail"]) == files["model.safetensors"][1000:]
    assert any(r.range == "bytes=1000-1023" for r in hub.requests_to("/__cdn/", "GET"))  # HfFileSystem reads ranges
    assert out["missing"][:2] == ["RemoteEntryNotFoundError", 404]
    assert out["bad_rev"][:2] == ["RevisionNotFoundError", 404]
    # The weights went the LFS way: a 302 on resolve, then a GET on the CDN host without the Hub's headers.
    assert [r.status for r in hub.requests_to("/resolve/", "HEAD") if r.path.endswith(".safetensors")] == [302]
    cdn = hub.requests_to("/__cdn/", "GET")
    assert cdn and all(r.headers["host"].startswith("localhost:") and r.authorization is None for r in cdn)
    assert hub.stray_requests == []


def test_resume_after_dropped_connection(hub: HubStandIn, tmp_path: Path) -> None:
    weights = bytes(i % 251 for i in range(CHUNK + 300_000))
    config = b'{"hidden_size": 8, "num_layers": 2}'
    hub.add_repo("org/big", {"model.safetensors": weights, "config.json": config})
    hub.drop_after("org/big", "model.safetensors", CHUNK + 1234)
    hub.drop_after("org/big", "config.json", 5)
    out = run_client(
        hub,
        tmp_path / "home",
        """
        import json
        from huggingface_hub import hf_hub_download
        print(json.dumps({name: hf_hub_download("org/big", name) for name in ("model.safetensors", "config.json")}))
        """,
    )
    assert Path(out["model.safetensors"]).read_bytes() == weights
    assert Path(out["config.json"]).read_bytes() == config
    gets = hub.requests_to("/__cdn/", "GET")
    assert [(r.range, r.status) for r in gets] == [(None, 200), (f"bytes={CHUNK}-", 206)]
    # Less than a chunk had arrived: the client starts over, without Range.
    gets = hub.requests_to("/org/big/resolve/main/config.json", "GET")
    assert [(r.range, r.status) for r in gets] == [(None, 200), (None, 200)]


def test_gated_private_and_missing_repos(hub: HubStandIn, tmp_path: Path) -> None:
    hub.add_repo("org/gated", {"config.json": "{}"}, gated="auto")
    hub.add_repo("org/granted", {"config.json": '{"ok": true}'}, gated="manual")
    hub.settings("org/granted").gated_granted = True
    hub.add_repo("org/secret", {"config.json": '{"secret": true}'}, private=True)
    out = run_client(
        hub,
        tmp_path / "home",
        f"""
        import json
        from huggingface_hub import HfApi, hf_hub_download, snapshot_download
        T = {hub.token!r}
        api = HfApi()
        print(json.dumps({{
            "gated_info": api.model_info("org/gated").gated,
            "gated_anon": catch(lambda: hf_hub_download("org/gated", "config.json")),
            "gated_token": catch(lambda: hf_hub_download("org/gated", "config.json", token=T)),
            "gated_snapshot": catch(lambda: snapshot_download("org/gated")),
            "granted_anon": catch(lambda: hf_hub_download("org/granted", "config.json")),
            "granted_token": open(hf_hub_download("org/granted", "config.json", token=T)).read(),
            "private_anon": catch(lambda: hf_hub_download("org/secret", "config.json")),
            "private_info_anon": catch(lambda: api.model_info("org/secret")),
            "private_token": open(hf_hub_download("org/secret", "config.json", token=T)).read(),
            "private_info_token": api.model_info("org/secret", token=T).private,
            "bad_token": catch(lambda: api.model_info("org/secret", token="hf_wrong")),
            "missing_anon": catch(lambda: hf_hub_download("org/nope", "config.json")),
            "missing_token": catch(lambda: api.model_info("org/nope", token=T)),
            "missing_dataset": catch(lambda: api.dataset_info("org/gated")),
        }}))
        """,
    )
    assert out["gated_info"] == "auto"
    assert out["gated_anon"][:2] == ["GatedRepoError", 401]
    assert out["gated_token"][:2] == ["GatedRepoError", 403]
    assert f"{hub.endpoint}/org/gated" in out["gated_token"][2]  # where to accept the conditions
    assert out["gated_snapshot"][0] == "GatedRepoError"
    assert out["granted_anon"][:2] == ["GatedRepoError", 401]
    assert out["granted_token"] == '{"ok": true}'
    assert out["private_anon"][:2] == ["RepositoryNotFoundError", 401]
    assert out["private_info_anon"][:2] == ["RepositoryNotFoundError", 401]
    assert out["private_token"] == '{"secret": true}' and out["private_info_token"] is True
    assert out["bad_token"][:2] == ["HfHubHTTPError", 401]
    assert out["missing_anon"][:2] == ["RepositoryNotFoundError", 401]
    assert out["missing_token"][:2] == ["RepositoryNotFoundError", 404]
    assert out["missing_dataset"][:2] == ["RepositoryNotFoundError", 401]  # a model repo is no dataset repo
    # The token was sent only where the client was given it, and it made the difference.
    secret = [(r.authorization is not None, r.status) for r in hub.requests_to("/org/secret/resolve/", "HEAD")]
    assert secret == [(False, 401), (True, 200)]
    assert all(r.authorization in (None, f"Bearer {hub.token}", "Bearer hf_wrong") for r in hub.requests)


def test_load_dataset_splits_slices_and_subsets(hub: HubStandIn, tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = "".join(json.dumps({"text": f"row {i}", "n": i}) + "\n" for i in range(5))
    hub.add_repo(
        "org/plain",
        {"data/train.jsonl": rows, "data/test.jsonl": json.dumps({"text": "t", "n": 9}) + "\n"},
        repo_type="dataset",
    )
    readme = textwrap.dedent(
        """\
        ---
        configs:
        - config_name: default
          data_files:
          - split: train
            path: data/train.jsonl
        - config_name: chat
          data_files:
          - split: train
            path: chat/*.jsonl
        ---
        # Tiny dataset with two subsets
        """
    )
    chat = "".join(json.dumps({"text": f"chat {i}", "n": 100 + i}) + "\n" for i in range(3))
    hub.add_repo(
        "org/subsets", {"README.md": readme, "data/train.jsonl": rows, "chat/part0.jsonl": chat}, repo_type="dataset"
    )
    buffer = io.BytesIO()
    pq.write_table(pa.table({"text": ["p0", "p1", "p2", "p3"]}), buffer)
    hub.add_repo("org/parquet", {"data/train-00000-of-00001.parquet": buffer.getvalue()}, repo_type="dataset")
    out = run_client(
        hub,
        tmp_path / "home",
        """
        import json
        from datasets import load_dataset
        plain = load_dataset("org/plain")
        print(json.dumps({
            "splits": {name: split.num_rows for name, split in plain.items()},
            "train": list(load_dataset("org/plain", split="train")["text"]),
            "slice": list(load_dataset("org/plain", split="train[:2]")["text"]),
            "default": list(load_dataset("org/subsets", split="train")["text"]),
            "chat": list(load_dataset("org/subsets", "chat", split="train")["text"]),
            "parquet": list(load_dataset("org/parquet", split="train[1:3]")["text"]),
        }))
        """,
    )
    assert out["splits"] == {"train": 5, "test": 1}
    assert out["train"] == [f"row {i}" for i in range(5)]
    assert out["slice"] == ["row 0", "row 1"]
    assert out["default"] == [f"row {i}" for i in range(5)]
    assert out["chat"] == ["chat 0", "chat 1", "chat 2"]
    assert out["parquet"] == ["p1", "p2"]
    # Only the dataset viewer's /info look-up tried to leave, and the proxy route refused it.
    assert hub.stray_requests and all("datasets-server." in r.path for r in hub.stray_requests)
    assert {r.status for r in hub.stray_requests} == {403}


def test_create_repo_and_upload_folder(hub: HubStandIn, tmp_path: Path) -> None:
    folder = tmp_path / "adapter"
    (folder / "sub").mkdir(parents=True)
    (folder / "adapter_config.json").write_text('{"r": 8}')
    (folder / "adapter_model.safetensors").write_bytes(b"\x00\x01" * 500)
    (folder / "sub" / "notes.md").write_text("trained")
    out = run_client(
        hub,
        tmp_path / "home",
        f"""
        import json
        from huggingface_hub import HfApi, hf_hub_download
        api = HfApi()
        url = api.create_repo("org/adapter", private=True)
        first = api.upload_folder(repo_id="org/adapter", folder_path={str(folder)!r}, commit_message="add")
        again = api.upload_folder(repo_id="org/adapter", folder_path={str(folder)!r}, commit_message="same")
        print(json.dumps({{
            "whoami": api.whoami()["name"],
            "url": str(url), "repo_id": url.repo_id,
            "first": first.oid, "again": again.oid,
            "exists": catch(lambda: api.create_repo("org/adapter")),
            "exist_ok": str(api.create_repo("org/adapter", exist_ok=True)),
            "info_private": api.model_info("org/adapter").private,
            "weights": open(hf_hub_download("org/adapter", "adapter_model.safetensors"), "rb").read().hex(),
            "anon": catch(lambda: HfApi(token=False).model_info("org/adapter")),
        }}))
        """,
        token=hub.token,
    )
    repo = hub.repo_dir("org/adapter")
    assert out["whoami"] == hub.user
    assert out["url"] == f"{hub.endpoint}/org/adapter" and out["repo_id"] == "org/adapter"
    assert {p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file()} == {
        "adapter_config.json",
        "adapter_model.safetensors",
        "sub/notes.md",
    }
    assert (repo / "adapter_model.safetensors").read_bytes() == b"\x00\x01" * 500
    assert out["first"] == out["again"] == hub.sha("org/adapter")  # nothing changed: no second commit
    assert len(hub.requests_to("/api/models/org/adapter/commit/main", "POST")) == 1
    assert out["exists"][:2] == ["HfHubHTTPError", 409]
    assert out["exist_ok"] == out["url"]
    assert out["info_private"] is True
    assert bytes.fromhex(out["weights"]) == b"\x00\x01" * 500
    assert out["anon"][:2] == ["RepositoryNotFoundError", 401]
