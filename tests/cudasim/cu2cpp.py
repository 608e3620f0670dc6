#!/usr/bin/env python3
"""Rewrite a .cu file as C++ for the CPU emulation of CUDA (tests/cudasim/cudasim.h).

    cu2cpp.py kernels/cuda/topk.cu > build-sim/kernels/cuda/topk.cpp

Three rewrites, line numbers kept (a #line directive names the .cu file):
  name<T><<<grid, block, smem, stream>>>(args)  ->  kvz_sim_launch("name", name<T>, grid, block, smem, stream)(args)
  extern __shared__ [__align__(n)] T name[];      ->  T *name = (T *)kvz_sim::dynamic_smem();
  __global__ ... __launch_bounds__(B) name(params) {  ->  __global__ ... name(params) { kvz_sim::launch_bounds(B);
The last makes a block larger than the kernel's bound stop the run, as a GPU refuses that launch.
"""
import re
import sys

LAUNCH = re.compile(r"\b([A-Za-z_]\w*)((?:<[^<>;(){}]*>)?)\s*<<<(.*?)>>>\s*\(", re.S)
LAUNCH_BOUNDS = re.compile(r"(__global__[^;{}()]*?)__launch_bounds__\(([^()]*)\)([^{;]*?)\{", re.S)
DYNAMIC_SHARED = re.compile(r"extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?([A-Za-z_][\w\s]*?)\s+(\w+)\s*\[\s*\]\s*;")


def main():
    path = sys.argv[1]
    text = open(path, encoding="utf-8").read()
    text = LAUNCH.sub(lambda m: f'kvz_sim_launch("{m.group(1)}", {m.group(1)}{m.group(2)}, {m.group(3)})(', text)
    text = LAUNCH_BOUNDS.sub(lambda m: f"{m.group(1)}{m.group(3)}{{ kvz_sim::launch_bounds({m.group(2)});", text)
    text = DYNAMIC_SHARED.sub(lambda m: f"{m.group(1)} *{m.group(2)} = ({m.group(1)} *)kvz_sim::dynamic_smem();", text)
    if "<<<" in text or "extern __shared__" in text or "__launch_bounds__" in text:
        sys.exit(f"cu2cpp: {path}: a launch, dynamic shared array or launch bound it cannot rewrite")
    sys.stdout.write(f'#line 1 "{path}"\n{text}')


if __name__ == "__main__":
    main()
