// The CPU kernel built for AVX-512 (F + BW; only called where the CPU has both).
#define MSGF_CPU_ISA avx512
#include "crop_resize_cpu_kernels.h"
