#include <algorithm>
#include <cstdlib>

#include "backend/backend.h"

namespace tl {

// Backends whose ops complete at once need no pinned memory: plain host memory.
void* Backend::host_allocate(size_t bytes) {
  void* p = std::malloc(std::max<size_t>(bytes, 1));
  TL_CHECK(p, "host_allocate: out of host memory for ", bytes, " bytes");
  return p;
}
void Backend::host_deallocate(void* p) noexcept { std::free(p); }

Buffer::Buffer(Backend& be, size_t bytes) : be_(&be), bytes_(bytes) {
  ptr_ = bytes ? be.allocate(bytes) : nullptr;
}

Buffer::Buffer(Backend& be, void* ptr, size_t bytes, std::function<void()> free)
    : be_(&be), ptr_(ptr), bytes_(bytes), free_(std::move(free)) {}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    release();
    be_ = o.be_;
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    free_ = std::move(o.free_);
    o.ptr_ = nullptr;
    o.bytes_ = 0;
    o.free_ = nullptr;
  }
  return *this;
}

void Buffer::release() noexcept {
  if (free_)
    free_();
  else if (ptr_ && be_)
    be_->deallocate(ptr_);
  ptr_ = nullptr;
  bytes_ = 0;
  free_ = nullptr;
}

Tensor Buffer::tensor(DType dtype, Shape shape, size_t offset_bytes) const {
  size_t need = offset_bytes + size_t(shape.numel()) * dtype_size(dtype);
  TL_CHECK(need <= bytes_, "buffer view of ", shape.str(), " ", dtype_name(dtype), " at offset ",
           offset_bytes, " exceeds the buffer (", bytes_, " bytes)");
  TL_ASSERT(be_ != nullptr);
  return Tensor(static_cast<char*>(ptr_) + offset_bytes, dtype, be_->device(), shape);
}

}  // namespace tl
