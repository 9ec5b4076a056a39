// The whole model against Hugging Face transformers: tools/fixtures/make_golden.py saves a small
// random LlamaForCausalLM (GQA, untied head), its logits, loss and every parameter's gradient; we
// import the checkpoint and must reproduce them (loss and logits <= 1e-5 relative,
// gradients <= 1e-4 relative, both measured against the largest reference magnitude).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "backend/backend.h"
#include "checkpoint/hf.h"
#include "checkpoint/hf_tensors.h"
#include "checkpoint/safetensors.h"
#include "core/fs.h"
#include "model/llama.h"

using namespace tl;

namespace {

std::string golden_dir() { return std::string(TL_SOURCE_DIR) + "/tests/fixtures/hf_golden"; }

std::vector<float> read_all(const SafetensorsFile& f, const std::string& name) {
  const StTensorInfo& t = f.get(name);
  std::vector<float> out(size_t(t.numel()));
  f.read_f32(t, out.data(), out.size());
  return out;
}

// max |a - b| / max |b|
double rel_error(const float* a, const float* b, size_t n) {
  double diff = 0, ref = 0;
  for (size_t i = 0; i < n; ++i) {
    diff = std::max(diff, std::fabs(double(a[i]) - double(b[i])));
    ref = std::max(ref, std::fabs(double(b[i])));
  }
  return ref > 0 ? diff / ref : diff;
}

void check_golden(const std::string& device) {
  if (!file_exists(golden_dir() + "/golden.safetensors"))
    GTEST_SKIP() << "no fixture: run tools/fixtures/make_golden.py on the GPU machine";
  if (device == "cuda" && !cuda_available()) GTEST_SKIP() << "no CUDA GPU visible";
  HfModel hf = import_hf(golden_dir());
  SafetensorsFile golden(golden_dir() + "/golden.safetensors");
  const StTensorInfo& tok_info = golden.get("tokens");
  ASSERT_EQ(tok_info.shape.size(), 2u);
  const int B = int(tok_info.shape[0]), T = int(tok_info.shape[1]);
  std::vector<int32_t> tokens(size_t(B) * T);
  std::memcpy(tokens.data(), golden.bytes(tok_info).data(), tokens.size() * 4);
  std::vector<int32_t> targets(tokens.size(), -1);  // HF labels=input_ids: predict t+1
  for (int b = 0; b < B; ++b)
    for (int t = 0; t + 1 < T; ++t) targets[size_t(b * T + t)] = tokens[size_t(b * T + t + 1)];

  auto be = make_backend(device, 2);
  LlamaModel model(hf.config, *be);
  model.set_params(hf.params);
  const bool f32 = be->compute_dtype() == DType::F32;
  const double tol_out = f32 ? 1e-5 : 2e-2, tol_grad = f32 ? 1e-4 : 5e-2;

  // Logits at every position: position t only sees tokens <= t, so the prefix of length
  // t+1 gives them.
  const int V = hf.config.vocab_size;
  std::vector<float> ref_logits = read_all(golden, "logits"), ours(ref_logits.size());
  std::vector<float> last(size_t(B) * V);
  std::vector<int32_t> prefix;
  for (int t = 0; t < T; ++t) {
    prefix.clear();
    for (int b = 0; b < B; ++b)
      prefix.insert(prefix.end(), tokens.begin() + b * T, tokens.begin() + b * T + t + 1);
    model.forward_last_logits(prefix.data(), B, t + 1, last.data());
    for (int b = 0; b < B; ++b)
      std::copy(last.begin() + b * V, last.begin() + (b + 1) * V,
                ours.begin() + (size_t(b) * T + t) * V);
  }
  const double logit_err = rel_error(ours.data(), ref_logits.data(), ours.size());
  EXPECT_LE(logit_err, tol_out) << "logits";

  const int64_t count = int64_t(B) * (T - 1);
  model.zero_grads();
  LossSum loss = model.forward_backward(tokens.data(), targets.data(), B, T, 1.0f / float(count));
  const float ref_loss = read_all(golden, "loss")[0];
  EXPECT_EQ(loss.count, count);
  EXPECT_LE(std::fabs(loss.mean() - ref_loss) / std::fabs(ref_loss), tol_out)
      << "loss " << loss.mean() << " vs " << ref_loss;

  std::vector<float> grads(size_t(model.layout().total()));
  be->download(grads.data(), model.grads());
  double worst = 0;
  std::string worst_name;
  int checked = 0;
  for (const HfTensorSlot& slot : hf_tensor_slots(hf.config, model.layout())) {
    const std::string name = "grad." + slot.name;
    ASSERT_NE(golden.find(name), nullptr) << name;
    std::vector<float> ref = read_all(golden, name);
    const double err = rel_error(grads.data() + slot.offset, ref.data(), ref.size());
    EXPECT_LE(err, tol_grad) << name;
    if (err > worst) worst = err, worst_name = name;
    ++checked;
  }
  EXPECT_EQ(checked, 2 + 9 * hf.config.n_layers + 1) << "every HF parameter has a gradient";
  std::printf("[%s] HF parity: logits %.2e, loss %.2e, worst gradient %.2e (%s)\n", device.c_str(),
              logit_err, std::fabs(loss.mean() - ref_loss) / std::fabs(ref_loss), worst,
              worst_name.c_str());
}

}  // namespace

TEST(HfGolden, CpuMatchesTransformers) { check_golden("cpu"); }
TEST(HfGolden, CudaMatchesTransformers) { check_golden("cuda"); }
