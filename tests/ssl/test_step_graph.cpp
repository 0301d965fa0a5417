// test_step_graph.cpp - the training step as a CUDA graph (ssl/run/step_graph.h, --cuda-graphs):
// StepGraph's warm-up, capture and replay on a small body; a MoCo v2 pretraining whose steps are
// replayed from a graph equals, to the bit, the same run launched kernel by kernel (losses,
// weights, queue and pointer, BatchNorm counters, the optimizer's state); and --cuda-graphs on is
// refused where the step cannot be captured. The CUDA cases run on the emulation build's
// recorded graphs in CI, and on a GPU's when one is present.
#include <gtest/gtest.h>

#include <filesystem>

#include "engine/cuda_graph.h"
#include "engine/allocator.h"
#include "engine/metrics_log.h"
#include "engine/random.h"
#include "layers/layers.h"
#include "layers/optimizer.h"
#include "ops/queue_enqueue.h"
#include "engine/serialize.h"
#include "ops/elementwise_binary.h"
#include "ops/elementwise_unary.h"
#include "ssl/run/step_graph.h"
#include "ssl/run/trainer.h"
#include "tests/common/temp_dir.h"
#include "tests/common/test_helpers.h"
#include "tests/ssl/plain_synth.h"

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

// The per-step values the ops read from device memory, through one graph replayed three times:
// the queue pointer advances at each replay, the stream offset and the learning rate are rewritten
// between replays, and each replay equals the same ops run eagerly with those values.
TEST(CudaGraph, CudaReplaysReadTheQueuePointerStreamOffsetAndLearningRateAnew) {
  SKIP_WITHOUT_CUDA();
  const Device gpu = Device::cuda();
  const int64_t D = 3, K = 12, N = 4;
  Tensor queue = Tensor::zeros({D, K}, DType::f32, gpu), ptr = Tensor::zeros({1}, DType::i64, gpu);
  std::vector<float> key_values(N * D);
  for (size_t i = 0; i < key_values.size(); ++i) key_values[i] = static_cast<float>(i);
  const Tensor keys = Tensor::from_vector(key_values, {N, D}).to(gpu);
  Tensor offset = Tensor::zeros({1}, DType::i64, gpu);
  Generator init(3);
  nn::Linear model(2, 1, init);
  model.flatten_parameters();
  model.to(gpu);
  nn::Sgd sgd(model, {0.9, 0.0});
  Tensor grads = model.flat_gradients();
  grads.fill_(1.0);
  sgd.step(0.5);  // Sgd's first step stays out of the graph: it fills the momentum buffer
  Tensor perm;
  CudaGraph graph(gpu);
  graph.capture([&] {
    queue_enqueue(queue, keys, ptr);
    Generator gen(5, 100);
    perm = randperm(10, gen, gpu, offset);
    sgd.step();
  });
  EXPECT_EQ(ptr.item(), 0) << "the capture ran the enqueue";
  std::vector<float> expected_params = model.flat_parameters().to_vector<float>();
  float buffer = 1.0f;  // the momentum buffer after the first step, every gradient 1
  for (int replay = 0; replay < 3; ++replay) {
    offset.fill_(7.0 * replay);
    sgd.set_lr(0.1 * (replay + 1));
    graph.replay(/*repeat_host_effects=*/replay > 0);  // the capture counted the first run's step
    EXPECT_EQ(ptr.item(), (replay + 1) * N % K) << "replay " << replay;
    Generator gen(5, 100 + 7 * replay);
    EXPECT_EQ(perm.to_vector<int64_t>(), randperm(10, gen).to_vector<int64_t>()) << "replay " << replay;
    buffer = 0.9f * buffer + 1.0f;
    for (float& p : expected_params) p -= static_cast<float>(0.1 * (replay + 1)) * buffer;
    const std::vector<float> params = model.flat_parameters().to_vector<float>();
    for (size_t i = 0; i < params.size(); ++i) EXPECT_NEAR(params[i], expected_params[i], 1e-6) << "replay " << replay;
  }
  EXPECT_EQ(sgd.steps(), 4) << "the optimizer's host count advances at each replay";
  const std::vector<float> q = queue.to_vector<float>();
  for (int64_t d = 0; d < D; ++d)
    for (int64_t j = 0; j < K; ++j)
      EXPECT_EQ(q[d * K + j], static_cast<float>((j % N) * D + d)) << "column " << j << " row " << d;
}

