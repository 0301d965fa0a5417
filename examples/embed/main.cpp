// embed_example WEIGHTS IMAGE_OR_FOLDER...: embeds the images with a pretrained encoder and prints
// the cosine similarity of every pair, the way a photo search or a duplicate finder would start.
#include <moco_engine/moco_engine.h>

#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s WEIGHTS IMAGE_OR_FOLDER...\n", argv[0]);
    return 2;
  }
  // The library prints nothing by itself; show its warnings (files it had to skip) on stderr.
  moco_engine::set_log_callback([](moco_engine::LogLevel level, const std::string& message) {
    if (level == moco_engine::LogLevel::Warning) std::fprintf(stderr, "warning: %s\n", message.c_str());
  });
  try {
    std::vector<std::string> paths;
    for (int i = 2; i < argc; ++i)
      for (const std::string& p : moco_engine::list_images(argv[i])) paths.push_back(p);

    moco_engine::EncoderOptions options;
    options.device = "auto";   // a GPU when there is one
    options.normalize = true;  // unit rows: a dot product is the cosine similarity
    const moco_engine::Encoder encoder(argv[1], options);
    std::printf("encoder: %s on %s, %zu dimensions\npreprocessing: %s\n", encoder.description().c_str(),
                encoder.device().c_str(), encoder.dimension(), encoder.preprocessing().text.c_str());

    const moco_engine::Embeddings e = encoder.embed_files(paths);
    std::printf("cosine similarities of %zu images (%zu skipped):\n", e.rows, e.skipped.size());
    for (size_t i = 0; i < e.rows; ++i) {
      std::printf("%-40s", e.paths[i].c_str());
      for (size_t j = 0; j < e.rows; ++j) {
        float dot = 0;
        for (size_t k = 0; k < e.dim; ++k) dot += e.row(i)[k] * e.row(j)[k];
        std::printf(" %6.3f", dot);
      }
      std::printf("\n");
    }
  } catch (const moco_engine::Error& error) {
    std::fprintf(stderr, "error: %s\n", error.what());
    return 1;
  }
  return 0;
}
