"""A local stand-in for the Hugging Face Hub's HTTP protocol, for tests that must not touch the network.

`HubStandIn(root)` serves plain directories as Hub repos, speaking enough of the real protocol that an unmodified
`huggingface_hub` 1.33 client (`hf_hub_download`, `snapshot_download`, `model_info`/`dataset_info`/`repo_info`,
`list_repo_tree`, `get_paths_info`, `HfFileSystem`, `create_repo`, `upload_folder`) and `datasets.load_dataset` on a
Hub dataset repo work against it::

    root/models/ORG/NAME/<files>      -> model repo   "ORG/NAME"
    root/datasets/ORG/NAME/<files>    -> dataset repo "ORG/NAME" (repo_type="dataset")

What is served, as the library source reads it (huggingface_hub/file_download.py, hf_api.py, utils/_http.py):

* `HEAD|GET /{repo}/resolve/{rev}/{path}` (`/datasets/{repo}/...` for datasets): a regular file answers 200 with
  `ETag` (git blob sha1), `X-Repo-Commit`, `Content-Length`, and honours `Range` (206 + `Content-Range`, 416 past
  the end). A file whose name ends in one of `lfs_suffixes` is served as the Hub serves LFS files: 302 with
  `X-Linked-Etag` (sha256), `X-Linked-Size` and a `Location` on `cdn_host` ("localhost", another host than the
  endpoint's 127.0.0.1, so the client treats it as a CDN: it does not follow the HEAD redirect and drops the
  Authorization header for the GET). No Xet headers are ever sent, so the client always downloads over plain HTTP.
* `GET /api/{type}s/{repo}[/revision/{rev}][?blobs=true]`: info JSON (id, sha, private, gated, siblings...).
* `GET /api/{type}s/{repo}/tree/{rev}[/{path}][?recursive=true]` and `POST .../paths-info/{rev}`.
* `POST /api/repos/create`, `POST .../preupload/{rev}` (always uploadMode "regular": no LFS/Xet upload),
  `POST .../commit/{rev}` (NDJSON; "file" base64 entries, "deletedFile", "deletedFolder"), `POST /api/validate-yaml`,
  `GET /api/whoami-v2`. Writes need the configured token.

Access rules, as the real Hub answers them:

* An `Authorization` header with another token than `token`: 401, X-Error-Message "Invalid credentials in
  Authorization header" (on every route).
* Missing repo, or private repo without the token: 401 + X-Error-Code RepoNotFound for anonymous callers, 404 +
  RepoNotFound for authenticated ones -> `RepositoryNotFoundError`.
* Gated repo (`settings(repo).gated = "auto"`): info, tree and paths-info still answer (with "gated": "auto");
  file downloads answer 401 + GatedRepo to anonymous callers ("...You must be authenticated...") and 403 + GatedRepo
  with the URL to request access to authenticated callers, unless `settings(repo).gated_granted` -> `GatedRepoError`.
* Unknown revision: 404 RevisionNotFound. Missing file: 404 EntryNotFound (with X-Repo-Commit, as the Hub sends it).

Revisions: "main" is the current state of the directory; each commit made through the API moves "main" to a new
fake sha (sha1 of the repo key and a counter). Every sha the repo has had stays resolvable, always to the current
files: there is no history.

The client must run in a subprocess whose environment comes from `client_env()`: `huggingface_hub.constants`
(ENDPOINT, HUGGINGFACE_CO_URL_TEMPLATE, HF_URL_HOSTS) and `datasets.config` (HF_ENDPOINT, HUB_DATASETS_URL) are
computed from `HF_ENDPOINT` at import time, and `datasets` builds further URLs from them, so patching attributes in
an already-imported process misses copies. The environment also:

* sets `HF_HUB_OFFLINE=0`/`HF_DATASETS_OFFLINE=0` (tests/conftest.py sets them to 1), a fresh `HF_HOME`, drops any
  inherited cache paths and tokens (`HF_TOKEN` only when asked for), sets `HF_HUB_DISABLE_XET=1`,
  `HF_HUB_DISABLE_TELEMETRY=1` and `HF_UPDATE_DOWNLOAD_COUNTS=0` (else `datasets.load` HEADs s3.amazonaws.com);
* routes every other request to this server as an HTTP(S) proxy (`NO_PROXY` keeps 127.0.0.1 and the CDN host
  direct): `datasets` asks `http://datasets-server.<endpoint host>/info` for exported infos, which can't resolve
  here. Such requests are refused (403) and kept in `requests` with `stray=True`, so a test can assert that nothing
  tried to leave the machine.

`requests` records every request (method, path, query, headers with lower-case names, status); `drop_after()`
makes the next GETs of a file close the connection after N body bytes so that a test can watch the client resume.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_TOKEN = "hf_standintokenstandintokenstandin0"
DEFAULT_USER = "stand-in-user"
# As the Hub's default .gitattributes: these are stored with LFS, hence served through a CDN redirect.
DEFAULT_LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".onnx", ".parquet", ".arrow")
FIXED_DATE = "2025-01-01T00:00:00.000Z"
REPO_TYPES = ("model", "dataset", "space")
GatedMode = Literal["auto", "manual", False]


@dataclass
class RecordedRequest:
    """One request as the server received it; `status` is filled in when the answer is sent."""

    method: str
    path: str  # unquoted URL path, no query
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    stray: bool = False  # addressed to another host, through the proxy route
    body: bytes = b""
    status: int | None = None

    @property
    def range(self) -> str | None:
        return self.headers.get("range")

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


@dataclass
class RepoSettings:
    """Behaviour of one repo; mutate the object returned by `HubStandIn.settings()`."""

    private: bool = False
    gated: GatedMode = False
    gated_granted: bool = False  # whether the token's user was granted access to the gated repo
    shas: list[str] = field(default_factory=list)  # every commit the repo has had, latest last


@dataclass
class _Drop:
    nbytes: int
    times: int


@dataclass(frozen=True)
class _FileInfo:
    size: int
    blob_id: str  # git blob sha1 of the content, or of the LFS pointer for LFS files
    sha256: str | None  # set for LFS files only
    pointer_size: int | None


class _StandInError(ValueError):
    """Stops a handler with a Hub-shaped error answer (a ValueError for bad input to the public API)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})  # more fields of the JSON body


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _is_true(values: list[str] | None) -> bool:
    return values is not None and len(values) > 0 and values[-1].lower() in ("1", "true", "yes")


