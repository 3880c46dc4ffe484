// A CPU emulator for gpunn's CUDA kernels, for tests on machines without a GPU.
//
// gpunn_kernels.cu is compiled by g++ with this header force-included (-include). Each
// CUDA thread of a block runs as a fibre (ucontext) on one OS thread; __syncthreads()
// switches to the next fibre, and a block moves past a barrier only when every live
// thread of it has arrived. Between barriers the threads run in a shuffled order and the
// blocks in a shuffled order, so a kernel that depends on an order CUDA does not promise
// (a missing barrier, "block 0 finishes last") gives wrong numbers here too. A barrier
// reached by only part of a block is reported as an error, as it would hang on a GPU.
//
// What it is not: it does not model warps, caches or memory ordering between blocks, and
// its maths library is the host's (results agree with CUDA's to a few ulps, not bits).
#pragma once

#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <vector>

using std::exp;
using std::expm1;
using std::fabs;
using std::fmax;
using std::log;
using std::log1p;
using std::sqrt;
using std::tanh;

#define __global__ __attribute__((visibility("default")))
#define __device__
#define __forceinline__ inline
#define __restrict__

struct emu_dim3 {
    unsigned x = 1, y = 1, z = 1;
};

// The indices the scheduler sets before resuming each fibre.
static emu_dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace emu {

struct Thread {
    ucontext_t ctx;
    std::vector<char> stack;
    emu_dim3 idx;
    bool done = false, waiting = false;
};

struct State {
    ucontext_t scheduler;
    std::vector<Thread> threads;
    std::vector<unsigned char> smem;
    const std::function<void()>* body = nullptr;
    Thread* current = nullptr;
    std::mt19937 rng{12345};
    int error = 0;
};

inline State& state() {
    static State s;
    return s;
}

inline void trampoline() {
    State& s = state();
    (*s.body)();
    s.current->done = true;
    swapcontext(&s.current->ctx, &s.scheduler);
}

inline void resume(Thread& t) {
    State& s = state();
    s.current = &t;
    threadIdx = t.idx;
    swapcontext(&s.scheduler, &t.ctx);
}

// Runs the fibres of one block until all have finished.
inline void run_block(const std::function<void()>& body) {
    State& s = state();
    unsigned n = blockDim.x * blockDim.y * blockDim.z;
    s.threads.resize(n);
    s.body = &body;
    for (unsigned i = 0; i < n; ++i) {
        Thread& t = s.threads[i];
        t.stack.resize(1 << 16);
        t.done = t.waiting = false;
        t.idx.x = i % blockDim.x;
        t.idx.y = (i / blockDim.x) % blockDim.y;
        t.idx.z = i / (blockDim.x * blockDim.y);
        getcontext(&t.ctx);
        t.ctx.uc_stack.ss_sp = t.stack.data();
        t.ctx.uc_stack.ss_size = t.stack.size();
        t.ctx.uc_link = nullptr;
        makecontext(&t.ctx, trampoline, 0);
    }
    std::vector<unsigned> order(n);
    for (unsigned i = 0; i < n; ++i) order[i] = i;
    while (true) {
        std::shuffle(order.begin(), order.end(), s.rng);
        for (unsigned i : order) {
            Thread& t = s.threads[i];
            if (!t.done) resume(t);
        }
        unsigned done = 0, waiting = 0;
        for (Thread& t : s.threads) {
            done += t.done;
            waiting += t.waiting;
        }
        if (done == n) return;
        if (done + waiting == n && done > 0) {
            std::fprintf(stderr, "emu: __syncthreads reached by %u of %u threads of block "
                         "(%u,%u)\n", waiting, n, blockIdx.x, blockIdx.y);
            s.error = 1;
            return;  // the waiting fibres are abandoned, as a GPU would hang
        }
        for (Thread& t : s.threads) t.waiting = false;
    }
}

}  // namespace emu

inline void __syncthreads() {
    emu::State& s = emu::state();
    s.current->waiting = true;
    swapcontext(&s.current->ctx, &s.scheduler);
}

inline void __threadfence() {}

inline unsigned atomicAdd(unsigned* address, unsigned val) {
    unsigned old = *address;
    *address = old + val;
    return old;
}

inline unsigned atomicInc(unsigned* address, unsigned limit) {
    unsigned old = *address;
    *address = old >= limit ? 0 : old + 1;
    return old;
}

static emu_dim3 emu_grid, emu_block;

// The launch configuration of the next kernel call; seed shuffles the orders.
extern "C" __attribute__((visibility("default"))) void emu_configure(
    unsigned gx, unsigned gy, unsigned bx, unsigned by, unsigned long long smem,
    unsigned seed) {
    emu_grid.x = gx;
    emu_grid.y = gy;
    emu_block.x = bx;
    emu_block.y = by;
    emu::state().smem.assign(smem, 0xA5);  // garbage, as uninitialised shared memory is
    emu::state().rng.seed(seed);
    emu::state().error = 0;
}

extern "C" __attribute__((visibility("default"))) int emu_error() { return emu::state().error; }

inline unsigned char* emu_smem() { return emu::state().smem.data(); }

// Runs `body` as every thread of every block of the configured grid.
inline void emu_launch(const std::function<void()>& body) {
    gridDim = emu_grid;
    blockDim = emu_block;
    std::vector<emu_dim3> blocks;
    for (unsigned y = 0; y < gridDim.y; ++y)
        for (unsigned x = 0; x < gridDim.x; ++x) blocks.push_back(emu_dim3{x, y, 1});
    std::shuffle(blocks.begin(), blocks.end(), emu::state().rng);
    for (const emu_dim3& b : blocks) {
        blockIdx = b;
        // Shared memory does not survive from one block to the next.
        std::fill(emu::state().smem.begin(), emu::state().smem.end(), 0xA5);
        emu::run_block(body);
        if (emu::state().error) return;
    }
}

#define GPUNN_SHARED(T, name) T* name = reinterpret_cast<T*>(emu_smem())
#define GPUNN_KERNEL_BODY(...) emu_launch([&] { __VA_ARGS__; })
