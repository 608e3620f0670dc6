/* cuda_runtime.h, emulated on the CPU: see tests/cudasim/cudasim.h. */
#include "../cudasim.h"
