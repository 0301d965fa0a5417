// fuzz_run_metadata.cpp - the text a run leaves and later reads back: a checkpoint's metadata
// values (counts, numbers, the "args" JSON of the run's flags) and metrics.jsonl, which a resumed
// run cuts back to its checkpoint's step (engine/metrics_log.h). Non-UTF-8, deep nesting, huge
// numbers and half-written lines are refused or dropped, never crash.
#include "engine/metrics_log.h"
#include "fuzz/fuzz_common.h"
#include "ssl/run/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(engine::fuzz::as_text(data, size));
  const engine::Metadata m = {{"args", text}, {"value", text}};
  engine::fuzz::expect_success_or_refusal([&] { engine::ssl::checkpoint_args(m, "fuzz"); });
  engine::fuzz::expect_success_or_refusal([&] { engine::ssl::metadata_count(m, "value", "fuzz"); });
  engine::fuzz::expect_success_or_refusal([&] { engine::ssl::metadata_real(m, "value", "fuzz"); });
  const std::string log = engine::fuzz::as_file(data, size, "metrics.jsonl");
  engine::fuzz::expect_success_or_refusal([&] { engine::MetricsLog::read(log); });
  bool cut = false;
  engine::fuzz::expect_success_or_refusal([&] {
    engine::MetricsLog::truncate_after_step(log, static_cast<int64_t>(size % 7) - 1);
    cut = true;
  });
  if (cut) {  // what a resume keeps must read back
    bool readable = true;
    try {
      engine::MetricsLog::read(log);
    } catch (const engine::Error&) {
      readable = false;
    }
    FUZZ_REQUIRE(readable, "a metrics log cut back for a resume reads back");
  }
  return 0;
}
