// CPU kernel of the crop-and-resize op: one OpenMP parallel region over (patch, row-chunk)
// work items for all boxes of the call, whatever their output sizes.
//
// Three paths, all built from the arithmetic in crop_resize_common.h:
//  - copy:      an integer-aligned box inside the image, output size == box size (every focus
//               patch): a strided copy + normalise. Bit-identical to the bilinear path, which
//               reduces to the same value when both fractions are zero.
//  - bilinear:  per-pixel taps, precomputed per column and per row.
//  - filtered:  antialiased, separable: a vertical pass over whole source rows (contiguous,
//               vectorisable) into a small float buffer, then a horizontal pass.
#include <algorithm>
#include <vector>

#ifdef MSGF_WITH_OPENMP
#include <omp.h>
#endif

#include "crop_resize.h"

namespace msgf {
namespace {

// Hot loops get an AVX2 clone picked at load time; the default clone runs anywhere.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MSGF_MULTIVERSION __attribute__((target_clones("avx2", "default")))
#else
#define MSGF_MULTIVERSION
#endif

template <int OUT>
inline void store(void* out, int64_t index, float v) {
  if (OUT == kOutFloat32) {
    static_cast<float*>(out)[index] = v;
  } else if (OUT == kOutFloat16) {
    static_cast<uint16_t*>(out)[index] = to_float16_bits(v);
  } else {
    static_cast<uint16_t*>(out)[index] = to_bfloat16_bits(v);
  }
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

template <typename T, int OUT>
MSGF_MULTIVERSION void copy_row_strided(const T* src, int64_t stride_w, void* out, int64_t offset,
                                        int64_t n, float scale, float shift) {
  for (int64_t j = 0; j < n; ++j) store<OUT>(out, offset + j, static_cast<float>(src[j * stride_w]) * scale + shift);
}

// Interleaved RGB (uint8 as decoded, or float channels-last) into three planes in one read.
template <typename T, int OUT>
MSGF_MULTIVERSION void copy_row_rgb(const T* src, void* out, int64_t offset, int64_t plane, int64_t n,
                                    const float* scale, const float* shift) {
  for (int64_t j = 0; j < n; ++j) {
    store<OUT>(out, offset + j, static_cast<float>(src[3 * j]) * scale[0] + shift[0]);
    store<OUT>(out, plane + offset + j, static_cast<float>(src[3 * j + 1]) * scale[1] + shift[1]);
    store<OUT>(out, 2 * plane + offset + j, static_cast<float>(src[3 * j + 2]) * scale[2] + shift[2]);
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
    if (rgb_interleaved) {
      copy_row_rgb<T, OUT>(row, job.out, i * job.out_w, plane, job.out_w, a.scale, a.shift);
    } else {
      for (int64_t c = 0; c < img.c; ++c)
        copy_row_strided<T, OUT>(row + c * img.stride_c, img.stride_w, job.out, c * plane + i * job.out_w,
                                 job.out_w, a.scale[c], a.shift[c]);
    }
  }
}

// ---------------------------------------------------------------- bilinear path

template <typename T, int OUT>
void bilinear_rows(const CropArgs& a, const PatchJob& job, int64_t begin, int64_t end) {
  const ImageView& img = a.image;
  const T* base = static_cast<const T*>(img.data) + job.batch * img.stride_n;
  const float scale_y = (job.y1 - job.y0) / static_cast<float>(job.out_h);
  const float scale_x = (job.x1 - job.x0) / static_cast<float>(job.out_w);
  const int64_t plane = job.out_h * job.out_w;
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

// acc[k] += weight * src[k * stride] for k < n: the vertical pass over one source row.
template <typename T>
MSGF_MULTIVERSION void accumulate_row(float* acc, const T* src, int64_t stride, int64_t n, float weight) {
  if (stride == 1) {
    for (int64_t k = 0; k < n; ++k) acc[k] += weight * static_cast<float>(src[k]);
  } else {
    for (int64_t k = 0; k < n; ++k) acc[k] += weight * static_cast<float>(src[k * stride]);
  }
}

template <typename T, int OUT>
void filtered_rows(const CropArgs& a, const PatchJob& job, int64_t begin, int64_t end,
                   std::vector<float>& buffer) {
  const ImageView& img = a.image;
  const T* base = static_cast<const T*>(img.data) + job.batch * img.stride_n;
  const float scale_y = (job.y1 - job.y0) / static_cast<float>(job.out_h);
  const float scale_x = (job.x1 - job.x0) / static_cast<float>(job.out_w);
  const int64_t plane = job.out_h * job.out_w;

  std::vector<FilterWindow> cols(job.out_w);
  int64_t x_lo = img.w, x_hi = 0;
  for (int64_t j = 0; j < job.out_w; ++j) {
    cols[j] = filter_window(job.x0, scale_x, j, img.w);
    x_lo = std::min(x_lo, cols[j].lo);
    x_hi = std::max(x_hi, cols[j].hi);
  }
  const int64_t span = x_hi - x_lo;
  // Channels-last sources are contiguous across (x, c): one vectorisable run per row.
  const bool interleaved = img.stride_c == 1 && img.stride_w == img.c;
  const int64_t row_len = span * img.c;
  buffer.assign(static_cast<size_t>(row_len), 0.0f);

  for (int64_t i = begin; i < end; ++i) {
    // Vertical pass: buffer[(x - x_lo) * C + c] (interleaved) or buffer[c * span + x - x_lo].
    const FilterWindow wy = filter_window(job.y0, scale_y, i, img.h);
    std::fill(buffer.begin(), buffer.end(), 0.0f);
    for (int64_t y = wy.lo; y < wy.hi; ++y) {
      const float weight = window_weight(wy, y);
      const T* row = base + y * img.stride_h + x_lo * img.stride_w;
      if (interleaved) {
        accumulate_row(buffer.data(), row, 1, row_len, weight);
      } else {
        for (int64_t c = 0; c < img.c; ++c)
          accumulate_row(buffer.data() + c * span, row + c * img.stride_c, img.stride_w, span, weight);
      }
    }
    // Horizontal pass.
    const int64_t step = interleaved ? img.c : 1;
    for (int64_t c = 0; c < img.c; ++c) {
      const float* line = interleaved ? buffer.data() + c : buffer.data() + c * span;
      const int64_t offset = c * plane + i * job.out_w;
      for (int64_t j = 0; j < job.out_w; ++j) {
        const FilterWindow& wx = cols[j];
        float v = 0.0f;
        for (int64_t x = wx.lo; x < wx.hi; ++x) v += window_weight(wx, x) * line[(x - x_lo) * step];
        store<OUT>(job.out, offset + j, v * a.scale[c] + a.shift[c]);
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
void run_range(const CropArgs& a, const RowRange& r, bool direct, std::vector<float>& buffer) {
  const PatchJob job = load_job(a.boxes, a.jobs, r.job);
  if (direct) {
    direct_rows<T>(a, job, r.begin, r.end);
  } else if (is_plain_copy(job, a.image)) {
    copy_rows<T, OUT>(a, job, r.begin, r.end);
  } else if (a.antialias) {
    filtered_rows<T, OUT>(a, job, r.begin, r.end, buffer);
  } else {
    bilinear_rows<T, OUT>(a, job, r.begin, r.end);
  }
}

template <typename T>
void run_range_typed(const CropArgs& a, const RowRange& r, bool direct, std::vector<float>& buffer) {
  switch (a.out_type) {
    case kOutFloat32: run_range<T, kOutFloat32>(a, r, direct, buffer); break;
    case kOutFloat16: run_range<T, kOutFloat16>(a, r, direct, buffer); break;
    default: run_range<T, kOutBFloat16>(a, r, direct, buffer); break;
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
  if (num_threads < 1) num_threads = 1;
  const std::vector<RowRange> work = make_work(args, num_threads);
  const int64_t count = static_cast<int64_t>(work.size());
#ifdef MSGF_WITH_OPENMP
#pragma omp parallel num_threads(num_threads)
#endif
  {
    std::vector<float> buffer;  // per-thread scratch for the filtered path
#ifdef MSGF_WITH_OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (int64_t w = 0; w < count; ++w) {
      if (args.image.src_type == kSrcUInt8) {
        run_range_typed<uint8_t>(args, work[w], direct, buffer);
      } else {
        run_range_typed<float>(args, work[w], direct, buffer);
      }
    }
  }
}

}  // namespace msgf