TEST(CudaGraph, CudaSgdRefusesToCaptureItsFirstStep) {
  SKIP_WITHOUT_CUDA();
  Generator init(3);
  nn::Linear model(2, 1, init);
  model.flatten_parameters();
  model.to(Device::cuda());
  nn::Sgd sgd(model, {0.9, 0.0});
  sgd.set_lr(0.1);
  CudaGraph graph(Device::cuda());
  try {
    graph.capture([&] { sgd.step(); });
    FAIL() << "Sgd's first step was captured";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("first step initialises the momentum buffer"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(capturing_graph()) << "a failed capture left the thread capturing";
  EXPECT_EQ(sgd.steps(), 0);
  sgd.step();  // eagerly, after the failed capture
  CudaGraph second(Device::cuda());
  second.capture([&] { sgd.step(); });  // a new capture on the same thread works
  second.replay(/*repeat_host_effects=*/false);
  EXPECT_EQ(sgd.steps(), 2);
}

// The graph's pool is held while the graph lives and given back with it.
TEST(CudaGraph, CudaDestroyingTheGraphReleasesItsPool) {
  SKIP_WITHOUT_CUDA();
  CachingAllocator& allocator = cuda_allocator(0);
  allocator.empty_cache();
  const size_t before = allocator.stats().reserved_bytes;
  {
    Tensor out;
    CudaGraph graph(Device::cuda());
    graph.capture([&] { out = add_scalar(Tensor::zeros({1 << 16}, DType::f32, Device::cuda()), 1.0); });
    graph.replay();
    EXPECT_EQ(out.to_vector<float>()[7], 1.0f);
    out = Tensor();
    allocator.empty_cache();
    EXPECT_GE(allocator.stats().reserved_bytes, before + 2 * (size_t{1} << 18))
        << "the capture's blocks went back to the device while the graph can still replay into them";
  }
  allocator.empty_cache();
  EXPECT_EQ(allocator.stats().reserved_bytes, before) << "the destroyed graph's pool was not released";
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
    use_cuda_graphs(CudaGraphs::On, why_step_cannot_be_captured(Device::cuda(), 1, true), "pretrain");
    FAIL() << "--cuda-graphs on was accepted where the step cannot be captured";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("pretrain: --cuda-graphs on cannot be honoured: the published code's hard "
                                         "negatives"),
              std::string::npos)
        << e.what();
  }
}

