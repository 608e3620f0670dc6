#!/usr/bin/env python3
"""Rewrite a .cu file as C++ for the CPU emulation of CUDA (tests/cudasim/cudasim.h).

    cu2cpp.py kernels/cuda/topk.cu > build-sim/kernels/cuda/topk.cpp

Two rewrites, line numbers kept (a #line directive names the .cu file):
  name<T><<<grid, block, smem, stream>>>(args)  ->  kvz_sim_launch("name", name<T>, grid, block, smem, stream)(args)
  extern __shared__ [__align__(n)] T name[];      ->  T *name = (T *)kvz_sim::dynamic_smem();
"""
import re
import sys

LAUNCH = re.compile(r"\b([A-Za-z_]\w*)((?:<[^<>;(){}]*>)?)\s*<<<(.*?)>>>\s*\(", re.S)
DYNAMIC_SHARED = re.compile(r"extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?([A-Za-z_][\w\s]*?)\s+(\w+)\s*\[\s*\]\s*;")


def main():
    path = sys.argv[1]
    text = open(path, encoding="utf-8").read()
    text = LAUNCH.sub(lambda m: f'kvz_sim_launch("{m.group(1)}", {m.group(1)}{m.group(2)}, {m.group(3)})(', text)
    text = DYNAMIC_SHARED.sub(lambda m: f"{m.group(1)} *{m.group(2)} = ({m.group(1)} *)kvz_sim::dynamic_smem();", text)
    if "<<<" in text or "extern __shared__" in text:
        sys.exit(f"cu2cpp: {path}: a launch or dynamic shared array it cannot rewrite")
    sys.stdout.write(f'#line 1 "{path}"\n{text}')


if __name__ == "__main__":
    main()
