// check_public_api.cpp - the installed library's API seen as a user sees it: this program includes
// only <moco_engine/...> and links only libmoco_engine.so (no engine header, no engine library), and
// checks that
//   - embed_files gives the vectors `moco embed` wrote (EXPECTED.npy, its rows for the paths in
//     EXPECTED.npy.paths.txt) and skips the same unreadable files, which reach the log callback;
//   - the library prints nothing, on stdout or stderr, while it loads and embeds;
//   - failures arrive as moco_engine::Error with the command line's message;
//   - embed() of pixels in memory is independent of the batch size, and normalize gives unit rows.
// Usage: check_public_api WEIGHTS IMAGES EXPECTED.npy   (tests/tools/embed_cli.sh runs it)
#include <moco_engine/moco_engine.h>

#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    std::cerr << "FAIL: " << what << "\n";
    ++failures;
  }
}

// The values and shape of a 2-d little-endian f32 .npy file (what `moco embed --npy` writes).
std::vector<float> read_npy(const std::string& path, size_t& rows, size_t& cols) {
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) throw std::runtime_error(path + ": not a .npy file");
  const size_t header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
  const std::string header = bytes.substr(10, header_len);
  if (header.find("'descr': '<f4'") == std::string::npos) throw std::runtime_error(path + ": not f32");
  const size_t open = header.find("'shape': (");
  std::sscanf(header.c_str() + open, "'shape': (%zu, %zu)", &rows, &cols);
  std::vector<float> values(rows * cols);
  std::memcpy(values.data(), bytes.data() + 10 + header_len, values.size() * sizeof(float));
  return values;
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Runs `body` with stdout and stderr sent to a file and returns what was written there.
template <typename Body>
std::string captured_output(Body&& body) {
  std::fflush(stdout);
  std::fflush(stderr);
  char name[] = "/tmp/check_public_api_XXXXXX";
  const int file = mkstemp(name);
  const int saved_out = dup(1), saved_err = dup(2);
  dup2(file, 1);
  dup2(file, 2);
  auto restore = [&] {
    std::fflush(stdout);
    std::fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
  };
  try {
    body();
  } catch (...) {  // the message must reach the terminal, not the capture file
    restore();
    throw;
  }
  restore();
  std::ifstream in(name);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  close(file);
  std::remove(name);
  return text;
}

