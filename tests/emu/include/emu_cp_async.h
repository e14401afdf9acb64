// cp.async of the CUDA emulator (sm_80's asynchronous global -> shared copies), for kernels'
// CLIP_CUDA_EMU branches. Here a copy is done when it is issued, so commit_group and
// wait_group have nothing to wait for: a kernel that reads its shared memory before its
// wait_group and __syncthreads computes the right answer here and not on a GPU (that race
// is not caught). What is checked is what the PTX ISA requires of the operands.
#pragma once
#include "cuda_runtime.h"

namespace emu {

// cp.async.cg.shared.global [dst], [src], 16, src_bytes: src_bytes (0..16) bytes from src,
// the rest of the 16 bytes of dst zero; both addresses 16-byte aligned. Nothing is read
// when src_bytes is 0.
inline void cp_async_cg16(void* dst, const void* src, int src_bytes) {
  if ((uintptr_t)dst % 16 || (uintptr_t)src % 16)
    kernel_error("cp.async.cg: addresses %p <- %p are not 16-byte aligned", dst, src);
  if (src_bytes < 0 || src_bytes > 16) kernel_error("cp.async.cg: source size %d is not in 0..16", src_bytes);
  std::memcpy(dst, src, (size_t)src_bytes);
  std::memset((char*)dst + src_bytes, 0, (size_t)(16 - src_bytes));
}
// cp.async.commit_group, cp.async.wait_group N: the copies are already complete.
inline void cp_async_commit() {}
inline void cp_async_wait(int /*pending*/) {}

}  // namespace emu
