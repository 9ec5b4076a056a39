#include "core/tensor.h"

#include <sstream>

namespace tl {

const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

Shape::Shape(std::initializer_list<int64_t> d) {
  TL_CHECK(d.size() <= size_t(kMaxDims), "tensor shape has ", d.size(), " dims; at most ", kMaxDims,
           " are supported");
  for (int64_t v : d) dims[size_t(ndim++)] = v;
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= dims[size_t(i)];
  return n;
}

bool Shape::operator==(const Shape& o) const {
  if (ndim != o.ndim) return false;
  for (int i = 0; i < ndim; ++i)
    if (dims[size_t(i)] != o.dims[size_t(i)]) return false;
  return true;
}

std::string Shape::str() const {
  std::ostringstream os;
  os << '[';
  for (int i = 0; i < ndim; ++i) os << (i ? ", " : "") << dims[size_t(i)];
  os << ']';
  return os.str();
}

int64_t Tensor::dim(int i) const {
  if (i < 0) i += shape.ndim;
  TL_CHECK(i >= 0 && i < shape.ndim, "dimension ", i, " out of range for ", str());
  return shape[i];
}

Tensor Tensor::view(Shape s) const {
  TL_CHECK(s.numel() == numel(), "cannot view ", str(), " as ", s.str());
  return Tensor(data, dtype, device, s);
}

Tensor Tensor::rows(int64_t begin, int64_t end) const {
  TL_CHECK(shape.ndim >= 1 && begin >= 0 && begin <= end && end <= shape[0], "rows [", begin, ", ",
           end, ") out of range for ", str());
  Shape s = shape;
  s.dims[0] = end - begin;
  int64_t row = shape[0] == 0 ? 0 : numel() / shape[0];
  char* p = static_cast<char*>(data) + size_t(begin * row) * dtype_size(dtype);
  return Tensor(p, dtype, device, s);
}

std::string Tensor::str() const {
  return cat(dtype_name(dtype), shape.str(), "@", device_name(device));
}

void check_dtype(const char* op, const char* name, const Tensor& t, DType want) {
  TL_CHECK(t.dtype == want, op, ": ", name, " must be ", dtype_name(want), ", got ", t.str());
}

void check_shape(const char* op, const char* name, const Tensor& t, const Shape& want) {
  TL_CHECK(t.shape == want, op, ": ", name, " must have shape ", want.str(), ", got ", t.str());
}

void check_device(const char* op, const char* name, const Tensor& t, Device want) {
  TL_CHECK(t.device == want, op, ": ", name, " must be on ", device_name(want), ", got ", t.str());
}

bool shares_memory(const Tensor& a, const Tensor& b) {
  if (a.empty() || b.empty()) return false;
  const auto* pa = static_cast<const char*>(a.data);
  const auto* pb = static_cast<const char*>(b.data);
  return pa < pb + b.nbytes() && pb < pa + a.nbytes();
}

}  // namespace tl