// MoCo v2 on 16 images (4 classes of 4) at batch 8: 2 steps an epoch, 3 epochs.
PretrainConfig config(const fs::path& root, const std::string& run, CudaGraphs graphs) {
  PretrainConfig c;
  c.moco.momentum = 0.99;
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

// Runs `graphs` (--cuda-graphs on) and the same config eagerly, and checks the runs agree to the bit:
// every step's loss, and everything a checkpoint holds (the encoders, BatchNorm's statistics and
// counters, MoCo's queue and pointer, the optimizer's momentum and step count). `replays`: the steps
// that ran as a replay. `checkpoint`, if given, receives the graph run's last checkpoint.
void expect_graph_run_equals_eager_run(PretrainConfig graphs, int64_t replays, std::string* checkpoint = nullptr) {
  PretrainConfig eager = graphs;
  eager.save_dir += "_eager";
  eager.cuda_graphs = CudaGraphs::Off;
  const PretrainResult a = pretrain(eager);
  const PretrainResult b = pretrain(graphs);
  EXPECT_EQ(b.position.step, 6);
  EXPECT_EQ(b.graph_replays, replays);
  EXPECT_EQ(a.graph_replays, 0);
  EXPECT_EQ(a.last_loss, b.last_loss);
  const std::vector<double> la = losses(eager), lb = losses(graphs);
  ASSERT_EQ(la.size(), 6u);
  EXPECT_EQ(la, lb) << "the replayed steps' losses differ from the eager run's";
  const SafetensorsFile fa = load_safetensors(a.last_checkpoint), fb = load_safetensors(b.last_checkpoint);
  ASSERT_EQ(fa.tensors.size(), fb.tensors.size());
  for (const auto& [name, ta] : fa.tensors) {
    ASSERT_TRUE(fb.contains(name)) << name;
    EXPECT_EQ(ta.to(DType::f64).to_vector<double>(), fb.at(name).to(DType::f64).to_vector<double>())
        << name << " differs between the graph run and the eager run";
  }
  EXPECT_EQ(fb.metadata.at("sgd_steps"), "6");
  EXPECT_EQ(fa.metadata.at("sgd_steps"), fb.metadata.at("sgd_steps"));
  if (checkpoint) *checkpoint = b.last_checkpoint;
}

// Plain MoCo v2: steps 0 and 1 warm up, step 2 is captured, steps 2 to 5 replay it. The learning
// rate changes at each epoch (cosine), the queue pointer wraps around and shuffle BN draws anew each
// step: a value baked into the graph would change the losses.
TEST(StepGraph, CudaGraphPretrainingEqualsTheEagerRunToTheBit) {
  SKIP_WITHOUT_CUDA();
  testing::TempDir dir("step_graph_pretrain");
  testing::write_plain_synth(dir.path(), 4);
  const PretrainConfig graphs = config(dir.path(), "graphs", CudaGraphs::On);
  std::string checkpoint;
  expect_graph_run_equals_eager_run(graphs, 4, &checkpoint);
  ASSERT_FALSE(checkpoint.empty());
  // One f_q forward a step, six steps: BatchNorm's host counter advanced at each replay.
  EXPECT_EQ(load_safetensors(checkpoint).at("encoder_q.layer1.0.bn1.num_batches_tracked").item(), 6);
}

// The paper's step (hp masking, one hard negative, the key encoder's saliency): the masks are drawn
// from the step number on the device; the first batch of each epoch (drawn into the picture) runs
// eagerly, so of the six steps 0, 2 and 4 are eager (0 warms up with 1), 3 is captured, 3 and 5
// replay.
TEST(StepGraph, CudaGraphMaskedPretrainingEqualsTheEagerRunToTheBit) {
  SKIP_WITHOUT_CUDA();
  testing::TempDir dir("step_graph_masked");
  testing::write_plain_synth(dir.path(), 4);
  PretrainConfig graphs = config(dir.path(), "graphs", CudaGraphs::On);
  graphs.strategy = MaskStrategy::Hp;
  graphs.moco.alpha = 2;
  graphs.num_nonsem = 1;
  expect_graph_run_equals_eager_run(graphs, 2);
}

// SimCLR (LARS, grouped BatchNorm), plain and masked: its hard negatives' forwards keep the running
// statistics, host counters included, at every replay.
TEST(StepGraph, CudaGraphSimclrPretrainingEqualsTheEagerRunToTheBit) {
  SKIP_WITHOUT_CUDA();
  testing::TempDir dir("step_graph_simclr");
  testing::write_plain_synth(dir.path(), 4);
  PretrainConfig graphs = config(dir.path(), "graphs", CudaGraphs::On);
  graphs.method = Method::SimClr;
  graphs.optimizer = OptimizerKind::Lars;
  graphs.simclr.arch = "resnet18";
  graphs.simclr.small_stem = true;
  graphs.simclr.width = 4;
  graphs.simclr.dim = 16;
  graphs.simclr.bn_groups = 2;
  expect_graph_run_equals_eager_run(graphs, 4);
  graphs.save_dir += "_masked";
  graphs.strategy = MaskStrategy::Hp;
  graphs.num_nonsem = 1;
  expect_graph_run_equals_eager_run(graphs, 2);
}

}  // namespace
}  // namespace engine::ssl
