"""llama.cpp's GGUF converter without a clone. The llama-cpp-python sdist pinned in uv.lock vendors
llama.cpp; the part the converter needs (convert_hf_to_gguf.py, conversion/, gguf-py/ and a few
vocab files) is unpacked once per machine under the user's cache, after the download's sha256 is
checked against the pin (tests/test_gguf_source.py checks that these constants are uv.lock's)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from ..user_cache import user_cache_dir

VERSION = "0.3.36"
SDIST_URL = (
    "https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/"
    f"llama_cpp_python-{VERSION}.tar.gz"
)
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
VENDORED = "vendor/llama.cpp/"
# What convert_hf_to_gguf.py imports or reads: conversion/base.py's _set_vocab_builtin opens
# models/ggml-vocab-{llama-spm,gpt-neox}.gguf; qwen2's is the tests' real tokenizer.
KEEP = (
    "convert_hf_to_gguf.py",
    "LICENSE",
    "conversion/",
    "gguf-py/gguf/",
    "models/ggml-vocab-llama-spm.gguf",
    "models/ggml-vocab-gpt-neox.gguf",
    "models/ggml-vocab-qwen2.gguf",
)

FOLDERS = tuple(k for k in KEEP if k.endswith("/"))


class SourceError(Exception):
    """One line: why the converter could not be had."""


def source_dir(cache: Path | None = None) -> Path:
    return (cache or user_cache_dir()) / f"llama.cpp-from-llama-cpp-python-{VERSION}"


def cached(cache: Path | None = None) -> Path | None:
    """The unpacked converter, when an earlier fetch left it whole."""
    where = source_dir(cache)
    return where if (where / "convert_hf_to_gguf.py").exists() else None


def fetch(cache: Path | None = None, url: str | None = None, sha256: str | None = None) -> Path:
    """The unpacked converter: cached, else downloaded, checked and unpacked (atomically)."""
    found = cached(cache)
    if found:
        return found
    target = source_dir(cache)
    target.parent.mkdir(parents=True, exist_ok=True)
    url, sha256 = url or SDIST_URL, sha256 or SDIST_SHA256
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".llama.cpp-fetch-") as tmp:
        archive = Path(tmp) / "sdist.tar.gz"
        digest = _download(url, archive)
        if digest != sha256:
            raise SourceError(f"{url}: sha256 {digest} is not the pinned {sha256}; nothing was kept")
        unpacked = Path(tmp) / "llama.cpp"
        _unpack(archive, unpacked)
        try:
            os.replace(unpacked, target)
        except OSError:  # another process unpacked it meanwhile
            if not cached(cache):
                raise
    return target


def _download(url: str, to: Path) -> str:
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(to, "wb") as out:
            while chunk := response.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
    except OSError as e:  # URLError, timeouts and refused connections are OSErrors
        reason = getattr(e, "reason", None) or e
        raise SourceError(f"could not fetch llama-cpp-python {VERSION}'s sdist ({reason})") from None
    return h.hexdigest()


def _unpack(archive: Path, into: Path) -> None:
    """Only KEEP's files, each by its path under vendor/llama.cpp/; a member that would land
    outside `into` (an absolute path, ..) is never written."""
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            _, sep, rel = member.name.partition(VENDORED)
            wanted = rel in KEEP or rel.startswith(FOLDERS)
            if not sep or not member.isfile() or not wanted or ".." in Path(rel).parts:
                continue
            dest = into / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None  # a regular file
            with source, open(dest, "wb") as out:
                shutil.copyfileobj(source, out)
    if not (into / "convert_hf_to_gguf.py").exists():
        raise SourceError(f"llama-cpp-python {VERSION}'s sdist holds no {VENDORED}convert_hf_to_gguf.py")
