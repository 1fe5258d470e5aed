"""llama.cpp's quantizer through llama-cpp-python, for machines without a llama-quantize build:
`python -m mgtui.train.gguf_quantize IN.gguf OUT.gguf TYPE` (TYPE as llama-quantize names it,
e.g. Q4_K_M) calls the same llama_model_quantize that llama-quantize does
(llama_cpp/llama_cpp.py: llama_model_quantize, LLAMA_FTYPE_MOSTLY_*). Exit 0 when written."""

from __future__ import annotations

import ctypes
import sys


def main(argv: list[str] | None = None) -> int:
    source, target, kind = argv if argv is not None else sys.argv[1:]
    import llama_cpp

    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{kind.upper()}", None)
    if ftype is None:
        print(f"llama-cpp-python {llama_cpp.__version__} has no quantization type {kind}", file=sys.stderr)
        return 2
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    if llama_cpp.llama_model_quantize(source.encode(), target.encode(), ctypes.byref(params)) != 0:
        print(f"llama_model_quantize could not quantize {source} to {kind}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
