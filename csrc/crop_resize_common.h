// Per-pixel arithmetic of the crop-and-resize op, shared by the CPU loop and the CUDA kernel.
//
// Everything that decides an output value lives here and is compiled for host and device,
// so the CPU tests exercise the exact arithmetic the GPU runs. Both sides are built with FMA
// contraction disabled (-ffp-contract=off / --fmad=false): `a * b + c` rounds twice on both,
// and results agree bit for bit.
//
// Sampling convention (design.md section 4): output pixel j of a box [x0, x1) with w output
// pixels reads the source at u = x0 + (j + 0.5) * (x1 - x0) / w - 0.5. Bilinear taps clamp to
// the image border. The antialiased path uses the triangle filter of
// F.interpolate(mode="bilinear", antialias=True) (Pillow's), support max(1, scale), centred
// at x0 + (j + 0.5) * scale, weights renormalised over the taps that fall inside the image.
//
// Nothing here validates: the Python wrapper (msgf/ops/crop.py) has checked every argument.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define MSGF_HD __host__ __device__ __forceinline__
#else
#define MSGF_HD inline
#endif

namespace msgf {

// Codes shared with the Python wrapper.
enum SrcType : int { kSrcUInt8 = 0, kSrcFloat32 = 1 };
enum OutType : int { kOutFloat32 = 0, kOutFloat16 = 1, kOutBFloat16 = 2 };

// A batch of images as a strided 4-D view (n, c, h, w); strides in elements. uint8
// channels-last and float32 channels-first are both just strides here.
struct ImageView {
  const void* data;
  int src_type;
  int64_t n, c, h, w;
  int64_t stride_n, stride_c, stride_h, stride_w;
};

// One output patch: where it reads (boxes row) and where it writes.
// Rows of the int64 job table passed from Python: (out_ptr, out_h, out_w).
struct PatchJob {
  int64_t batch;
  float x0, y0, x1, y1;
  void* out;
  int64_t out_h, out_w;
};

MSGF_HD PatchJob load_job(const float* boxes, const int64_t* jobs, int64_t b) {
  PatchJob job;
  const float* box = boxes + 5 * b;
  const int64_t* row = jobs + 3 * b;
  job.batch = static_cast<int64_t>(box[0]);
  job.x0 = box[1];
  job.y0 = box[2];
  job.x1 = box[3];
  job.y1 = box[4];
  job.out = reinterpret_cast<void*>(static_cast<uintptr_t>(row[0]));
  job.out_h = row[1];
  job.out_w = row[2];
  return job;
}

MSGF_HD float min_f(float a, float b) { return a < b ? a : b; }
MSGF_HD float max_f(float a, float b) { return a > b ? a : b; }
MSGF_HD int64_t min_i(int64_t a, int64_t b) { return a < b ? a : b; }
MSGF_HD int64_t max_i(int64_t a, int64_t b) { return a > b ? a : b; }

// floor for values already clamped to a small range (no libm, identical on host and device).
MSGF_HD int64_t floor_to_int(float v) {
  int64_t i = static_cast<int64_t>(v);
  return (static_cast<float>(i) > v) ? i - 1 : i;
}

// ---------------------------------------------------------------- bilinear (no antialias)

// The two taps along one axis for output index j, clamped to [0, size - 1].
struct LinearTap {
  int64_t lo, hi;
  float frac;  // weight of `hi`; `lo` gets 1 - frac
};

MSGF_HD LinearTap linear_tap(float start, float scale, int64_t j, int64_t size) {
  // Summed in roi_align's order (aligned=True, one sample per bin), (x0 - 0.5) + j * s + 0.5 * s,
  // which is also what onnxruntime's RoiAlign computes: a patch resized up (GFConfig.
  // patch_input_sizes) then rounds as the exported crop graph does, not merely within float32.
  // Same-size crops stay exact copies: every term is a whole or half number.
  float u = (start - 0.5f) + static_cast<float>(j) * scale + 0.5f * scale;
  u = min_f(max_f(u, 0.0f), static_cast<float>(size - 1));
  LinearTap tap;
  tap.lo = floor_to_int(u);
  tap.hi = min_i(tap.lo + 1, size - 1);
  tap.frac = u - static_cast<float>(tap.lo);
  return tap;
}

template <typename T>
MSGF_HD float load_value(const T* p) { return static_cast<float>(*p); }

// Bilinear value at (ty, tx) of one channel plane; `plane` points at (n, c, 0, 0).
// Written as lerps so that a zero fraction returns the tap exactly (same-size crops copy).
template <typename T>
MSGF_HD float bilinear_value(const T* plane, int64_t stride_h, int64_t stride_w,
                             const LinearTap& ty, const LinearTap& tx) {
  const T* row_lo = plane + ty.lo * stride_h;
  const T* row_hi = plane + ty.hi * stride_h;
  float p00 = load_value(row_lo + tx.lo * stride_w);
  float p01 = load_value(row_lo + tx.hi * stride_w);
  float p10 = load_value(row_hi + tx.lo * stride_w);
  float p11 = load_value(row_hi + tx.hi * stride_w);
  float top = p00 + tx.frac * (p01 - p00);
  float bottom = p10 + tx.frac * (p11 - p10);
  return top + ty.frac * (bottom - top);
}

// ---------------------------------------------------------------- antialiased (triangle filter)

// The taps [lo, hi) along one axis for output index j and the filter's parameters.
// If clamping to the image leaves no tap with positive weight (a box far outside the image),
// the nearest border pixel is used alone (`nearest`).
struct FilterWindow {
  int64_t lo, hi;
  float center, inv_support, norm;
  bool nearest;
};

MSGF_HD float triangle(float x) {
  x = x < 0.0f ? -x : x;
  return x < 1.0f ? 1.0f - x : 0.0f;
}

MSGF_HD float window_weight(const FilterWindow& win, int64_t k) {
  if (win.nearest) return 1.0f;
  return triangle((static_cast<float>(k) - win.center + 0.5f) * win.inv_support) * win.norm;
}

MSGF_HD FilterWindow filter_window(float start, float scale, int64_t j, int64_t size) {
  FilterWindow win;
  const float support = scale >= 1.0f ? scale : 1.0f;
  const float fsize = static_cast<float>(size);
  win.center = start + (static_cast<float>(j) + 0.5f) * scale;
  win.inv_support = 1.0f / support;
  win.nearest = false;
  win.norm = 1.0f;
  // Clamp in float before converting so that far-away boxes cannot overflow the integers.
  win.lo = floor_to_int(min_f(max_f(win.center - support + 0.5f, 0.0f), fsize));
  win.hi = floor_to_int(min_f(max_f(win.center + support + 0.5f, 0.0f), fsize));
  float total = 0.0f;
  for (int64_t k = win.lo; k < win.hi; ++k) total += window_weight(win, k);
  if (total > 0.0f) {
    win.norm = 1.0f / total;
  } else {
    win.nearest = true;
    win.lo = floor_to_int(min_f(max_f(win.center, 0.0f), fsize - 1.0f));
    win.hi = win.lo + 1;
  }
  return win;
}

// Direct 2-D filtered value of one channel plane (the CUDA path; the CPU runs the same sum
// separably, and also this function in its `direct` mode for tests).
template <typename T>
MSGF_HD float filtered_value(const T* plane, int64_t stride_h, int64_t stride_w,
                             const FilterWindow& wy, const FilterWindow& wx) {
  float acc = 0.0f;
  for (int64_t y = wy.lo; y < wy.hi; ++y) {
    const T* row = plane + y * stride_h;
    float row_acc = 0.0f;
    for (int64_t x = wx.lo; x < wx.hi; ++x) row_acc += window_weight(wx, x) * load_value(row + x * stride_w);
    acc += window_weight(wy, y) * row_acc;
  }
  return acc;
}

// ---------------------------------------------------------------- output conversion

MSGF_HD uint32_t float_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof(u));
  return u;
}

