#!/usr/bin/env python3
"""The host link's copy bandwidth, beside which `kvz query`'s load GB/s is read.

Copies of 256 MiB between device memory and pinned or pageable host memory,
each way, timed with the device synchronised before and after, best of five.
It calls the CUDA runtime (libcudart) through ctypes: no PyTorch, no build.

    python3 bench/link_bandwidth.py        (on a machine with an NVIDIA GPU)
"""
import ctypes
import glob
import sys
import time

SIZE = 256 << 20
REPEATS = 5
HOST_TO_DEVICE, DEVICE_TO_HOST = 1, 2


def load_cudart():
    names = ["libcudart.so", "libcudart.so.13", "libcudart.so.12"]
    names += sorted(glob.glob("/usr/local/cuda*/targets/*/lib/libcudart.so*"))
    names += sorted(glob.glob("/usr/local/cuda*/lib64/libcudart.so*"))
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    sys.exit("link: no libcudart found (is the CUDA runtime installed?)")


def main():
    cuda = load_cudart()
    cuda.cudaGetErrorString.restype = ctypes.c_char_p

    def check(status, what):
        if status != 0:
            sys.exit(f"link: {what} failed: {cuda.cudaGetErrorString(status).decode()}")

    device, pinned = ctypes.c_void_p(), ctypes.c_void_p()
    check(cuda.cudaMalloc(ctypes.byref(device), ctypes.c_size_t(SIZE)), "cudaMalloc")
    check(cuda.cudaMallocHost(ctypes.byref(pinned), ctypes.c_size_t(SIZE)), "cudaMallocHost")
    pageable = ctypes.create_string_buffer(SIZE)  # zero-filled, so its pages exist
    ctypes.memset(pinned, 1, SIZE)
    results = []
    for direction, label in ((HOST_TO_DEVICE, "host to device"), (DEVICE_TO_HOST, "device to host")):
        for kind, host in (("pinned", pinned), ("pageable", ctypes.cast(pageable, ctypes.c_void_p))):
            best = float("inf")
            for _ in range(REPEATS):
                check(cuda.cudaDeviceSynchronize(), "cudaDeviceSynchronize")
                t0 = time.perf_counter()
                dst, src = (device, host) if direction == HOST_TO_DEVICE else (host, device)
                check(cuda.cudaMemcpy(dst, src, ctypes.c_size_t(SIZE), direction), "cudaMemcpy")
                check(cuda.cudaDeviceSynchronize(), "cudaDeviceSynchronize")
                best = min(best, time.perf_counter() - t0)
            results.append(f"{label} {kind} {SIZE / best / 1e9:.1f} GB/s")
    print("host link: " + ", ".join(results) + f" ({SIZE >> 20} MiB copies, best of {REPEATS})")
    cuda.cudaFreeHost(pinned)
    cuda.cudaFree(device)


if __name__ == "__main__":
    main()
