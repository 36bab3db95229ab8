// CUDA kernel of the crop-and-resize op: one launch for every box of the call, whatever its
// output size. Grid x covers the pixels of the largest patch, grid y the boxes; each thread
// computes all channels of one output pixel with the shared per-pixel formulas, so the
// arithmetic is the one the CPU tests check (crop_resize_common.h, direct mode).
#include <cuda_runtime.h>

#include "crop_resize.h"

namespace msgf {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGridY = 65535;

template <typename T>
__global__ void crop_resize_kernel(ImageView image, const float* boxes, const int64_t* jobs, int64_t num_boxes,
                                   const float* scale, const float* shift, int out_type, bool antialias) {
  const int64_t pixel = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t b = blockIdx.y; b < num_boxes; b += gridDim.y) {
    const PatchJob job = load_job(boxes, jobs, b);
    if (pixel >= job.out_h * job.out_w) continue;
    compute_pixel<T>(image, job, pixel / job.out_w, pixel % job.out_w, scale, shift, out_type, antialias);
  }
}

}  // namespace

const char* crop_resize_cuda(const CropArgs& a, int device, void* stream_handle) {
  if (a.num_boxes == 0) return "";
  // This module links its own CUDA runtime: make the stream's device current for it too.
  cudaError_t err = cudaSetDevice(device);
  if (err != cudaSuccess) return cudaGetErrorString(err);
  cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);
  const int64_t blocks_x = (a.max_out_pixels + kThreads - 1) / kThreads;
  const dim3 grid(static_cast<unsigned>(blocks_x), static_cast<unsigned>(a.num_boxes < kMaxGridY ? a.num_boxes : kMaxGridY));
  if (a.image.src_type == kSrcUInt8) {
    crop_resize_kernel<uint8_t><<<grid, kThreads, 0, stream>>>(a.image, a.boxes, a.jobs, a.num_boxes, a.scale,
                                                               a.shift, a.out_type, a.antialias);
  } else {
    crop_resize_kernel<float><<<grid, kThreads, 0, stream>>>(a.image, a.boxes, a.jobs, a.num_boxes, a.scale,
                                                             a.shift, a.out_type, a.antialias);
  }
  err = cudaGetLastError();
  return err == cudaSuccess ? "" : cudaGetErrorString(err);
}

}  // namespace msgf
