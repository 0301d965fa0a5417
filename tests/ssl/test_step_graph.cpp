// test_step_graph.cpp - the training step as a CUDA graph (ssl/run/step_graph.h, --cuda-graphs):
// StepGraph's warm-up, capture and replay on a small body; a MoCo v2 pretraining whose steps are
// replayed from a graph equals, to the bit, the same run launched kernel by kernel (losses,
// weights, queue and pointer, BatchNorm counters, the optimizer's state); and --cuda-graphs on is
// refused where the step cannot be captured. The CUDA cases run on the emulation build's
// recorded graphs in CI, and on a GPU's when one is present.
#include <gtest/gtest.h>

#include <filesystem>

#include "data/synth.h"
#include "engine/cuda_graph.h"
#include "engine/metrics_log.h"
#include "engine/serialize.h"
#include "ops/elementwise_binary.h"
#include "ops/elementwise_unary.h"
#include "ssl/run/step_graph.h"
#include "ssl/run/trainer.h"
#include "tests/common/temp_dir.h"
#include "tests/common/test_helpers.h"

namespace engine::ssl {
namespace {

namespace fs = std::filesystem;

// A body with state, as a training step has: acc += x on the device, a host counter advanced (and
// registered for replays), and an output made from acc.
struct CountingStep {
  Tensor acc;
  int64_t host_steps = 0;
  std::vector<Tensor> operator()(const std::vector<Tensor>& in) {
    acc.copy_(add(acc, in[0]));
    ++host_steps;
    repeat_on_replay([this] { ++host_steps; });
    return {mul_scalar(acc, 2.0)};
  }
};

TEST(StepGraph, CudaWarmsUpCapturesThenReplaysWithNewInputs) {
  SKIP_WITHOUT_CUDA();
  const Device gpu = Device::cuda();
  CountingStep body{Tensor::zeros({4}, DType::f32, gpu)};
  StepGraph graph(gpu, /*enabled=*/true, /*warmup_steps=*/2);
  double expected = 0;
  for (int step = 0; step < 6; ++step) {
    const Tensor x = Tensor::full({4}, step + 1.0, DType::f32, gpu);
    expected += step + 1.0;
    const Tensor out = graph.run({x}, [&](const std::vector<Tensor>& in) { return body(in); }).front();
    EXPECT_EQ(out.to_vector<float>(), std::vector<float>(4, static_cast<float>(2 * expected))) << "step " << step;
    EXPECT_EQ(body.host_steps, step + 1) << "the host side of step " << step << " ran " << body.host_steps
                                         << " times in all";
    EXPECT_EQ(graph.captured(), step >= 2) << "step " << step;
  }
  EXPECT_EQ(graph.replays(), 4) << "steps 2 (the capture's own first run) to 5 replay";
  // Another shape than the captured one runs eagerly, and the graph stays for the next step.
  const Tensor odd = graph.run({Tensor::full({2}, 1.0, DType::f32, gpu)}, [&](const std::vector<Tensor>& in) {
    return std::vector<Tensor>{mul_scalar(in[0], 3.0)};
  }).front();
  EXPECT_EQ(odd.to_vector<float>(), std::vector<float>(2, 3.0f));
  EXPECT_EQ(graph.replays(), 4);
}

TEST(StepGraph, DisabledRunsTheBodyEveryTime) {
  CountingStep body{Tensor::zeros({3})};
  StepGraph graph(Device::cpu(), /*enabled=*/false);
  for (int step = 0; step < 4; ++step) graph.run({Tensor::ones({3})}, [&](const std::vector<Tensor>& in) { return body(in); });
  EXPECT_EQ(body.acc.to_vector<float>(), std::vector<float>(3, 4.0f));
  EXPECT_FALSE(graph.captured());
  EXPECT_THROW(StepGraph(Device::cpu(), /*enabled=*/true), Error);
}

// A step that waits for the device cannot be captured: the capture says so and which call.
TEST(StepGraph, CudaCaptureOfAHostReadFailsWithTheReason) {
  SKIP_WITHOUT_CUDA();
  const Device gpu = Device::cuda();
  StepGraph graph(gpu, /*enabled=*/true, /*warmup_steps=*/1);
  const auto body = [](const std::vector<Tensor>& in) {
    const double first = in[0].slice(0, 0, 1).item();  // a host read inside the step
    return std::vector<Tensor>{add_scalar(in[0], first)};
  };
  const Tensor x = Tensor::ones({4}, DType::f32).to(gpu);
  graph.run({x}, body);  // the warm-up step runs eagerly
  try {
    graph.run({x}, body);
    FAIL() << "a host read inside a captured step went unnoticed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("capturing"), std::string::npos) << e.what();
  }
}

TEST(CudaGraphs, ParsesAndRefusesWhereTheStepCannotBeCaptured) {
  EXPECT_EQ(parse_cuda_graphs("auto"), CudaGraphs::Auto);
  EXPECT_EQ(parse_cuda_graphs("off"), CudaGraphs::Off);
  EXPECT_EQ(parse_cuda_graphs("on"), CudaGraphs::On);
  EXPECT_THROW(parse_cuda_graphs("yes"), Error);
  EXPECT_EQ(why_step_cannot_be_captured(Device::cuda(), 1, false), "");
  EXPECT_NE(why_step_cannot_be_captured(Device::cpu(), 1, false), "");
  EXPECT_NE(why_step_cannot_be_captured(Device::cuda(), 2, false), "");
  EXPECT_NE(why_step_cannot_be_captured(Device::cuda(), 1, true), "");
  EXPECT_TRUE(use_cuda_graphs(CudaGraphs::Auto, "", "pretrain"));
  EXPECT_FALSE(use_cuda_graphs(CudaGraphs::Auto, "no GPU", "pretrain"));
  EXPECT_FALSE(use_cuda_graphs(CudaGraphs::Off, "", "pretrain"));
  try {
    use_cuda_graphs(CudaGraphs::On, "the masked step is not captured", "pretrain");
    FAIL() << "--cuda-graphs on was accepted where the step cannot be captured";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--cuda-graphs on cannot be honoured: the masked step"), std::string::npos)
        << e.what();
  }
}

// 4 classes of 4 images at 40 pixels: 16 images, 2 steps an epoch at batch 8.
void write_synth(const fs::path& root) {
  data::SynthOptions o;
  o.classes = 4;
  o.train_per_class = 4;
  o.val_per_class = 1;
  o.size = 40;
  o.clutter = 0;
  o.plain_background = true;
  o.threads = 1;
  data::write_synth_dataset((root / "synth").string(), o);
}

PretrainConfig config(const fs::path& root, const std::string& run, CudaGraphs graphs) {
  PretrainConfig c;
  c.data = (root / "synth").string();
  c.save_dir = (root / run).string();
  c.moco.arch = "resnet18";
  c.moco.small_stem = true;
  c.moco.width = 4;
  c.moco.dim = 16;
  c.moco.queue_size = 24;  // 3 batches: the pointer wraps around during the run
  c.moco.mlp = true;
  c.moco.bn_groups = 2;
  c.batch_size = 8;
  c.image_size = 16;
  c.epochs = 3;  // 6 steps: 2 eager, the capture, 3 replays
  c.lr = 0.05;
  c.cos = true;  // the learning rate changes every epoch: the replays must read it from the device
  c.workers = 1;
  c.print_freq = 1;
  c.seed = 7;
  c.device = Device::cuda();
  c.cuda_graphs = graphs;
  c.args_json = "{}";
  return c;
}

std::vector<double> losses(const PretrainConfig& c) {
  std::vector<double> out;
  for (const nlohmann::json& line : MetricsLog::read((fs::path(c.save_dir) / "metrics.jsonl").string()))
    if (line.at("kind").get<std::string>() == "step") out.push_back(line.at("loss").get<double>());
  return out;
}

TEST(StepGraph, CudaGraphPretrainingEqualsTheEagerRunToTheBit) {
  SKIP_WITHOUT_CUDA();
  testing::TempDir dir("step_graph_pretrain");
  write_synth(dir.path());
  const PretrainConfig eager = config(dir.path(), "eager", CudaGraphs::Off);
  const PretrainConfig graphs = config(dir.path(), "graphs", CudaGraphs::On);
  const PretrainResult a = pretrain(eager);
  const PretrainResult b = pretrain(graphs);
  EXPECT_EQ(b.position.step, 6);
  EXPECT_EQ(b.graph_replays, 4) << "steps 0 and 1 warm up, step 2 is captured, steps 2 to 5 replay it";
  EXPECT_EQ(a.graph_replays, 0);
  EXPECT_EQ(a.last_loss, b.last_loss);
  const std::vector<double> la = losses(eager), lb = losses(graphs);
  ASSERT_EQ(la.size(), 6u);
  EXPECT_EQ(la, lb) << "the replayed steps' losses differ from the eager run's";
  // Everything a checkpoint holds: both encoders, BatchNorm's statistics and counters, the queue and
  // its pointer, the optimizer's momentum and step count, the position.
  const SafetensorsFile fa = load_safetensors(a.last_checkpoint), fb = load_safetensors(b.last_checkpoint);
  ASSERT_EQ(fa.tensors.size(), fb.tensors.size());
  for (const auto& [name, ta] : fa.tensors) {
    ASSERT_TRUE(fb.contains(name)) << name;
    EXPECT_EQ(ta.to(DType::f64).to_vector<double>(), fb.at(name).to(DType::f64).to_vector<double>())
        << name << " differs between the graph run and the eager run";
  }
  // Host counters advanced at each replay (repeat_on_replay): one f_q forward a step, six steps.
  EXPECT_EQ(fb.at("encoder_q.layer1.0.bn1.num_batches_tracked").item(), 6);
  EXPECT_EQ(fb.metadata.at("sgd_steps"), "6");
  EXPECT_EQ(fa.metadata.at("sgd_steps"), fb.metadata.at("sgd_steps"));
}

}  // namespace
}  // namespace engine::ssl
