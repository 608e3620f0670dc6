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

#endif
