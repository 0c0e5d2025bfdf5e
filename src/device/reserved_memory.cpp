// device/reserved_memory.h with CUDA's virtual memory management. The driver's entry points are
// looked up through the runtime (cudaGetDriverEntryPointByVersion), so nothing links libcuda and a
// machine without a driver still runs the CPU path.
#include "device/reserved_memory.h"

#include <cuda.h>

#include <algorithm>
#include <type_traits>

#include "base/error.h"
#include "device/cuda_check.h"
#include "device/cuda_device.h"
#include "device/cuda_stream.h"

namespace r1::cuda {

namespace {

struct Driver {
  decltype(&cuMemGetAllocationGranularity) granularity = nullptr;
  decltype(&cuMemAddressReserve) address_reserve = nullptr;
  decltype(&cuMemAddressFree) address_free = nullptr;
  decltype(&cuMemCreate) create = nullptr;
  decltype(&cuMemRelease) release = nullptr;
  decltype(&cuMemMap) map = nullptr;
  decltype(&cuMemUnmap) unmap = nullptr;
  decltype(&cuMemSetAccess) set_access = nullptr;
};

const Driver& driver() {
  static const Driver d = [] {
    Driver r;
    auto get = [](const char* name, auto& fn) {
      void* p = nullptr;
      cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
      CUDA_CHECK(cudaGetDriverEntryPointByVersion(name, &p, 12000, cudaEnableDefault, &found));
      if (found != cudaDriverEntryPointSuccess || p == nullptr) fail("CUDA driver: no entry point {}", name);
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(p);
    };
    get("cuMemGetAllocationGranularity", r.granularity);
    get("cuMemAddressReserve", r.address_reserve);
    get("cuMemAddressFree", r.address_free);
    get("cuMemCreate", r.create);
    get("cuMemRelease", r.release);
    get("cuMemMap", r.map);
    get("cuMemUnmap", r.unmap);
    get("cuMemSetAccess", r.set_access);
    return r;
  }();
  return d;
}

void check(CUresult r, const char* what) {
  if (r != CUDA_SUCCESS) fail("CUDA driver: {} failed (CUresult {})", what, int(r));
}

CUmemAllocationProp props(int device) {
  CUmemAllocationProp p{};
  p.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  p.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  p.location.id = device;
  return p;
}

}  // namespace

ReservedMemory::ReservedMemory(size_t bytes) {
  stream();  // the device chosen and its context made, or the reason none is usable
  device_ = device_ordinal();
  const Driver& d = driver();
  const CUmemAllocationProp p = props(device_);
  size_t g = 0;
  check(d.granularity(&g, &p, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED), "cuMemGetAllocationGranularity");
  size_ = (std::max<size_t>(bytes, 1) + g - 1) / g * g;
  CUdeviceptr ptr = 0;
  check(d.address_reserve(&ptr, size_, 0, 0, 0), "cuMemAddressReserve");
  ptr_ = uint64_t(ptr);
  try {
    acquire();
  } catch (...) {
    d.address_free(ptr, size_);
    throw;
  }
}

ReservedMemory::~ReservedMemory() {
  try {
    release();
  } catch (...) {  // a broken context: nothing left to give back
  }
  if (ptr_) driver().address_free(CUdeviceptr(ptr_), size_);
}

void ReservedMemory::acquire() {
  if (resident_) return;
  const Driver& d = driver();
  const CUmemAllocationProp p = props(device_);
  CUmemGenericAllocationHandle h = 0;
  const CUresult r = d.create(&h, size_, &p, 0);
  if (r == CUDA_ERROR_OUT_OF_MEMORY) {
    fail("out of GPU memory backing {:.2f} GiB of reserved memory (the KV cache pool): {:.2f} GiB free",
         double(size_) / double(1 << 30), double(memory_info().free) / double(1 << 30));
  }
  check(r, "cuMemCreate");
  if (const CUresult m = d.map(CUdeviceptr(ptr_), size_, 0, h, 0); m != CUDA_SUCCESS) {
    d.release(h);
    check(m, "cuMemMap");
  }
  CUmemAccessDesc access{};
  access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  access.location.id = device_;
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  if (const CUresult a = d.set_access(CUdeviceptr(ptr_), size_, &access, 1); a != CUDA_SUCCESS) {
    d.unmap(CUdeviceptr(ptr_), size_);
    d.release(h);
    check(a, "cuMemSetAccess");
  }
  handle_ = uint64_t(h);
  resident_ = true;
}

void ReservedMemory::release() {
  if (!resident_) return;
  synchronize();  // no queued work may still read or write it
  const Driver& d = driver();
  check(d.unmap(CUdeviceptr(ptr_), size_), "cuMemUnmap");
  check(d.release(CUmemGenericAllocationHandle(handle_)), "cuMemRelease");
  handle_ = 0;
  resident_ = false;
}

}  // namespace r1::cuda