class HubStandIn:
    """A threaded HTTP server on 127.0.0.1 that serves `root` as the Hub; use it as a context manager."""

    def __init__(
        self,
        root: Path,
        *,
        token: str = DEFAULT_TOKEN,
        user: str = DEFAULT_USER,
        lfs_suffixes: tuple[str, ...] = DEFAULT_LFS_SUFFIXES,
        cdn_host: str = "localhost",
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.user = user
        self.lfs_suffixes = lfs_suffixes
        self.cdn_host = cdn_host
        self.requests: list[RecordedRequest] = []
        self._settings: dict[tuple[str, str], RepoSettings] = {}
        self._drops: dict[tuple[str, str, str], _Drop] = {}
        self._cdn: dict[str, tuple[str, str, str]] = {}  # sha256 -> (repo_type, repo_id, path)
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def start(self) -> HubStandIn:
        stand_in = self

        class Handler(_Handler):
            hub = stand_in

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # daemon threads: stop() never waits on one
        self._thread = threading.Thread(target=self._server.serve_forever, name="hub-stand-in", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> HubStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("HubStandIn is not started")
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cdn_endpoint(self) -> str:
        return f"http://{self.cdn_host}:{self.port}"

    # -- repos and behaviours --------------------------------------------------------------------------------------

    def repo_dir(self, repo_id: str, repo_type: str = "model") -> Path:
        org, name = _split_repo_id(repo_id)
        return self.root / f"{repo_type}s" / org / name

    def add_repo(
        self,
        repo_id: str,
        files: Mapping[str, bytes | str] | None = None,
        *,
        repo_type: str = "model",
        private: bool | None = None,
        gated: GatedMode | None = None,
    ) -> Path:
        """Create (or extend) a repo directory with `files` ({path in repo: content}); `private`/`gated` are set
        when given (a new repo is public and not gated)."""
        repo = self.repo_dir(repo_id, repo_type)
        repo.mkdir(parents=True, exist_ok=True)
        for rel, content in (files or {}).items():
            target = repo / _safe_relpath(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content.encode() if isinstance(content, str) else content)
        settings = self.settings(repo_id, repo_type)
        if private is not None:
            settings.private = private
        if gated is not None:
            settings.gated = gated
        return repo

    def settings(self, repo_id: str, repo_type: str = "model") -> RepoSettings:
        """The mutable behaviour of a repo (private, gated, gated_granted); the repo need not exist yet."""
        key = (repo_type, repo_id)
        with self._lock:
            if key not in self._settings:
                first = hashlib.sha1(f"{repo_type}s/{repo_id}@0".encode()).hexdigest()
                self._settings[key] = RepoSettings(shas=[first])
            return self._settings[key]

    def sha(self, repo_id: str, repo_type: str = "model") -> str:
        """The commit "main" points at."""
        return self.settings(repo_id, repo_type).shas[-1]

    def drop_after(self, repo_id: str, filename: str, nbytes: int, *, repo_type: str = "model", times: int = 1) -> None:
        """The next `times` GETs of the file send full headers, then `nbytes` of the body, then close the connection."""
        with self._lock:
            self._drops[(repo_type, repo_id, filename)] = _Drop(nbytes, times)

    def requests_to(self, fragment: str, method: str | None = None) -> list[RecordedRequest]:
        """Recorded requests whose path contains `fragment` (and of `method`, if given)."""
        return [r for r in list(self.requests) if fragment in r.path and (method is None or r.method == method)]

    @property
    def stray_requests(self) -> list[RecordedRequest]:
        return [r for r in list(self.requests) if r.stray]

    def client_env(
        self, hf_home: Path, *, token: str | None = None, base: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """Environment for a client subprocess talking to this server (see the module docstring)."""
        env = dict(os.environ if base is None else base)
        dropped = {
            "HF_TOKEN",
            "HUGGING_FACE_HUB_TOKEN",
            "HF_TOKEN_PATH",
            "HF_STORED_TOKENS_PATH",
            "HF_HUB_CACHE",
            "HUGGINGFACE_HUB_CACHE",
            "HF_DATASETS_CACHE",
            "HF_XET_CACHE",
            "HF_ASSETS_CACHE",
            "HF_MODULES_CACHE",
            "TRANSFORMERS_CACHE",
            "HF_HUB_ENABLE_HF_TRANSFER",
        }
        for name in list(env):
            if name in dropped or name.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
                del env[name]
        env.update(
            {
                "HF_ENDPOINT": self.endpoint,
                "HF_HOME": str(hf_home),
                "HF_HUB_OFFLINE": "0",
                "HF_DATASETS_OFFLINE": "0",
                "HF_HUB_DISABLE_XET": "1",
                "HF_HUB_DISABLE_TELEMETRY": "1",
                "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                "HF_UPDATE_DOWNLOAD_COUNTS": "0",
                "HTTP_PROXY": self.endpoint,
                "HTTPS_PROXY": self.endpoint,
                "NO_PROXY": f"127.0.0.1,{self.cdn_host}",
            }
        )
        if token is not None:
            env["HF_TOKEN"] = token
        return env

    # -- repo content ----------------------------------------------------------------------------------------------

    def _files(self, repo: Path) -> list[str]:
        return sorted(
            p.relative_to(repo).as_posix()
            for p in repo.rglob("*")
            if p.is_file() and ".git" not in p.relative_to(repo).parts
        )

    def _is_lfs(self, rel: str) -> bool:
        return rel.endswith(self.lfs_suffixes)

    def _file_info(self, repo: Path, rel: str) -> _FileInfo:
        # Hashed on every call, no cache: a test may rewrite a file within the mtime's granularity.
        data = (repo / rel).read_bytes()
        if self._is_lfs(rel):
            sha256 = hashlib.sha256(data).hexdigest()
            pointer = _lfs_pointer(sha256, len(data))
            return _FileInfo(len(data), git_blob_sha1(pointer), sha256, len(pointer))
        return _FileInfo(len(data), git_blob_sha1(data), None, None)

    def _entry(self, repo: Path, rel: str, *, expand: bool, sha: str) -> dict[str, Any]:
        """A /tree or /paths-info entry, shaped as the Hub's."""
        if (repo / rel).is_dir():
            entry: dict[str, Any] = {"type": "directory", "oid": hashlib.sha1(rel.encode()).hexdigest(), "size": 0}
        else:
            info = self._file_info(repo, rel)
            entry = {"type": "file", "oid": info.blob_id, "size": info.size}
            if info.sha256 is not None:
                entry["lfs"] = {"oid": info.sha256, "size": info.size, "pointerSize": info.pointer_size}
        entry["path"] = rel
        if expand:
            entry["lastCommit"] = {"id": sha, "title": "Stand-in commit", "date": FIXED_DATE}
        return entry


class _Handler(BaseHTTPRequestHandler):
    hub: HubStandIn
    _record: RecordedRequest  # of the request being handled
    _method: str
    _body: bytes
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects from the Hub
    timeout = 60  # an idle keep-alive connection must not hold a thread forever

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's parameter name
        pass  # quiet: the request log is `hub.requests`

    # -- plumbing --------------------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_CONNECT(self) -> None:
        # An https:// request that the proxy variables sent here: refuse it, nothing leaves the machine.
        self._handle("CONNECT")

    def _handle(self, method: str) -> None:
        split = urlsplit(self.path)
        stray = method == "CONNECT" or self.path.startswith(("http://", "https://"))
        record = RecordedRequest(
            method=method,
            path=self.path if stray else unquote(split.path),
            query=parse_qs(split.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            stray=stray,
        )
        self.hub.requests.append(record)
        self._record = record
        self._method = method
        self._body = record.body = self._read_body() if method in ("POST", "PUT") else b""
        try:
            if stray:
                raise _StandInError(403, f"Hub stand-in: no network, refused {method} {self.path}")
            self._route(split.path, parse_qs(split.query))
        except _StandInError as err:
            self._error(err)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away mid-answer
        except Exception as exc:  # a stand-in bug: 501 is not retried by the client, so the test fails fast
            self._error(_StandInError(501, f"Hub stand-in failed: {type(exc).__name__}: {exc}"))

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None) -> None:
        self._record.status = status
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self._method != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> None:
        self._send(
            status, json.dumps(obj).encode(), {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        )

    def _error(self, err: _StandInError) -> None:
        headers = {"X-Error-Message": err.message, **err.headers}
        if err.code is not None:
            headers["X-Error-Code"] = err.code
        if err.status == 403 and self._method == "CONNECT":
            self.close_connection = True
        self._json({"error": err.message, **err.extra}, err.status, headers)

    # -- auth ------------------------------------------------------------------------------------------------------

    def _authenticated(self) -> bool:
        """Whether the configured token was sent; a wrong token is refused outright, as the Hub does."""
        auth = self.headers.get("Authorization")
        if auth is None:
            return False
        if auth != f"Bearer {self.hub.token}":
            raise _StandInError(401, "Invalid credentials in Authorization header")
        return True

    def _repo(self, repo_type: str, repo_id: str) -> tuple[Path, RepoSettings, bool]:
        """The repo dir, its settings and whether the caller is authenticated; raises RepoNotFound as the Hub."""
        authed = self._authenticated()
        repo = self.hub.repo_dir(repo_id, repo_type)
        settings = self.hub.settings(repo_id, repo_type)
        if not repo.is_dir() or (settings.private and not authed):
            # Anonymous callers get 401 for missing and private repos alike, so that private repos stay hidden.
            if authed:
                raise _StandInError(404, "Repository not found", "RepoNotFound")
            raise _StandInError(401, "Invalid username or password.", "RepoNotFound")
        return repo, settings, authed

    def _revision(self, settings: RepoSettings, revision: str) -> str:
        if revision == "main":
            return settings.shas[-1]
        if revision in settings.shas:
            return revision
        raise _StandInError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    # -- routing ---------------------------------------------------------------------------------------------------

    def _route(self, raw_path: str, query: dict[str, list[str]]) -> None:
        # Split before unquoting: the client quotes revisions and tree paths with safe="" (a "/" becomes %2F).
        seg = [unquote(s) for s in raw_path.split("/")[1:]]
        method = self._method
        if seg[:1] == ["api"]:
            self._route_api(seg[1:], query)
        elif seg[:1] == ["__cdn"] and len(seg) == 2 and method in ("GET", "HEAD"):
            self._cdn(seg[1])
        elif method in ("GET", "HEAD") and len(seg) >= 5 and seg[0] in ("datasets", "spaces") and seg[3] == "resolve":
            self._resolve(seg[0][:-1], f"{seg[1]}/{seg[2]}", seg[4], "/".join(seg[5:]))
        elif method in ("GET", "HEAD") and len(seg) >= 4 and seg[2] == "resolve":
            self._resolve("model", f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:]))
        else:
            raise _StandInError(404, f"Hub stand-in: no route for {method} {raw_path}")

    def _route_api(self, seg: list[str], query: dict[str, list[str]]) -> None:
        method = self._method
        if seg == ["whoami-v2"] and method == "GET":
            self._whoami()
        elif seg == ["validate-yaml"] and method == "POST":
            self._json({"errors": [], "warnings": []})
        elif seg == ["repos", "create"] and method == "POST":
            self._create_repo()
        elif len(seg) >= 3 and seg[0] in ("models", "datasets", "spaces"):
            repo_type, repo_id, rest = seg[0][:-1], f"{seg[1]}/{seg[2]}", seg[3:]
            if not rest and method == "GET":
                self._info(repo_type, repo_id, "main", query)
            elif rest[:1] == ["revision"] and len(rest) >= 2 and method == "GET":
                self._info(repo_type, repo_id, "/".join(rest[1:]), query)
            elif rest[:1] == ["tree"] and len(rest) >= 2 and method == "GET":
                self._tree(repo_type, repo_id, rest[1], "/".join(rest[2:]), query)
            elif rest[:1] == ["paths-info"] and len(rest) == 2 and method == "POST":
                self._paths_info(repo_type, repo_id, rest[1])
            elif rest[:1] == ["preupload"] and len(rest) == 2 and method == "POST":
                self._preupload(repo_type, repo_id, rest[1])
            elif rest[:1] == ["commit"] and len(rest) == 2 and method == "POST":
                self._commit(repo_type, repo_id, rest[1])
            else:
                raise _StandInError(404, f"Hub stand-in: no route for {method} /api/{'/'.join(seg)}")
        else:
            raise _StandInError(404, f"Hub stand-in: no route for {method} /api/{'/'.join(seg)}")

    # -- read endpoints --------------------------------------------------------------------------------------------

    def _info(self, repo_type: str, repo_id: str, revision: str, query: dict[str, list[str]]) -> None:
        repo, settings, _ = self._repo(repo_type, repo_id)
        sha = self._revision(settings, revision)
        blobs = _is_true(query.get("blobs"))
        siblings = []
        for rel in self.hub._files(repo):
            sibling: dict[str, Any] = {"rfilename": rel}
            if blobs:
                info = self.hub._file_info(repo, rel)
                sibling.update(size=info.size, blobId=info.blob_id)
                if info.sha256 is not None:
                    sibling["lfs"] = {"sha256": info.sha256, "size": info.size, "pointerSize": info.pointer_size}
            siblings.append(sibling)
        body: dict[str, Any] = {
            "_id": sha[:24],
            "id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": sha,
            "lastModified": FIXED_DATE,
            "createdAt": FIXED_DATE,
            "private": settings.private,
            "gated": settings.gated,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
        }
        if repo_type == "model":
            body["modelId"] = repo_id
        if blobs:
            body["usedStorage"] = sum(s["size"] for s in siblings)
        self._json(body)

    def _tree(self, repo_type: str, repo_id: str, revision: str, path: str, query: dict[str, list[str]]) -> None:
        repo, settings, _ = self._repo(repo_type, repo_id)
        sha = self._revision(settings, revision)
        path = path.strip("/")
        base = repo / _safe_relpath(path) if path else repo
        if not base.is_dir():  # the Hub answers a file path, too, with EntryNotFound
            raise _StandInError(404, f'{path} does not exist on "{revision}"', "EntryNotFound")
        children = base.rglob("*") if _is_true(query.get("recursive")) else base.iterdir()
        rels = sorted(p.relative_to(repo).as_posix() for p in children if ".git" not in p.relative_to(repo).parts)
        expand = _is_true(query.get("expand"))
        self._json([self.hub._entry(repo, rel, expand=expand, sha=sha) for rel in rels])

    def _paths_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        repo, settings, _ = self._repo(repo_type, repo_id)
        sha = self._revision(settings, revision)
        if self.headers.get("Content-Type", "").startswith("application/json"):
            payload = json.loads(self._body or b"{}")
            paths, expand = list(payload.get("paths", [])), bool(payload.get("expand"))
        else:  # the client posts a form: paths=a&paths=b&expand=false
            form = parse_qs(self._body.decode())
            paths, expand = form.get("paths", []), _is_true(form.get("expand"))
        out = []
        for path in paths:
            rel = path.strip("/")
            if rel and (repo / _safe_relpath(rel)).exists():  # missing paths are left out, not an error
                out.append(self.hub._entry(repo, rel, expand=expand, sha=sha))
        self._json(out)

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        repo, settings, authed = self._repo(repo_type, repo_id)
        sha = self._revision(settings, revision)
        if settings.gated and not (authed and settings.gated_granted):
            url = f"{self.hub.endpoint}/{'' if repo_type == 'model' else repo_type + 's/'}{repo_id}"
            if authed:
                raise _StandInError(
                    403,
                    f"Access to {repo_type} {repo_id} is restricted and you are not in the authorized list. "
                    f"Visit {url} to ask for access.",
                    "GatedRepo",
                )
            raise _StandInError(
                401,
                f"Access to {repo_type} {repo_id} is restricted. You must have access to it and be authenticated "
                f"to access it. Please log in. Visit {url} to ask for access.",
                "GatedRepo",
            )
        target = repo / _safe_relpath(path) if path else repo
        if not path or not target.is_file():
            raise _StandInError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": sha})
        info = self.hub._file_info(repo, path)
        if info.sha256 is not None:
            # LFS: redirect to a "CDN" on another host; the client takes size and etag from the X-Linked-* headers.
            with self.hub._lock:
                self.hub._cdn[info.sha256] = (repo_type, repo_id, path)
            self._send(
                302,
                headers={
                    "Location": f"{self.hub.cdn_endpoint}/__cdn/{info.sha256}",
                    "X-Repo-Commit": sha,
                    "X-Linked-Etag": f'"{info.sha256}"',
                    "X-Linked-Size": str(info.size),
                    "ETag": f'"{info.blob_id}"',
                },
            )
            return
        self._serve_file(target, repo_type, repo_id, path, {"ETag": f'"{info.blob_id}"', "X-Repo-Commit": sha})

    def _cdn(self, sha256: str) -> None:
        with self.hub._lock:
            where = self.hub._cdn.get(sha256)
        if where is None:
            raise _StandInError(404, "NoSuchKey")
        repo_type, repo_id, path = where
        target = self.hub.repo_dir(repo_id, repo_type) / _safe_relpath(path)
        if not target.is_file():
            raise _StandInError(404, "NoSuchKey")
        self._serve_file(target, repo_type, repo_id, path, {"ETag": f'"{sha256}"'})

    def _serve_file(self, target: Path, repo_type: str, repo_id: str, path: str, headers: dict[str, str]) -> None:
        data = target.read_bytes()
        size = len(data)
        headers = {**headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        status, start, end = 200, 0, size  # end is exclusive
        range_header = self.headers.get("Range")
        if range_header is not None:
            parsed = _parse_range(range_header, size)
            if parsed is None:
                raise _StandInError(
                    416, "Requested Range Not Satisfiable", headers={"Content-Range": f"bytes */{size}"}
                )
            start, end = parsed
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        body = data[start:end]
        drop = None
        if self._method == "GET":
            with self.hub._lock:
                rule = self.hub._drops.get((repo_type, repo_id, path))
                if rule is not None and rule.times > 0:
                    rule.times -= 1
                    drop = rule.nbytes
        if drop is None:
            self._send(status, body, headers)
            return
        # Full headers, part of the body, then close: the client sees a short read and has to resume.
        self._record.status = status
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body[:drop])
        self.wfile.flush()
        self.close_connection = True

    # -- write endpoints -------------------------------------------------------------------------------------------

    def _require_token(self) -> None:
        if not self._authenticated():
            raise _StandInError(401, "You must be authenticated to write to the Hub")

    def _whoami(self) -> None:
        if not self._authenticated():
            raise _StandInError(401, "Invalid user token.")
        self._json(
            {
                "type": "user",
                "id": hashlib.sha1(self.hub.user.encode()).hexdigest()[:24],
                "name": self.hub.user,
                "fullname": self.hub.user,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "stand-in", "role": "write"}},
            }
        )

    def _create_repo(self) -> None:
        self._require_token()
        payload = json.loads(self._body or b"{}")
        repo_type = payload.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise _StandInError(400, f"Invalid repo type {repo_type}")
        repo_id = f"{payload.get('organization') or self.hub.user}/{payload['name']}"
        repo = self.hub.repo_dir(repo_id, repo_type)
        url = f"{self.hub.endpoint}/{'' if repo_type == 'model' else repo_type + 's/'}{repo_id}"
        if repo.is_dir():
            # create_repo(exist_ok=True) reads the url from this 409's body.
            raise _StandInError(409, f"You already created this {repo_type} repo", extra={"url": url})
        repo.mkdir(parents=True)
        settings = self.hub.settings(repo_id, repo_type)
        settings.private = payload.get("visibility") == "private" or bool(payload.get("private"))
        self._json({"url": url, "name": repo_id, "id": repo_id})

    def _preupload(self, repo_type: str, repo_id: str, revision: str) -> None:
        self._require_token()
        repo, settings, _ = self._repo(repo_type, repo_id)
        sha = self._revision(settings, revision)
        files = []
        for item in json.loads(self._body or b"{}").get("files", []):
            rel = item["path"]
            entry: dict[str, Any] = {"path": rel, "uploadMode": "regular", "shouldIgnore": False}
            target = repo / _safe_relpath(rel)
            if target.is_file():
                # The client skips a file whose oid it computes equal (git sha1, for "regular" files).
                entry["oid"] = git_blob_sha1(target.read_bytes())
            files.append(entry)
        self._json({"files": files, "commitOid": sha})

    def _commit(self, repo_type: str, repo_id: str, revision: str) -> None:
        self._require_token()
        repo, settings, _ = self._repo(repo_type, repo_id)
        self._revision(settings, revision)
        lines = [json.loads(line) for line in self._body.decode().splitlines() if line.strip()]
        for line in lines:
            key, value = line.get("key"), line.get("value", {})
            if key == "header":
                continue
            if key == "file":
                target = repo / _safe_relpath(value["path"])
                target.parent.mkdir(parents=True, exist_ok=True)
                content = value["content"]
                target.write_bytes(base64.b64decode(content) if value.get("encoding") == "base64" else content.encode())
            elif key == "deletedFile":
                (repo / _safe_relpath(value["path"])).unlink(missing_ok=True)
            elif key == "deletedFolder":
                shutil.rmtree(repo / _safe_relpath(value["path"]), ignore_errors=True)
            else:  # "lfsFile" and the rest: preupload never asks for LFS, so a client sending it is off-protocol
                raise _StandInError(400, f"Hub stand-in: unsupported commit operation {key!r}")
        with self.hub._lock:
            new_sha = hashlib.sha1(f"{repo_type}s/{repo_id}@{len(settings.shas)}".encode()).hexdigest()
            settings.shas.append(new_sha)
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        self._json(
            {
                "success": True,
                "commitOid": new_sha,
                "commitUrl": f"{self.hub.endpoint}/{prefix}{repo_id}/commit/{new_sha}",
                "hookOutput": "",
                "pullRequestUrl": None,
            }
        )


def _split_repo_id(repo_id: str) -> tuple[str, str]:
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts) or any(p in (".", "..") for p in parts):
        raise ValueError(f"repo id must be 'org/name', got {repo_id!r}")
    return parts[0], parts[1]


def _safe_relpath(rel: str) -> str:
    """A path inside a repo; refuses anything that would climb out of it."""
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or not rel:
        raise _StandInError(400, f"Invalid path in repo: {rel!r}")
    return pure.as_posix()


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, exclusive end) of a single `bytes=` range, or None when it can't be satisfied."""
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":  # suffix range: the last N bytes
            n = int(last)
            return (max(size - n, 0), size) if n > 0 and size > 0 else None
        start = int(first)
        end = min(int(last) + 1, size) if last else size
    except ValueError:
        return None
    return (start, end) if 0 <= start < size and start < end else None
