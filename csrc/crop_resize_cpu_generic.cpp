// The CPU kernel for any x86-64 / other CPU (baseline instruction set).
#define MSGF_CPU_ISA generic
#include "crop_resize_cpu_kernels.h"
