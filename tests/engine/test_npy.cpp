// test_npy.cpp - engine/npy.h: the bytes numpy.load reads.
#include "engine/npy.h"

#include <gtest/gtest.h>

#include <cstring>

namespace engine {
namespace {

std::string header_of(const std::string& bytes) {
  const size_t length = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
  return bytes.substr(10, length);
}

TEST(Npy, WritesTheMagicTheShapeAndTheValuesAt64ByteAlignment) {
  const Tensor t = Tensor::from_vector<float>({1.5f, -2, 3, 4, 5, 6.25f}, {2, 3});
  const std::string bytes = npy_bytes(t);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  const std::string header = header_of(bytes);
  EXPECT_EQ(header.substr(0, header.find('}') + 1), "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }");
  EXPECT_EQ(header.back(), '\n');
  EXPECT_EQ((10 + header.size()) % 64, 0u);
  ASSERT_EQ(bytes.size(), 10 + header.size() + 6 * sizeof(float));
  float values[6];
  std::memcpy(values, bytes.data() + 10 + header.size(), sizeof(values));
  EXPECT_EQ(values[0], 1.5f);
  EXPECT_EQ(values[5], 6.25f);
}

TEST(Npy, WritesPythonsTupleForEveryRankAndRefusesOtherDtypes) {
  EXPECT_NE(header_of(npy_bytes(Tensor::zeros({4}, DType::i64))).find("'descr': '<i8', 'fortran_order': False, 'shape': (4,), }"),
            std::string::npos);
  EXPECT_NE(header_of(npy_bytes(Tensor::zeros({}, DType::f64))).find("'shape': (), }"), std::string::npos);
  // A transposed view is written in its logical (C) order.
  const Tensor t = Tensor::from_vector<int32_t>({1, 2, 3, 4, 5, 6}, {2, 3}).transpose(0, 1);
  const std::string bytes = npy_bytes(t);
  int32_t v[6];
  std::memcpy(v, bytes.data() + bytes.size() - sizeof(v), sizeof(v));
  EXPECT_EQ(std::vector<int32_t>(v, v + 6), (std::vector<int32_t>{1, 4, 2, 5, 3, 6}));
  EXPECT_THROW(npy_bytes(Tensor::zeros({2}, DType::u8)), std::exception);
}

}  // namespace
}  // namespace engine
