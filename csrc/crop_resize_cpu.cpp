// Runtime choice of the CPU kernel build: the widest vector instruction set this CPU has.
#include <cstdlib>
#include <cstring>

#include "crop_resize.h"

namespace msgf {

#define MSGF_DECLARE_CPU_BUILD(isa) \
  namespace isa {                   \
  void crop_resize_cpu(const CropArgs& args, int num_threads, bool direct); \
  }
MSGF_DECLARE_CPU_BUILD(generic)
#ifdef MSGF_HAVE_X86_BUILDS
MSGF_DECLARE_CPU_BUILD(avx2)
MSGF_DECLARE_CPU_BUILD(avx512)
#endif

namespace {

enum class Isa { kGeneric, kAvx2, kAvx512 };

Isa best_isa() {
#ifdef MSGF_HAVE_X86_BUILDS
  if (!__builtin_cpu_supports("fma")) return Isa::kGeneric;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) return Isa::kAvx512;
  if (__builtin_cpu_supports("avx2")) return Isa::kAvx2;
#endif
  return Isa::kGeneric;
}

// MSGF_CPU_ISA=generic|avx2|avx512 caps the choice (tests run every build this way).
Isa detect_isa() {
  const Isa best = best_isa();
  const char* wanted = std::getenv("MSGF_CPU_ISA");
  if (wanted == nullptr) return best;
  if (std::strcmp(wanted, "generic") == 0) return Isa::kGeneric;
  if (std::strcmp(wanted, "avx2") == 0 && best != Isa::kGeneric) return Isa::kAvx2;
  return best;
}

const Isa kIsa = detect_isa();

}  // namespace

const char* cpu_kernel_isa() {
  switch (kIsa) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "generic";
  }
}

void crop_resize_cpu(const CropArgs& args, int num_threads, bool direct) {
  if (num_threads < 1) num_threads = 1;
#ifdef MSGF_HAVE_X86_BUILDS
  if (kIsa == Isa::kAvx512) return avx512::crop_resize_cpu(args, num_threads, direct);
  if (kIsa == Isa::kAvx2) return avx2::crop_resize_cpu(args, num_threads, direct);
#endif
  generic::crop_resize_cpu(args, num_threads, direct);
}

}  // namespace msgf