MSGF_HD float bits_float(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof(f));
  return f;
}

// float -> bfloat16, round to nearest even; NaN stays a quiet NaN.
MSGF_HD uint16_t to_bfloat16_bits(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// float -> IEEE half, round to nearest even (overflow to inf, subnormals exact). All three
// cases are computed and one is selected with masks, not branches, so CPU loops vectorise.
MSGF_HD uint16_t to_float16_bits(float f) {
  const uint32_t bits = float_bits(f);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  const uint32_t u = bits & 0x7fffffffu;
  // |f| >= 65520 rounds to inf (the normal case below carries into the exponent); NaN stays NaN.
  const uint32_t special = 0x7c00u | (static_cast<uint32_t>(u > 0x7f800000u) << 9);
  // Below 2^-14 the half is subnormal: adding 0.5 aligns its bits at the bottom of the float's
  // mantissa, and the float add does the rounding to nearest even.
  const uint32_t subnormal = float_bits(bits_float(u) + 0.5f) - 0x3f000000u;
  // Normal: rebias the exponent (15 - 127) and round half to even on the dropped 13 bits.
  const uint32_t normal = (u + 0xc8000fffu + ((u >> 13) & 1u)) >> 13;
  const uint32_t is_special = 0u - static_cast<uint32_t>(u >= 0x47800000u);
  const uint32_t is_subnormal = 0u - static_cast<uint32_t>(u < 0x38800000u);
  const uint32_t h = (special & is_special) | (subnormal & is_subnormal) | (normal & ~(is_special | is_subnormal));
  return static_cast<uint16_t>(h | sign);
}

MSGF_HD void store_value(void* out, int64_t index, float v, int out_type) {
  if (out_type == kOutFloat32) {
    static_cast<float*>(out)[index] = v;
  } else if (out_type == kOutFloat16) {
    static_cast<uint16_t*>(out)[index] = to_float16_bits(v);
  } else {
    static_cast<uint16_t*>(out)[index] = to_bfloat16_bits(v);
  }
}

// ---------------------------------------------------------------- one output pixel

// All channels of output pixel (i, j) of one job, by the direct per-pixel formulas.
// `scale`/`shift` are the per-channel affine of normalisation: (x / 255 - mean) / std folded
// into x * scale + shift.
template <typename T>
MSGF_HD void compute_pixel(const ImageView& img, const PatchJob& job, int64_t i, int64_t j,
                           const float* scale, const float* shift, int out_type, bool antialias) {
  const T* base = static_cast<const T*>(img.data) + job.batch * img.stride_n;
  const float scale_y = (job.y1 - job.y0) / static_cast<float>(job.out_h);
  const float scale_x = (job.x1 - job.x0) / static_cast<float>(job.out_w);
  const int64_t plane_size = job.out_h * job.out_w;
  const int64_t pixel = i * job.out_w + j;
  if (antialias) {
    const FilterWindow wy = filter_window(job.y0, scale_y, i, img.h);
    const FilterWindow wx = filter_window(job.x0, scale_x, j, img.w);
    for (int64_t c = 0; c < img.c; ++c) {
      float v = filtered_value(base + c * img.stride_c, img.stride_h, img.stride_w, wy, wx);
      store_value(job.out, c * plane_size + pixel, v * scale[c] + shift[c], out_type);
    }
  } else {
    const LinearTap ty = linear_tap(job.y0, scale_y, i, img.h);
    const LinearTap tx = linear_tap(job.x0, scale_x, j, img.w);
    for (int64_t c = 0; c < img.c; ++c) {
      float v = bilinear_value(base + c * img.stride_c, img.stride_h, img.stride_w, ty, tx);
      store_value(job.out, c * plane_size + pixel, v * scale[c] + shift[c], out_type);
    }
  }
}

}  // namespace msgf
