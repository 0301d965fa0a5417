// openmp_wait.h - makes idle OpenMP threads sleep instead of spin.
//
// Why. Idle OpenMP threads spin for a while after each parallel region by default, against
// whatever else wants the cores: the data loader's decoding threads, and (before ops/matmul_cpu.cpp
// set OpenBLAS to one thread and tiled the GEMMs over OpenMP itself) OpenBLAS's own pthreads, with
// which a MoCo step on 2 cores ran 3x slower (6.4 s against 2.0 s per step of bench_moco_step
// --quick). libgomp reads its wait
// policy once, from OMP_WAIT_POLICY, when it is loaded - before main() - so the only way to set
// it from inside the program is to start the program again with the variable set.
#pragma once

namespace engine {

// When OMP_WAIT_POLICY is unset, sets it to "passive" and re-executes this program with the same
// arguments (same process, same pid); returns normally when it was already set (by the user, or
// by the re-execution) or when re-executing fails.
void use_passive_openmp_wait(char** argv);

}  // namespace engine