template <typename Body>
std::string error_of(Body&& body) {
  try {
    body();
  } catch (const moco_engine::Error& e) {
    return e.what();
  }
  return "(no moco_engine::Error thrown)";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: check_public_api WEIGHTS IMAGES EXPECTED.npy\n";
    return 2;
  }
  const std::string weights = argv[1], images = argv[2], expected_npy = argv[3];
  std::vector<std::string> warnings;
  moco_engine::set_log_callback([&](moco_engine::LogLevel level, const std::string& message) {
    if (level == moco_engine::LogLevel::Warning) warnings.push_back(message);
  });

  moco_engine::EncoderOptions options;
  options.batch_size = 4;  // as the command's -b 4: the same batches, the same sums
  options.workers = 2;
  std::vector<std::string> paths;
  moco_engine::Embeddings got;
  size_t dim = 0;
  const std::string printed = captured_output([&] {
    paths = moco_engine::list_images(images);
    moco_engine::Encoder encoder(weights, options);
    dim = encoder.dimension();
    got = encoder.embed_files(paths);
  });
  expect(printed.empty(), "the library printed: " + printed);

  // The same vectors as `moco embed`, for the same files in the same order.
  size_t rows = 0, cols = 0;
  const std::vector<float> expected = read_npy(expected_npy, rows, cols);
  const std::vector<std::string> expected_paths = read_lines(expected_npy + ".paths.txt");
  std::vector<std::string> absolute;  // moco embed writes the paths absolute
  for (const std::string& p : got.paths) absolute.push_back(std::filesystem::absolute(p).lexically_normal().string());
  std::string first_difference;
  for (size_t i = 0; i < std::max(absolute.size(), expected_paths.size()) && first_difference.empty(); ++i) {
    const std::string a = i < absolute.size() ? absolute[i] : "(none)";
    const std::string b = i < expected_paths.size() ? expected_paths[i] : "(none)";
    if (a != b) first_difference = "row " + std::to_string(i) + ": " + a + " against " + b;
  }
  expect(first_difference.empty(), "embed_files embedded other files than moco embed: " + first_difference);
  expect(got.rows == rows && got.dim == cols && dim == cols,
         "shape " + std::to_string(got.rows) + " x " + std::to_string(got.dim) + ", moco embed wrote " +
             std::to_string(rows) + " x " + std::to_string(cols));
  double worst = 0;
  for (size_t i = 0; i < std::min(expected.size(), got.values.size()); ++i)
    worst = std::max(worst, static_cast<double>(std::fabs(expected[i] - got.values[i])) /
                                (1e-6 + std::fabs(static_cast<double>(expected[i]))));
  expect(got.values.size() == expected.size() && worst <= 1e-5,
         "values differ from moco embed's (worst relative difference " + std::to_string(worst) + ")");

  // The unreadable files: skipped, named, and reported through the callback.
  bool corrupt = false, empty = false;
  for (const moco_engine::SkippedFile& s : got.skipped) {
    corrupt |= contains(s.path, "corrupt.jpg") && contains(s.reason, "corrupt.jpg");
    empty |= contains(s.path, "empty.jpg") && contains(s.reason, "empty.jpg");
  }
  expect(corrupt && empty && got.skipped.size() == 2, "expected corrupt.jpg and empty.jpg skipped with reasons, got " +
                                                          std::to_string(got.skipped.size()) + " skipped");
  expect(warnings.size() == 2 && contains(warnings[0] + warnings[1], "corrupt.jpg"),
         "expected the two skipped files as warnings, got " + std::to_string(warnings.size()));

  // Pixels in memory: batch size does not change the vectors; normalize gives unit rows.
  std::vector<std::vector<std::uint8_t>> buffers;
  std::vector<moco_engine::RgbImage> pixels;
  for (int k = 0; k < 5; ++k) {
    const int w = 20 + 7 * k, h = 18 + 3 * k;
    std::vector<std::uint8_t> b(static_cast<size_t>(w) * h * 3);
    for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::uint8_t>((i * (31 + k)) % 251);
    buffers.push_back(std::move(b));
    pixels.push_back({buffers.back().data(), w, h});
  }
  moco_engine::EncoderOptions normalized = options;
  normalized.normalize = true;
  normalized.batch_size = 2;
  const std::vector<float> batched = moco_engine::Encoder(weights, options).embed(pixels);
  const moco_engine::Encoder unit(weights, normalized);
  const std::vector<float> unit_rows = unit.embed(pixels);
  expect(batched.size() == 5 * dim && unit_rows.size() == 5 * dim, "embed: expected 5 rows of " + std::to_string(dim));
  for (size_t r = 0; r < 5 && unit_rows.size() == 5 * dim; ++r) {
    double norm = 0, dot = 0, raw = 0;
    for (size_t c = 0; c < dim; ++c) {
      norm += unit_rows[r * dim + c] * unit_rows[r * dim + c];
      dot += unit_rows[r * dim + c] * batched[r * dim + c];
      raw += batched[r * dim + c] * batched[r * dim + c];
    }
    expect(std::fabs(norm - 1) < 1e-5, "normalize: row " + std::to_string(r) + " has squared norm " + std::to_string(norm));
    // The normalised row points where the raw row (computed in batches of 4, not 2) points.
    expect(std::fabs(dot / std::sqrt(raw) - 1) < 1e-5, "batch size changed row " + std::to_string(r));
  }
  expect(contains(unit.preprocessing().text, "CenterCrop(") && unit.preprocessing().crop > 0,
         "preprocessing: " + unit.preprocessing().text);

  // Errors: the command line's messages, as moco_engine::Error.
  const std::string missing = error_of([] { moco_engine::Encoder e("no_such_checkpoint.safetensors"); });
  expect(contains(missing, "no_such_checkpoint.safetensors: no such file"), "missing weights: " + missing);
  const std::string no_images = error_of([] { moco_engine::list_images("no_such_folder"); });
  expect(contains(no_images, "'no_such_folder' does not exist"), "missing folder: " + no_images);
  const std::string null_pixels = error_of([&] { unit.embed({moco_engine::RgbImage{nullptr, 4, 4}}); });
  expect(contains(null_pixels, "image 0 has no pixels"), "null pixels: " + null_pixels);
  const std::string device = error_of([&] {
    moco_engine::EncoderOptions o;
    o.device = "tpu";
    moco_engine::Encoder e(weights, o);
  });
  expect(contains(device, "tpu"), "unknown device: " + device);

  if (failures > 0) return 1;
  std::cout << "PASS: the public API (" << moco_engine::version() << ") embeds " << got.rows << " images as moco embed "
            << "does, skips 2, prints nothing, and throws moco_engine::Error\n";
  return 0;
}
