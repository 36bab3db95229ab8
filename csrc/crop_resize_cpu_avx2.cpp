// The CPU kernel built for AVX2 (compiled with -mavx2; only called where the CPU has it).
#define MSGF_CPU_ISA avx2
#include "crop_resize_cpu_kernels.h"
