// test_serialize.cpp - safetensors round trips and the refusal of damaged files.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "engine/serialize.h"
#include "tests/common/temp_dir.h"
#include "tests/common/test_helpers.h"

namespace engine::testing {
namespace {

// A header followed by `data`: lets a test build exactly the damaged file it wants.
std::string raw_file(const std::string& header, const std::string& data) {
  std::string bytes(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(bytes.data(), &n, 8);
  return bytes + header + data;
}

// Decodes a file that must be refused; returns the message so the test can check it is useful.
std::string refusal(const std::string& bytes) {
  try {
    decode_safetensors(bytes, "bad.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "a damaged file was accepted";
  return "";
}

TEST(Safetensors, RoundTripsEveryDtypeShapeAndMetadata) {
  const NamedTensors tensors = {
      {"conv.weight", Tensor::from_vector<float>({1.5f, -2.f, 3.25f, 0.f, 7.f, -1e-8f}, {1, 2, 3})},
      {"double", Tensor::from_vector<double>({3.141592653589793}, {1})},
      {"half", Tensor::from_vector<float>({1.f, -2.5f}, {2}).to(DType::bf16)},
      {"bytes", Tensor::from_vector<uint8_t>({0, 255, 7}, {3})},
      {"ints", Tensor::from_vector<int32_t>({-5, 6}, {2, 1})},
      {"count", Tensor::from_vector<int64_t>({1234567890123}, {})},
      {"empty", Tensor::empty({0, 4})},
      {"transposed", Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3}).transpose(0, 1)},
  };
  const std::string bytes = encode_safetensors(tensors, {{"epoch", "3"}, {"arch", "resnet50"}});
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  EXPECT_EQ(header_len % 8, 0u) << "the data section starts 8-byte aligned";

  const SafetensorsFile file = decode_safetensors(bytes);
  ASSERT_EQ(file.tensors.size(), tensors.size());
  EXPECT_EQ(file.metadata.at("epoch"), "3");
  EXPECT_EQ(file.metadata.at("arch"), "resnet50");
  for (const auto& [name, t] : tensors) {
    const Tensor& back = file.at(name);
    EXPECT_EQ(back.shape(), t.shape()) << name;
    EXPECT_EQ(back.dtype(), t.dtype()) << name;
    if (t.numel() > 0) {  // an empty tensor has no storage to compare
      EXPECT_EQ(std::memcmp(back.data_ptr(), t.contiguous().data_ptr(), t.numel() * dtype_size(t.dtype())), 0)
          << name;
    }
  }
  EXPECT_EQ(file.at("transposed").to_vector<float>(), (std::vector<float>{1, 4, 2, 5, 3, 6}));
}

TEST(Safetensors, ReadsAFileWrittenByTheReferenceLayout) {
  // Written by hand as the Python library writes it: header keys in any order, spaces as padding.
  const std::string data = std::string("\x00\x00\x80\x3f\x00\x00\x00\x40", 8);  // 1.0f, 2.0f
  const SafetensorsFile file = decode_safetensors(
      raw_file(R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}   )", data));
  EXPECT_EQ(file.at("w").to_vector<float>(), (std::vector<float>{1.f, 2.f}));
  EXPECT_EQ(file.metadata.at("format"), "pt");
}

TEST(Safetensors, FileRoundTripIsAtomicAndMissingFilesAreNamed) {
  const TempDir dir("serialize");
  const std::string path = (dir.path() / "x.safetensors").string();
  save_safetensors(path, {{"x", Tensor::full({3}, 2.5)}});
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  EXPECT_EQ(load_safetensors(path).at("x").to_vector<float>(), (std::vector<float>{2.5f, 2.5f, 2.5f}));
  std::filesystem::remove(path);
  try {
    load_safetensors(path);
    ADD_FAILURE() << "a missing file was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos) << e.what();
  }
}

TEST(Safetensors, RefusesDamagedFilesWithAClearMessage) {
  const std::string good = encode_safetensors({{"a", Tensor::full({4}, 1.0)}, {"b", Tensor::full({2}, 2.0)}});
  EXPECT_NE(refusal("").find("shorter than the 8-byte"), std::string::npos);
  EXPECT_NE(refusal(good.substr(0, good.size() - 3)).find("truncated"), std::string::npos);
  EXPECT_NE(refusal(good.substr(0, 20)).find("truncated"), std::string::npos);
  std::string huge = good;
  const uint64_t big = 1ull << 40;
  std::memcpy(huge.data(), &big, 8);
  EXPECT_NE(refusal(huge).find("header claims"), std::string::npos);
  EXPECT_NE(refusal(raw_file("{not json", "")).find("not valid JSON"), std::string::npos);
  EXPECT_NE(refusal(raw_file("[1,2]", "")).find("JSON object"), std::string::npos);
  const std::string eight(8, '\0');
  EXPECT_NE(refusal(raw_file(R"({"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", eight))
                .find("unsupported safetensors dtype 'F8_E4M3'"),
            std::string::npos);
  EXPECT_NE(refusal(raw_file(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight)).find("needs 12 bytes"),
            std::string::npos);
  EXPECT_NE(refusal(raw_file(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", eight))
                .find("non-negative"),
            std::string::npos);
  EXPECT_NE(refusal(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                             eight))
                .find("overlaps"),
            std::string::npos);
  EXPECT_NE(refusal(raw_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", eight)).find("hole"),
            std::string::npos);
  EXPECT_NE(refusal(raw_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", eight + "x"))
                .find("trailing"),
            std::string::npos);
  EXPECT_NE(refusal(raw_file(R"({"w":{"dtype":"F32","shape":[2]}})", eight)).find("data_offsets"), std::string::npos);
  EXPECT_NE(refusal(raw_file(R"({"__metadata__":{"epoch":3}})", "")).find("must be a string"), std::string::npos);
}

// Headers written to make a reader allocate, overflow or guess: each is refused before any tensor
// is allocated (the file here is 8 bytes of data), with a message that says what was wrong.
TEST(Safetensors, RefusesHostileHeadersBeforeAllocating) {
  const std::string eight(8, '\0');
  const auto tensor = [](const std::string& name, const std::string& dtype, const std::string& shape,
                         const std::string& offsets) {
    return fmt::format(R"("{}":{{"dtype":"{}","shape":{},"data_offsets":{}}})", name, dtype, shape, offsets);
  };
  const auto braces = [](const std::string& members) { return fmt::format("{{{}}}", members); };
  // A shape whose element count overflows 64 bits, and one that claims a terabyte.
  EXPECT_NE(refusal(raw_file(braces(tensor("w", "F32", "[4294967296,4294967296]", "[0,8]")), eight))
                .find("too many elements"),
            std::string::npos);
  EXPECT_NE(refusal(raw_file(braces(tensor("w", "U8", "[1099511627776]", "[0,1099511627776]")), eight))
                .find("ends at byte 1099511627776 of the data but the data has 8 bytes"),
            std::string::npos);
  // Offsets past int64, a begin after the end, and a byte range beyond the data.
  EXPECT_NE(refusal(raw_file(braces(tensor("w", "U8", "[8]", "[0,18446744073709551615]")), eight))
                .find("too large"),
            std::string::npos);
  EXPECT_NE(refusal(raw_file(braces(tensor("w", "U8", "[0]", "[8,0]")), eight)).find("span"), std::string::npos);
  EXPECT_NE(refusal(raw_file(braces(tensor("w", "U8", "[8]", "[8,16]")), eight)).find("hole"), std::string::npos);
  // Two tensors of one name, and a field given twice.
  EXPECT_NE(refusal(raw_file(braces(tensor("w", "U8", "[4]", "[0,4]") + "," + tensor("w", "U8", "[4]", "[4,8]")),
                             eight))
                .find("names 'w' twice"),
            std::string::npos);
  EXPECT_NE(refusal(raw_file(R"({"w":{"dtype":"U8","dtype":"F32","shape":[8],"data_offsets":[0,8]}})", eight))
                .find("names 'dtype' twice"),
            std::string::npos);
  // Bytes that are not UTF-8 in a name, a dtype that is not a string, a shape of strings.
  EXPECT_NE(refusal(raw_file(braces(tensor("w\xff", "U8", "[8]", "[0,8]")), eight)).find("not valid JSON"),
            std::string::npos);
  EXPECT_NE(refusal(raw_file(R"({"w":{"dtype":5,"shape":[8],"data_offsets":[0,8]}})", eight)).find("must be a string"),
            std::string::npos);
  EXPECT_NE(refusal(raw_file(R"({"w":{"dtype":"U8","shape":["8"],"data_offsets":[0,8]}})", eight))
                .find("non-negative integer"),
            std::string::npos);
  // A header longer than the whole file, and a zero-byte file.
  std::string liar = raw_file("{}", "");
  const uint64_t claimed = 4096;
  std::memcpy(liar.data(), &claimed, 8);
  EXPECT_NE(refusal(liar).find("the header claims 4096 bytes but only 2 follow"), std::string::npos);
  EXPECT_NE(refusal("").find("0 bytes"), std::string::npos);
}

TEST(Safetensors, EmptyTensorsSharingAnOffsetComeOutInNameOrder) {
  const SafetensorsFile file = decode_safetensors(
      raw_file(R"({"b":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"a":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]}})",
               ""));
  ASSERT_EQ(file.tensors.size(), 2u);
  EXPECT_EQ(file.tensors[0].first, "a");
  EXPECT_EQ(file.tensors[1].first, "b");
}

TEST(Safetensors, AtNamesWhatTheFileHas) {
  const SafetensorsFile file = decode_safetensors(encode_safetensors({{"fc.weight", Tensor::zeros({1})}}));
  try {
    file.at("fc.bias");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fc.weight"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace engine::testing
