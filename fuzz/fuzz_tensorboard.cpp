// fuzz_tensorboard.cpp - the TensorBoard event reader (engine/tensorboard_reader.h): TFRecord
// framing with both CRCs, then each Event's protobuf fields. Lengths that point past the end,
// nested messages that lie about their size and varints that never end are refused.
#include "engine/tensorboard_reader.h"
#include "fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  engine::fuzz::expect_success_or_refusal(
      [&] { engine::decode_tensorboard_events(engine::fuzz::as_text(data, size), "fuzz"); });
  return 0;
}
