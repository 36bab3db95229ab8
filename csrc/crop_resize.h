// Entry points of the crop-and-resize op, one per device. Tensors cross as raw pointers,
// shapes and strides (no libtorch); the Python wrapper has validated everything.
#pragma once

#include <cstdint>

#include "crop_resize_common.h"

namespace msgf {

struct CropArgs {
  ImageView image;
  const float* boxes;    // (num_boxes, 5): batch_index, x0, y0, x1, y1
  const int64_t* jobs;   // (num_boxes, 3): out_ptr, out_h, out_w
  int64_t num_boxes;
  int64_t max_out_pixels;  // max over jobs of out_h * out_w (sizes the CUDA grid)
  const float* scale;    // (C,) normalisation: x * scale + shift
  const float* shift;    // (C,)
  int out_type;
  bool antialias;
};

// `direct` runs the per-pixel formulas of the CUDA kernel instead of the separable CPU
// loops (tests use it to check the device arithmetic on the host).
void crop_resize_cpu(const CropArgs& args, int num_threads, bool direct);

// The instruction set of the CPU kernel build that crop_resize_cpu runs here.
const char* cpu_kernel_isa();

#ifdef MSGF_WITH_CUDA
// Launches on `stream` (a cudaStream_t of `device`, PyTorch's current one). Returns an empty
// string on success, else the CUDA error text.
const char* crop_resize_cuda(const CropArgs& args, int device, void* stream);
#endif

}  // namespace msgf
