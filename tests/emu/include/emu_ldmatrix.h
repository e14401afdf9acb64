// ldmatrix of the CUDA emulator (tests/emu/simt.h), for kernels' CLIP_CUDA_EMU branches:
// ldmatrix.sync.aligned.m8n8.{x1,x2,x4}{,.trans}.shared.b16 as a warp collective (all 32
// lanes, the same count and .trans in each). The implementation is in tests/emu/emu.cpp.
//
// Matrix i (i < count) is 8 rows of 8 16-bit values; its row r starts at the address given by
// lane 8 i + r (16-byte aligned, in shared memory: a pointer into cudaMalloc memory is an
// error); the other lanes' addresses are not read. Lane l (g = l / 4, t = l % 4) receives in
// regs[i], low half first:
//   plain:  row g, columns 2t and 2t + 1 of matrix i;
//   .trans: rows 2t and 2t + 1, column g of matrix i (the transposed matrix's row g).
#pragma once
#include <cstdint>

namespace emu {

void ldmatrix(uint32_t* regs, int count, bool trans, const void* row);

}  // namespace emu
