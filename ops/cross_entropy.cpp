// cross_entropy.cpp - checks, dispatch and autograd for the classifier's cross-entropy loss.
#include "ops/cross_entropy.h"

#include "engine/autograd.h"

namespace engine {

namespace {

struct CrossEntropyBackward : Node {
  Tensor logits, labels, lse;  // contiguous, detached; lse is the forward's
  int64_t N = 0, C = 0;
  const char* name() const override { return "CrossEntropyBackward"; }
  std::vector<Tensor> backward(const Tensor& dout) override {
    const Tensor dloss = dout.contiguous();
    Tensor dlogits = Tensor::empty({N, C}, logits.dtype(), logits.device());
    dispatch_float(logits.dtype(), "cross_entropy backward", [&]<typename T>() {
      if (logits.device().is_cpu()) {
        cross_entropy_backward_cpu<T>(dlogits.data<T>(), dloss.data<T>(), logits.data<T>(), lse.data<T>(),
                                      labels.data<int64_t>(), N, C);
      } else {
        ENGINE_DISPATCH_CUDA(logits.device(), "cross_entropy backward",
                             cross_entropy_backward_cuda<T>(logits.device().index, dlogits.data<T>(), dloss.data<T>(),
                                                            logits.data<T>(), lse.data<T>(), labels.data<int64_t>(),
                                                            N, C));
      }
    });
    return {dlogits};
  }
  void release_saved() override { logits = labels = lse = Tensor(); }
};

void check_inputs(const Tensor& logits, const Tensor& labels) {
  check_defined(logits, "cross_entropy", "logits");
  check_defined(labels, "cross_entropy", "labels");
  ENGINE_CHECK(logits.dim() == 2,
               "cross_entropy: expected logits (N, C), one row of class scores per sample, found {}; reshape them "
               "to (N, C) first",
               logits.str());
  const int64_t N = logits.size(0), C = logits.size(1);
  ENGINE_CHECK(N >= 1 && C >= 1,
               "cross_entropy: needs at least one row and one class (the mean over no rows is undefined), found "
               "logits {}",
               shape_str(logits.shape()));
  ENGINE_CHECK(labels.dtype() == DType::i64 && labels.dim() == 1 && labels.size(0) == N,
               "cross_entropy: expected labels (N) = ({}) of dtype i64, one class index per row of logits {}, found "
               "{}; build them with Tensor::from_vector<int64_t>",
               N, shape_str(logits.shape()), labels.str());
  ENGINE_CHECK(labels.device() == logits.device(),
               "cross_entropy: expected the labels on the logits' device {}, found {}; move them with .to()",
               logits.device().str(), labels.str());
}

// On the CPU the labels are host memory: every value is checked before the loops read them.
void check_label_values(const Tensor& labels, int64_t C) {
  const int64_t* values = labels.data<int64_t>();
  for (int64_t i = 0; i < labels.size(0); ++i)
    ENGINE_CHECK(values[i] >= 0 && values[i] < C,
                 "cross_entropy: labels[{}] = {} is not a class of logits with C = {} columns; labels must lie in "
                 "[0, {}) (check the dataset's class count against the classifier's outputs)",
                 i, values[i], C, C);
}

// The loss, and the accuracy counts into `correct` (2,) i64 when it is defined.
Tensor cross_entropy_forward(const Tensor& logits, const Tensor& labels, const Tensor& correct) {
  check_inputs(logits, labels);
  const int64_t N = logits.size(0), C = logits.size(1);
  const Device device = logits.device();
  const Tensor logits_c = logits.detach().contiguous(), labels_c = labels.detach().contiguous();
  if (device.is_cpu()) check_label_values(labels_c, C);
  Tensor loss = Tensor::empty({}, logits.dtype(), device);
  Tensor lse = Tensor::empty({N}, logits.dtype(), device);
  int64_t* counts = correct.defined() ? correct.data<int64_t>() : nullptr;
  dispatch_float(logits.dtype(), "cross_entropy", [&]<typename T>() {
    if (device.is_cpu()) {
      cross_entropy_forward_cpu<T>(loss.data<T>(), lse.data<T>(), logits_c.data<T>(), labels_c.data<int64_t>(), N, C,
                                   counts);
    } else {
      ENGINE_DISPATCH_CUDA(device, "cross_entropy",
                           cross_entropy_forward_cuda<T>(device.index, loss.data<T>(), lse.data<T>(),
                                                         logits_c.data<T>(), labels_c.data<int64_t>(), N, C, counts));
    }
  });
  if (autograd::needs_grad({&logits})) {
    auto node = std::make_shared<CrossEntropyBackward>();
    node->logits = logits_c;
    node->labels = labels_c;
    node->lse = lse;
    node->N = N;
    node->C = C;
    autograd::record(node, loss, {&logits});
  }
  return loss;
}

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& labels) {
  return cross_entropy_forward(logits, labels, Tensor());
}

CrossEntropyResult cross_entropy_with_accuracy(const Tensor& logits, const Tensor& labels) {
  check_defined(logits, "cross_entropy", "logits");
  Tensor correct = Tensor::empty({2}, DType::i64, logits.device());  // (2,): top-1, top-5
  Tensor loss = cross_entropy_forward(logits, labels, correct);
  return {loss, correct};
}

}  // namespace engine
