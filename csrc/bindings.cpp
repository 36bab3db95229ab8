// pybind11 binding of the crop-and-resize op. Pointers arrive as Python ints
// (tensor.data_ptr()); the Python wrapper msgf/ops/crop.py has validated every argument and
// owns every buffer for the duration of the call.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "crop_resize.h"

namespace py = pybind11;

namespace {

template <typename T>
T* as_ptr(std::uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

msgf::CropArgs make_args(std::uintptr_t image, int src_type, const std::array<int64_t, 4>& shape,
                         const std::array<int64_t, 4>& strides, std::uintptr_t boxes, std::uintptr_t jobs,
                         int64_t num_boxes, int64_t max_out_pixels, std::uintptr_t scale, std::uintptr_t shift,
                         int out_type, bool antialias) {
  msgf::CropArgs args;
  args.image = {as_ptr<const void>(image), src_type, shape[0], shape[1], shape[2], shape[3],
                strides[0], strides[1], strides[2], strides[3]};
  args.boxes = as_ptr<const float>(boxes);
  args.jobs = as_ptr<const int64_t>(jobs);
  args.num_boxes = num_boxes;
  args.max_out_pixels = max_out_pixels;
  args.scale = as_ptr<const float>(scale);
  args.shift = as_ptr<const float>(shift);
  args.out_type = out_type;
  args.antialias = antialias;
  return args;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "msgf compiled kernels (crop-and-resize); call through msgf.ops, which validates arguments";

  m.def(
      "crop_resize_cpu",
      [](std::uintptr_t image, int src_type, std::array<int64_t, 4> shape, std::array<int64_t, 4> strides,
         std::uintptr_t boxes, std::uintptr_t jobs, int64_t num_boxes, int64_t max_out_pixels, std::uintptr_t scale,
         std::uintptr_t shift, int out_type, bool antialias, int num_threads, bool direct) {
        const msgf::CropArgs args = make_args(image, src_type, shape, strides, boxes, jobs, num_boxes, max_out_pixels,
                                              scale, shift, out_type, antialias);
        py::gil_scoped_release release;
        msgf::crop_resize_cpu(args, num_threads, direct);
      },
      py::arg("image"), py::arg("src_type"), py::arg("shape"), py::arg("strides"), py::arg("boxes"), py::arg("jobs"),
      py::arg("num_boxes"), py::arg("max_out_pixels"), py::arg("scale"), py::arg("shift"), py::arg("out_type"),
      py::arg("antialias"), py::arg("num_threads"), py::arg("direct") = false);

#ifdef MSGF_WITH_CUDA
  m.def(
      "crop_resize_cuda",
      [](std::uintptr_t image, int src_type, std::array<int64_t, 4> shape, std::array<int64_t, 4> strides,
         std::uintptr_t boxes, std::uintptr_t jobs, int64_t num_boxes, int64_t max_out_pixels, std::uintptr_t scale,
         std::uintptr_t shift, int out_type, bool antialias, int device, std::uintptr_t stream) {
        const msgf::CropArgs args = make_args(image, src_type, shape, strides, boxes, jobs, num_boxes, max_out_pixels,
                                              scale, shift, out_type, antialias);
        std::string error;
        {
          py::gil_scoped_release release;
          error = msgf::crop_resize_cuda(args, device, as_ptr<void>(stream));
        }
        if (!error.empty()) throw std::runtime_error("msgf crop_resize CUDA launch failed: " + error);
      },
      py::arg("image"), py::arg("src_type"), py::arg("shape"), py::arg("strides"), py::arg("boxes"), py::arg("jobs"),
      py::arg("num_boxes"), py::arg("max_out_pixels"), py::arg("scale"), py::arg("shift"), py::arg("out_type"),
      py::arg("antialias"), py::arg("device"), py::arg("stream"));
  m.attr("has_cuda") = true;
#else
  m.attr("has_cuda") = false;
#endif

  m.attr("cpu_isa") = msgf::cpu_kernel_isa();
#ifdef MSGF_WITH_OPENMP
  m.attr("has_openmp") = true;
#else
  m.attr("has_openmp") = false;
#endif
}
