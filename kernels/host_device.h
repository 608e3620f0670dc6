/*
 * host_device.h — marks the small inline functions that the CPU kernels and
 * their CUDA twins share, so both compute from one definition.
 */
#ifndef KVZ_KERNELS_HOST_DEVICE_H
#define KVZ_KERNELS_HOST_DEVICE_H

#ifdef __CUDACC__
#define KVZ_HOST_DEVICE __host__ __device__
#else
#define KVZ_HOST_DEVICE
#endif

/* Compiled for a device: by nvcc for the GPU, or by the project's CUDA
 * emulation (tests/cudasim), which runs the device branches on the CPU so
 * that its tests hold them to the host's. */
#if defined(__CUDA_ARCH__) || defined(KVZ_SIM_DEVICE)
#define KVZ_DEVICE_CODE 1
#endif

/* a * b + c rounded twice, on the host and on a device alike: nvcc (and a C
 * compiler allowed to contract one expression) would fuse it into one FMA,
 * and the twins would differ in the last bit. */
static inline KVZ_HOST_DEVICE float kvz_mul_add(float a, float b, float c)
{
#ifdef KVZ_DEVICE_CODE
    return __fadd_rn(__fmul_rn(a, b), c);
#else
    const float product = a * b; /* its own statement: C never contracts across statements */
    return product + c;
#endif
}

#endif
