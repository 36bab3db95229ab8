// Runtime choice of the CPU kernel build: AVX2 where the CPU supports it, else the baseline.
#include "crop_resize.h"

namespace msgf {

namespace generic {
void crop_resize_cpu(const CropArgs& args, int num_threads, bool direct);
}
#ifdef MSGF_HAVE_AVX2_BUILD
namespace avx2 {
void crop_resize_cpu(const CropArgs& args, int num_threads, bool direct);
}
#endif

const char* cpu_kernel_isa() {
#ifdef MSGF_HAVE_AVX2_BUILD
  if (__builtin_cpu_supports("avx2")) return "avx2";
#endif
  return "generic";
}

void crop_resize_cpu(const CropArgs& args, int num_threads, bool direct) {
  if (num_threads < 1) num_threads = 1;
#ifdef MSGF_HAVE_AVX2_BUILD
  if (__builtin_cpu_supports("avx2")) return avx2::crop_resize_cpu(args, num_threads, direct);
#endif
  generic::crop_resize_cpu(args, num_threads, direct);
}

}  // namespace msgf
