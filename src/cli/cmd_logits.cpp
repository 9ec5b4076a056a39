// tinyllama logits --checkpoint CK --tokens IN.safetensors --out OUT.safetensors
// The model's logits at every position of a batch of token rows, for comparisons with other
// implementations (tools/gpu/hf_check.py). IN holds "tokens" (I32 or I64 [B, T]); OUT gets
// "logits" (F32 [B, T, V]). Runs the generation path (prefill over the KV cache).
#include <cstdio>
#include <cstring>

#include "checkpoint/load.h"
#include "checkpoint/safetensors.h"
#include "cli/commands.h"
#include "model/llama_infer.h"

namespace tl::cli {

namespace {
std::vector<int32_t> read_tokens(const std::string& path, int64_t& B, int64_t& T) {
  SafetensorsFile f(path);
  const StTensorInfo& t = f.get("tokens");
  TL_CHECK(t.shape.size() == 2 && t.shape[0] > 0 && t.shape[1] > 0, "'", path,
           "': tensor 'tokens' must be [B, T], got ", t.shape_str());
  TL_CHECK(t.dtype == DType::I32 || t.dtype == DType::I64, "'", path,
           "': tensor 'tokens' must be I32 or I64, got ", safetensors_dtype_name(t.dtype));
  B = t.shape[0];
  T = t.shape[1];
  std::vector<int32_t> out(size_t(B * T));
  const auto bytes = f.bytes(t);
  for (size_t i = 0; i < out.size(); ++i) {
    if (t.dtype == DType::I32) {
      std::memcpy(&out[i], bytes.data() + 4 * i, 4);
    } else {
      int64_t v;
      std::memcpy(&v, bytes.data() + 8 * i, 8);
      TL_CHECK(v >= 0 && v < (int64_t(1) << 31), "'", path, "': token ", v, " at ", i,
               " is out of range");
      out[i] = int32_t(v);
    }
  }
  return out;
}
}  // namespace

void add_logits_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("logits", "Write a checkpoint's logits for given token rows");
  struct Opts {
    std::string checkpoint, tokens, out, device = "auto";
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--checkpoint", o->checkpoint, "Checkpoint file or sharded step folder")
      ->required()
      ->check(CLI::ExistingPath);
  cmd->add_option("--tokens", o->tokens, "safetensors file with 'tokens' [B, T]")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--out", o->out, "safetensors file to write 'logits' [B, T, V] to")->required();
  cmd->add_option("--device", o->device, "cpu, cuda or auto");
  cmd->add_option("--threads", o->threads, "CPU threads (0 = all cores)");
  cmd->callback([o] {
    int64_t B = 0, T = 0;
    const std::vector<int32_t> tokens = read_tokens(o->tokens, B, T);
    auto be = make_backend(o->device, o->threads);
    LoadedModel lm = load_model(o->checkpoint, *be);
    const int64_t V = lm.model->config().vocab_size;
    LlamaInference inf(*lm.model, int(B), int(T));
    std::vector<int32_t> pos(size_t(B), 0);
    std::vector<float> logits(size_t(B * T * V));
    inf.forward(tokens.data(), int(T), pos.data(), nullptr, logits.data());
    write_safetensors(o->out, {{"logits", DType::F32, {B, T, V}, logits.data(), DType::F32}},
                      {{"device", be->describe()}, {"checkpoint", o->checkpoint}});
    std::printf("logits [%lld, %lld, %lld] on %s -> %s\n", (long long)B, (long long)T, (long long)V,
                be->describe().c_str(), o->out.c_str());
  });
}

}  // namespace tl::cli
