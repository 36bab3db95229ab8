// CPU kernel of the crop-and-resize op: one OpenMP parallel region over (patch, row-chunk)
// work items for all boxes of the call, whatever their output sizes.
//
// This file is compiled once per instruction set (crop_resize_cpu_<isa>.cpp defines
// MSGF_CPU_ISA and includes it); crop_resize_cpu.cpp picks the best one at run time. Without
// FMA contraction the instruction sets compute bit-identical results.
//
// Three paths, all built from the arithmetic in crop_resize_common.h:
//  - copy:      an integer-aligned box inside the image, output size == box size (every focus
//               patch): a strided copy + normalise. Bit-identical to the bilinear path, which
//               reduces to the same value when both fractions are zero.
//  - bilinear:  per-pixel taps, precomputed per column and per row.
//  - filtered:  antialiased, separable: a vertical pass over whole source rows (contiguous,
//               vectorisable) into a small float buffer, then a horizontal pass.
#ifndef MSGF_CPU_ISA
#error "define MSGF_CPU_ISA (the namespace of this instruction-set build) before including"
#endif

#include <algorithm>
#include <vector>

#include "crop_resize.h"

namespace msgf {
namespace MSGF_CPU_ISA {
namespace {

template <int OUT>
struct Out;  // element type and conversion of each output dtype
template <>
struct Out<kOutFloat32> {
  using type = float;
  static float convert(float v) { return v; }
};
template <>
struct Out<kOutFloat16> {
  using type = uint16_t;
  static uint16_t convert(float v) { return to_float16_bits(v); }
};
template <>
struct Out<kOutBFloat16> {
  using type = uint16_t;
  static uint16_t convert(float v) { return to_bfloat16_bits(v); }
};

template <int OUT>
inline typename Out<OUT>::type* out_ptr(void* out, int64_t offset) {
  return static_cast<typename Out<OUT>::type*>(out) + offset;
}

template <int OUT>
inline void store(void* out, int64_t index, float v) {
  *out_ptr<OUT>(out, index) = Out<OUT>::convert(v);
}

struct RowRange {
  int64_t job, begin, end;
};

bool is_plain_copy(const PatchJob& job, const ImageView& img) {
  const float w = static_cast<float>(job.out_w), h = static_cast<float>(job.out_h);
  return job.x1 - job.x0 == w && job.y1 - job.y0 == h &&
         job.x0 == static_cast<float>(static_cast<int64_t>(job.x0)) &&
         job.y0 == static_cast<float>(static_cast<int64_t>(job.y0)) &&
         job.x0 >= 0.0f && job.y0 >= 0.0f &&
         static_cast<int64_t>(job.x0) + job.out_w <= img.w &&
         static_cast<int64_t>(job.y0) + job.out_h <= img.h;
}

// ---------------------------------------------------------------- copy path

// The loops below take __restrict pointers so the compiler vectorises them.
template <typename T, int OUT>
void copy_row_strided(const T* __restrict src, int64_t stride_w, typename Out<OUT>::type* __restrict out, int64_t n,
                      float scale, float shift) {
  if (stride_w == 1) {
    for (int64_t j = 0; j < n; ++j) out[j] = Out<OUT>::convert(static_cast<float>(src[j]) * scale + shift);
  } else {
    for (int64_t j = 0; j < n; ++j) out[j] = Out<OUT>::convert(static_cast<float>(src[j * stride_w]) * scale + shift);
  }
}

// Interleaved RGB (uint8 as decoded, or float channels-last) into three planes in one read.
template <typename T, int OUT>
void copy_row_rgb(const T* __restrict src, typename Out<OUT>::type* __restrict r, typename Out<OUT>::type* __restrict g,
                  typename Out<OUT>::type* __restrict b, int64_t n, const float* scale, const float* shift) {
  const float s0 = scale[0], s1 = scale[1], s2 = scale[2];
  const float h0 = shift[0], h1 = shift[1], h2 = shift[2];
  for (int64_t j = 0; j < n; ++j) {
    r[j] = Out<OUT>::convert(static_cast<float>(src[3 * j]) * s0 + h0);
    g[j] = Out<OUT>::convert(static_cast<float>(src[3 * j + 1]) * s1 + h1);
    b[j] = Out<OUT>::convert(static_cast<float>(src[3 * j + 2]) * s2 + h2);
  }
}

template <typename T, int OUT>
void copy_rows(const CropArgs& a, const PatchJob& job, int64_t begin, int64_t end) {
  const ImageView& img = a.image;
  const T* base = static_cast<const T*>(img.data) + job.batch * img.stride_n +
                  static_cast<int64_t>(job.y0) * img.stride_h + static_cast<int64_t>(job.x0) * img.stride_w;
  const int64_t plane = job.out_h * job.out_w;
  const bool rgb_interleaved = img.c == 3 && img.stride_c == 1 && img.stride_w == 3;
  for (int64_t i = begin; i < end; ++i) {
    const T* row = base + i * img.stride_h;
    const int64_t offset = i * job.out_w;
    if (rgb_interleaved) {
      copy_row_rgb<T, OUT>(row, out_ptr<OUT>(job.out, offset), out_ptr<OUT>(job.out, plane + offset),
                           out_ptr<OUT>(job.out, 2 * plane + offset), job.out_w, a.scale, a.shift);
    } else {
      for (int64_t c = 0; c < img.c; ++c)
        copy_row_strided<T, OUT>(row + c * img.stride_c, img.stride_w, out_ptr<OUT>(job.out, c * plane + offset),
                                 job.out_w, a.scale[c], a.shift[c]);
    }
  }
}

// ---------------------------------------------------------------- bilinear path

// Where one job reads and how it scales: the common start of the resampling paths.
template <typename T>
struct JobGeometry {
  const T* base;        // image `job.batch`
  float scale_y, scale_x;  // source pixels per output pixel
  int64_t plane;        // output pixels per channel
  JobGeometry(const ImageView& img, const PatchJob& job)
      : base(static_cast<const T*>(img.data) + job.batch * img.stride_n),
        scale_y((job.y1 - job.y0) / static_cast<float>(job.out_h)),
        scale_x((job.x1 - job.x0) / static_cast<float>(job.out_w)),
        plane(job.out_h * job.out_w) {}
};

template <typename T, int OUT>
void bilinear_rows(const CropArgs& a, const PatchJob& job, int64_t begin, int64_t end) {
  const ImageView& img = a.image;
  const JobGeometry<T> geo(img, job);
  const T* base = geo.base;
  const float scale_y = geo.scale_y, scale_x = geo.scale_x;
  const int64_t plane = geo.plane;
  std::vector<LinearTap> cols(job.out_w);
  for (int64_t j = 0; j < job.out_w; ++j) cols[j] = linear_tap(job.x0, scale_x, j, img.w);
  for (int64_t i = begin; i < end; ++i) {
    const LinearTap ty = linear_tap(job.y0, scale_y, i, img.h);
    for (int64_t c = 0; c < img.c; ++c) {
      const T* channel = base + c * img.stride_c;
      const int64_t offset = c * plane + i * job.out_w;
      for (int64_t j = 0; j < job.out_w; ++j) {
        const float v = bilinear_value(channel, img.stride_h, img.stride_w, ty, cols[j]);
        store<OUT>(job.out, offset + j, v * a.scale[c] + a.shift[c]);
      }
    }
  }
}

// ---------------------------------------------------------------- filtered (antialiased) path

// a * b + c, fused where this build's instruction set has FMA. Only the separable filtered
// path uses it: its rounding already differs from the device's direct 2-D sum, and the
// bilinear and copy paths, which must match the device bit for bit, never do.
inline float madd(float a, float b, float c) {
#ifdef __FMA__
  return __builtin_fmaf(a, b, c);
#else
  return a * b + c;
#endif
}

// The vertical pass over source rows: acc[k] = sum_r weight_r * row_r[k * stride]. Up to
// four rows per sweep cut the loads and stores of the accumulator.
template <typename T>
void accumulate_rows(float* __restrict acc, const T* const* rows, const float* weights, int64_t count,
                     int64_t stride, int64_t n) {
  std::fill(acc, acc + n, 0.0f);
  int64_t r = 0;
  for (; r + 4 <= count; r += 4) {
    const T* __restrict s0 = rows[r];
    const T* __restrict s1 = rows[r + 1];
    const T* __restrict s2 = rows[r + 2];
    const T* __restrict s3 = rows[r + 3];
    const float w0 = weights[r], w1 = weights[r + 1], w2 = weights[r + 2], w3 = weights[r + 3];
    for (int64_t k = 0; k < n; ++k) {
      const int64_t x = k * stride;
      acc[k] = madd(w3, static_cast<float>(s3[x]),
                    madd(w2, static_cast<float>(s2[x]),
                         madd(w1, static_cast<float>(s1[x]), madd(w0, static_cast<float>(s0[x]), acc[k]))));
    }
  }
  for (; r < count; ++r) {
    const T* __restrict s0 = rows[r];
    const float w0 = weights[r];
    for (int64_t k = 0; k < n; ++k) acc[k] = madd(w0, static_cast<float>(s0[k * stride]), acc[k]);
  }
}

// The horizontal pass of one output row for interleaved RGB: all three channels per tap.
template <int OUT>
void filter_row_rgb(const float* __restrict line, const float* __restrict col_weights, const int64_t* col_start,
                    const FilterWindow* cols, int64_t x_lo, int64_t out_w, typename Out<OUT>::type* __restrict r,
                    typename Out<OUT>::type* __restrict g, typename Out<OUT>::type* __restrict b, const float* scale,
                    const float* shift) {
  for (int64_t j = 0; j < out_w; ++j) {
    const float* weights = col_weights + col_start[j];
    const float* src = line + (cols[j].lo - x_lo) * 3;
    const int64_t n = cols[j].hi - cols[j].lo;
    float v0 = 0.0f, v1 = 0.0f, v2 = 0.0f;
    for (int64_t k = 0; k < n; ++k) {
      v0 = madd(weights[k], src[3 * k], v0);
      v1 = madd(weights[k], src[3 * k + 1], v1);
      v2 = madd(weights[k], src[3 * k + 2], v2);
    }
    r[j] = Out<OUT>::convert(v0 * scale[0] + shift[0]);
    g[j] = Out<OUT>::convert(v1 * scale[1] + shift[1]);
    b[j] = Out<OUT>::convert(v2 * scale[2] + shift[2]);
  }
}

// Per-thread scratch of the filtered path, reused across work items.
struct FilterScratch {
  std::vector<float> line;          // one vertically filtered row
  std::vector<float> col_weights;   // horizontal taps of every output column, back to back
  std::vector<int64_t> col_start;   // first weight of column j in col_weights
  std::vector<const void*> rows;    // source rows of one vertical window
  std::vector<float> row_weights;
};

template <typename T, int OUT>
void filtered_rows(const CropArgs& a, const PatchJob& job, int64_t begin, int64_t end, FilterScratch& scratch) {
  const ImageView& img = a.image;
  const JobGeometry<T> geo(img, job);
  const T* base = geo.base;
  const float scale_y = geo.scale_y, scale_x = geo.scale_x;
  const int64_t plane = geo.plane;

  // Horizontal taps, computed once per work item.
  std::vector<FilterWindow> cols(job.out_w);
  scratch.col_weights.clear();
  scratch.col_start.resize(job.out_w);
  int64_t x_lo = img.w, x_hi = 0;
  for (int64_t j = 0; j < job.out_w; ++j) {
    cols[j] = filter_window(job.x0, scale_x, j, img.w);
    scratch.col_start[j] = static_cast<int64_t>(scratch.col_weights.size());
    for (int64_t x = cols[j].lo; x < cols[j].hi; ++x) scratch.col_weights.push_back(window_weight(cols[j], x));
    x_lo = std::min(x_lo, cols[j].lo);
    x_hi = std::max(x_hi, cols[j].hi);
  }
  const int64_t span = x_hi - x_lo;
  // Channels-last sources are contiguous across (x, c): one vectorisable run per row.
  const bool interleaved = img.stride_c == 1 && img.stride_w == img.c;
  scratch.line.resize(static_cast<size_t>(span * img.c));
  float* line = scratch.line.data();

  for (int64_t i = begin; i < end; ++i) {
    // Vertical pass into line[(x - x_lo) * C + c] (interleaved) or line[c * span + x - x_lo].
    const FilterWindow wy = filter_window(job.y0, scale_y, i, img.h);
    const int64_t taps = wy.hi - wy.lo;
    scratch.rows.resize(taps);
    scratch.row_weights.resize(taps);
    for (int64_t c = 0; c < (interleaved ? 1 : img.c); ++c) {
      for (int64_t t = 0; t < taps; ++t) {
        scratch.rows[t] = base + (wy.lo + t) * img.stride_h + x_lo * img.stride_w + c * img.stride_c;
        scratch.row_weights[t] = window_weight(wy, wy.lo + t);
      }
      const T* const* rows = reinterpret_cast<const T* const*>(scratch.rows.data());
      if (interleaved) {
        accumulate_rows(line, rows, scratch.row_weights.data(), taps, 1, span * img.c);
      } else {
        accumulate_rows(line + c * span, rows, scratch.row_weights.data(), taps, img.stride_w, span);
      }
    }
    // Horizontal pass.
    const int64_t offset = i * job.out_w;
    if (interleaved && img.c == 3) {
      filter_row_rgb<OUT>(line, scratch.col_weights.data(), scratch.col_start.data(), cols.data(), x_lo, job.out_w,
                          out_ptr<OUT>(job.out, offset), out_ptr<OUT>(job.out, plane + offset),
                          out_ptr<OUT>(job.out, 2 * plane + offset), a.scale, a.shift);
      continue;
    }
    const int64_t step = interleaved ? img.c : 1;
    for (int64_t c = 0; c < img.c; ++c) {
      const float* channel = interleaved ? line + c : line + c * span;
      for (int64_t j = 0; j < job.out_w; ++j) {
        const float* weights = scratch.col_weights.data() + scratch.col_start[j];
        const float* src = channel + (cols[j].lo - x_lo) * step;
        const int64_t n = cols[j].hi - cols[j].lo;
        float v = 0.0f;
        for (int64_t k = 0; k < n; ++k) v = madd(weights[k], src[k * step], v);
        store<OUT>(job.out, c * plane + offset + j, v * a.scale[c] + a.shift[c]);
      }
    }
  }
}

// ---------------------------------------------------------------- direct (the CUDA formulas)

template <typename T>
void direct_rows(const CropArgs& a, const PatchJob& job, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i)
    for (int64_t j = 0; j < job.out_w; ++j)
      compute_pixel<T>(a.image, job, i, j, a.scale, a.shift, a.out_type, a.antialias);
}

// ---------------------------------------------------------------- dispatch

template <typename T, int OUT>
void run_range(const CropArgs& a, const RowRange& r, bool direct, FilterScratch& scratch) {
  const PatchJob job = load_job(a.boxes, a.jobs, r.job);
  if (direct) {
    direct_rows<T>(a, job, r.begin, r.end);
  } else if (is_plain_copy(job, a.image)) {
    copy_rows<T, OUT>(a, job, r.begin, r.end);
  } else if (a.antialias) {
    filtered_rows<T, OUT>(a, job, r.begin, r.end, scratch);
  } else {
    bilinear_rows<T, OUT>(a, job, r.begin, r.end);
  }
}

template <typename T>
void run_range_typed(const CropArgs& a, const RowRange& r, bool direct, FilterScratch& scratch) {
  switch (a.out_type) {
    case kOutFloat32: run_range<T, kOutFloat32>(a, r, direct, scratch); break;
    case kOutFloat16: run_range<T, kOutFloat16>(a, r, direct, scratch); break;
    default: run_range<T, kOutBFloat16>(a, r, direct, scratch); break;
  }
}

// Split the output rows of all jobs into work items: whole patches when there are plenty,
// row chunks when a few large patches would leave threads idle.
std::vector<RowRange> make_work(const CropArgs& a, int num_threads) {
  const int64_t target_items = 8 * static_cast<int64_t>(num_threads);
  const int64_t chunks_per_job = std::max<int64_t>(1, (target_items + a.num_boxes - 1) / std::max<int64_t>(a.num_boxes, 1));
  std::vector<RowRange> work;
  work.reserve(static_cast<size_t>(a.num_boxes * chunks_per_job));
  for (int64_t b = 0; b < a.num_boxes; ++b) {
    const int64_t rows = a.jobs[3 * b + 1];
    const int64_t chunk = std::max<int64_t>(1, (rows + chunks_per_job - 1) / chunks_per_job);
    for (int64_t begin = 0; begin < rows; begin += chunk) work.push_back({b, begin, std::min(rows, begin + chunk)});
  }
  return work;
}

}  // namespace

void crop_resize_cpu(const CropArgs& args, int num_threads, bool direct) {
  const std::vector<RowRange> work = make_work(args, num_threads);
  const int64_t count = static_cast<int64_t>(work.size());
#ifdef MSGF_WITH_OPENMP
#pragma omp parallel num_threads(num_threads)
#endif
  {
    FilterScratch scratch;
#ifdef MSGF_WITH_OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (int64_t w = 0; w < count; ++w) {
      if (args.image.src_type == kSrcUInt8) {
        run_range_typed<uint8_t>(args, work[w], direct, scratch);
      } else {
        run_range_typed<float>(args, work[w], direct, scratch);
      }
    }
  }
}

}  // namespace MSGF_CPU_ISA
}  // namespace msgf
