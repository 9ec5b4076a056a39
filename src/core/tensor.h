// Tensor: a non-owning view of a contiguous, row-major array in one device's memory.
// Ownership lives in Buffer (backend/backend.h) or in the caller.
#pragma once
#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "core/dtype.h"
#include "core/error.h"

namespace tl {

enum class Device : uint8_t { CPU, CUDA };
const char* device_name(Device d);

constexpr int kMaxDims = 4;

struct Shape {
  std::array<int64_t, kMaxDims> dims{};
  int ndim = 0;

  Shape() = default;
  Shape(std::initializer_list<int64_t> d);
  int64_t operator[](int i) const { return dims[size_t(i)]; }
  int64_t numel() const;
  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string str() const;  // "[2, 3]"
};

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::F32;
  Device device = Device::CPU;
  Shape shape;

  Tensor() = default;
  Tensor(void* d, DType t, Device dev, Shape s) : data(d), dtype(t), device(dev), shape(s) {}

  bool empty() const { return data == nullptr; }
  int ndim() const { return shape.ndim; }
  int64_t dim(int i) const;  // negative i counts from the end
  int64_t numel() const { return shape.numel(); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }

  template <class T>
  T* ptr() const {
    return static_cast<T*>(data);
  }

  // Same memory, new shape (numel must match).
  Tensor view(Shape s) const;
  // Rows [begin, end) of the first dimension.
  Tensor rows(int64_t begin, int64_t end) const;
  std::string str() const;  // "f32[2, 3]@cpu"
};

// Preconditions shared by every op: "op: name must be f32[...]" style messages.
void check_dtype(const char* op, const char* name, const Tensor& t, DType want);
void check_shape(const char* op, const char* name, const Tensor& t, const Shape& want);
void check_device(const char* op, const char* name, const Tensor& t, Device want);
// Whether a's and b's bytes overlap (false when either is empty).
bool shares_memory(const Tensor& a, const Tensor& b);

}  // namespace tl
