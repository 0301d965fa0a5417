// fuzz_safetensors.cpp - the safetensors reader (engine/serialize.h) on arbitrary bytes: whatever
// the header claims (sizes, offsets, shapes, dtypes, names, metadata), a file is read within its
// own bounds or refused. What it reads must encode back to a file that decodes the same.
#include "engine/serialize.h"
#include "fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  engine::SafetensorsFile file;
  try {
    file = engine::decode_safetensors(std::string(engine::fuzz::as_text(data, size)), "fuzz");
  } catch (const engine::Error&) {
    return 0;
  }
  const engine::SafetensorsFile again = engine::decode_safetensors(engine::encode_safetensors(file.tensors, file.metadata));
  FUZZ_REQUIRE(again.tensors.size() == file.tensors.size() && again.metadata == file.metadata,
               "a file that was read writes back to one that reads the same");
  for (size_t i = 0; i < file.tensors.size(); ++i)
    FUZZ_REQUIRE(again.tensors[i].first == file.tensors[i].first &&
                     again.tensors[i].second.shape() == file.tensors[i].second.shape(),
                 "names and shapes survive a round trip");
  return 0;
}
