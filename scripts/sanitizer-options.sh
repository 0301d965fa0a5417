# Sourced by the sanitized runs (test-sanitize.sh, fuzz.sh): how the sanitizers report.
#  - allocator_may_return_null: a refused allocation returns null, so the engine's own
#    out-of-memory message (tested on purpose) is what the user sees, instead of an ASan abort;
#  - detect_leaks: memory still owned at exit by nobody is a finding;
#  - halt_on_error / print_stacktrace: stop at the first report, with where it came from.
export ASAN_OPTIONS=${ASAN_OPTIONS:-allocator_may_return_null=1:detect_leaks=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
