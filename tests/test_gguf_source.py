"""llama.cpp's converter from the pinned llama-cpp-python sdist: the pin is uv.lock's, the download
is checked against it, only the converter's part is unpacked, and a failure keeps nothing."""

from __future__ import annotations

import hashlib
import io
import tarfile
import tomllib
from pathlib import Path

import pytest
from conftest import ROOT

from mgtui.train import llama_cpp_source
from mgtui.train.gguf_export import find_converter


def test_the_pin_is_uv_locks_llama_cpp_python_sdist():
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    (pkg,) = [p for p in lock["package"] if p["name"] == "llama-cpp-python"]
    assert pkg["version"] == llama_cpp_source.VERSION
    assert pkg["sdist"]["url"] == llama_cpp_source.SDIST_URL
    assert pkg["sdist"]["hash"] == f"sha256:{llama_cpp_source.SDIST_SHA256}"


def fake_sdist(path: Path) -> str:
    """A tarball laid out as the sdist, with files the converter needs and files it does not."""
    top = f"llama_cpp_python-{llama_cpp_source.VERSION}/vendor/llama.cpp/"
    files = {
        "convert_hf_to_gguf.py": b"print('converter')\n",
        "conversion/base.py": b"",
        "gguf-py/gguf/__init__.py": b"",
        "models/ggml-vocab-qwen2.gguf": b"GGUF",
        "models/ggml-vocab-bert-bge.gguf": b"GGUF",  # not the converter's
        "src/llama.cpp": b"int main;",
        "LICENSE-extra": b"",
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(top + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        evil = tarfile.TarInfo(top + "conversion/../../../../escaped.py")
        tar.addfile(evil, io.BytesIO(b""))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_fetch_unpacks_only_the_converters_part_once(tmp_path, monkeypatch):
    archive = tmp_path / "sdist.tar.gz"
    digest = fake_sdist(archive)
    cache = tmp_path / "mgtui"  # the user's cache, as XDG_CACHE_HOME=tmp_path makes it
    got = llama_cpp_source.fetch(cache, url=archive.as_uri(), sha256=digest)
    kept = sorted(str(p.relative_to(got)) for p in got.rglob("*") if p.is_file())
    assert kept == [
        "conversion/base.py",
        "convert_hf_to_gguf.py",
        "gguf-py/gguf/__init__.py",
        "models/ggml-vocab-qwen2.gguf",
    ]
    assert not list(tmp_path.rglob("escaped.py"))
    archive.unlink()
    assert llama_cpp_source.fetch(cache, url=archive.as_uri(), sha256=digest) == got  # cached: not fetched again
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("LLAMA_CPP_DIR", str(tmp_path / "no-clone"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert find_converter()[-1] == str(got / "convert_hf_to_gguf.py")  # no clone: the unpacked one


def test_a_download_that_is_not_the_pinned_one_keeps_nothing(tmp_path):
    archive = tmp_path / "sdist.tar.gz"
    digest = fake_sdist(archive)
    cache = tmp_path / "cache"
    with pytest.raises(llama_cpp_source.SourceError) as e:
        llama_cpp_source.fetch(cache, url=archive.as_uri(), sha256="0" * 64)
    assert str(e.value) == f"{archive.as_uri()}: sha256 {digest} is not the pinned {'0' * 64}; nothing was kept"
    assert list(cache.iterdir()) == []
    with pytest.raises(llama_cpp_source.SourceError, match=r"^could not fetch llama-cpp-python \S+'s sdist \("):
        llama_cpp_source.fetch(cache, url=(tmp_path / "missing.tar.gz").as_uri())
    assert list(cache.iterdir()) == []
