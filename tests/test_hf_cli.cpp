// The import/export subcommands, run as the built binary.
#include "checkpoint/checkpoint.h"
#include "checkpoint/hf.h"
#include "ckpt_test_util.h"

using namespace tl;
using ckpt_test::has;
using ckpt_test::run_cmd;

namespace {
std::string hfcli(const std::string& args) { return std::string("'") + TL_BINARY + "' " + args; }
std::string q(const std::string& path) { return "'" + path + "'"; }
}  // namespace

TEST(HfCli, ImportThenExportRoundTrips) {
  ckpt_test::TempDir d;
  const ModelConfig cfg = ckpt_test::small_config();
  const std::vector<float> params = ckpt_test::random_params(cfg, 21);
  HfExportOptions f32;
  f32.dtype = DType::F32;
  export_hf(d.file("hf"), cfg, params, f32);

  // The checkpoint's folder does not exist yet: import creates it.
  auto r = run_cmd(hfcli("import --hf " + q(d.file("hf")) + " --out " + q(d.file("ck/m.ckpt"))));
  ASSERT_EQ(r.rc, 0) << r.output;
  CheckpointData ck = load_checkpoint(d.file("ck/m.ckpt"));
  EXPECT_TRUE(ckpt_test::bit_equal(ck.params, params));
  EXPECT_TRUE(ck.adam_m.empty() && ck.adam_v.empty());
  EXPECT_EQ(ck.meta["model"], cfg.to_json());
  EXPECT_EQ(ck.meta["step"], 0);
  EXPECT_EQ(ck.meta["source"]["hf_dir"], d.file("hf"));
  EXPECT_EQ(ck.meta["source"]["hf_config"]["hidden_size"], 32);

  ckpt_test::write_bytes(d.file("tok.model"), "sentencepiece bytes");
  r = run_cmd(hfcli("export --checkpoint " + q(d.file("ck/m.ckpt")) + " --format hf --out " +
                    q(d.file("out")) + " --dtype f32 --tokenizer " + q(d.file("tok.model")) +
                    " --max-shard-gb 0.000005"));  // ~5 KiB: several shards
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_TRUE(ckpt_test::bit_equal(import_hf(d.file("out")).params, params));
  EXPECT_TRUE(std::filesystem::exists(d.file("out/model.safetensors.index.json")));
  EXPECT_EQ(ckpt_test::read_bytes(d.file("out/tokenizer.model")), "sentencepiece bytes");
  EXPECT_TRUE(std::filesystem::exists(d.file("out/tokenizer_config.json")));

  r = run_cmd(hfcli("export --checkpoint " + q(d.file("ck/m.ckpt")) + " --out " + q(d.file("bf"))));
  ASSERT_EQ(r.rc, 0) << r.output;  // defaults: hf, bf16, unsharded
  EXPECT_EQ(read_json_file(d.file("bf/config.json"))["torch_dtype"], "bfloat16");
  EXPECT_TRUE(std::filesystem::exists(d.file("bf/model.safetensors")));
}

TEST(HfCli, BadArgumentsExitNonZeroWithAMessage) {
  ckpt_test::TempDir d;
  const ModelConfig cfg = ckpt_test::small_config();
  CheckpointData ck;
  ck.params = ckpt_test::random_params(cfg, 22);
  ck.meta = {{"model", cfg.to_json()}};
  save_checkpoint(d.file("m.ckpt"), ck);
  const std::string good = "export --checkpoint " + q(d.file("m.ckpt")) + " --out " + q(d.file("o"));
  struct Case {
    std::string args, expect;
  };
  const std::vector<Case> cases = {
      {"import --out " + q(d.file("x.ckpt")), "--hf"},
      {"import --hf " + q(d.file("nope")) + " --out " + q(d.file("x.ckpt")), "nope"},
      {"import --hf " + q(d.path()) + " --out " + q(d.file("x.ckpt")), "config.json"},
      {"export --out " + q(d.file("o")), "--checkpoint"},
      {good + " --format gguf", "gguf"},
      {good + " --dtype int8", "int8"},
      {good + " --max-shard-gb -1", "max-shard-gb"},
      {good + " --tokenizer " + q(d.file("none.model")), "none.model"},
  };
  for (const auto& c : cases) {
    auto r = run_cmd(hfcli(c.args));
    EXPECT_NE(r.rc, 0) << c.args;
    EXPECT_TRUE(has(r.output, c.expect)) << c.args << "\n" << r.output;
  }
  EXPECT_FALSE(std::filesystem::exists(d.file("x.ckpt")));
  EXPECT_FALSE(std::filesystem::exists(d.file("o")));

  CheckpointData no_model;  // a checkpoint without meta.model cannot be exported
  no_model.params = ck.params;
  save_checkpoint(d.file("n.ckpt"), no_model);
  auto r = run_cmd(hfcli("export --checkpoint " + q(d.file("n.ckpt")) + " --out " + q(d.file("o"))));
  EXPECT_NE(r.rc, 0);
  EXPECT_TRUE(has(r.output, "meta.model")) << r.output;

  r = run_cmd(hfcli("export --help"));
  EXPECT_EQ(r.rc, 0);
  EXPECT_TRUE(has(r.output, "--max-shard-gb") && has(r.output, "--tokenizer")) << r.output;
}
