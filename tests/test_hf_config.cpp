// config.json parsing across transformers versions, and the config we write.
#include "checkpoint/hf.h"
#include "ckpt_test_util.h"

using namespace tl;
using ckpt_test::error_of;
using ckpt_test::has;

namespace {

// TinyLlama-1.1B's config.json as released (transformers 4.31 era).
json hfc_tinyllama() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 1,
    "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
    "intermediate_size": 5632, "max_position_embeddings": 2048, "model_type": "llama",
    "num_attention_heads": 32, "num_hidden_layers": 22, "num_key_value_heads": 4,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 10000.0,
    "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.31.0.dev0",
    "use_cache": true, "vocab_size": 32000})");
}

// A transformers 5.x style config: RoPE settings inside rope_parameters, "dtype", head_dim.
json hfc_v5() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": 1, "dtype": "float32", "eos_token_id": 2, "head_dim": 16,
    "hidden_act": "silu", "hidden_size": 64, "initializer_range": 0.02,
    "intermediate_size": 176, "max_position_embeddings": 64, "mlp_bias": false,
    "model_type": "llama", "num_attention_heads": 4, "num_hidden_layers": 2,
    "num_key_value_heads": 2, "pad_token_id": null, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_parameters": {"rope_theta": 500000.0, "rope_type": "default"},
    "tie_word_embeddings": false, "transformers_version": "5.17.0", "use_cache": true,
    "vocab_size": 256})");
}

std::string hfc_error(const json& j) {
  return error_of([&] { model_config_from_hf(j); });
}

}  // namespace

TEST(HfConfig, ReadsTheReleasedTinyLlamaConfig) {
  ModelConfig c = model_config_from_hf(hfc_tinyllama());
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.dim, 2048);
  EXPECT_EQ(c.ffn_dim, 5632);
  EXPECT_EQ(c.n_layers, 22);
  EXPECT_EQ(c.n_heads, 32);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.max_seq_len, 2048);
  EXPECT_EQ(c.norm_eps, 1e-5f);
  EXPECT_EQ(c.rope_theta, 10000.0f);
  EXPECT_EQ(c.preset, "tinyllama-1.1b");
  EXPECT_EQ(c.num_params(), 1100048384);  // TinyLlama-1.1B's published count
}

TEST(HfConfig, ReadsRopeParametersOfTransformers5) {
  ModelConfig c = model_config_from_hf(hfc_v5());
  EXPECT_EQ(c.rope_theta, 500000.0f);
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.preset, "custom");

  json j = hfc_v5();  // the same base in an older rope_scaling object
  j.erase("rope_parameters");
  j["rope_scaling"] = {{"rope_type", "default"}, {"rope_theta", 250000.0}};
  EXPECT_EQ(model_config_from_hf(j).rope_theta, 250000.0f);

  j = hfc_v5();  // top-level and nested agree
  j["rope_theta"] = 500000.0;
  EXPECT_EQ(model_config_from_hf(j).rope_theta, 500000.0f);
  j["rope_theta"] = 10000.0;  // ... or do not
  EXPECT_TRUE(has(hfc_error(j), "disagrees")) << hfc_error(j);

  j = hfc_v5();  // nothing at all: the LlamaConfig default
  j.erase("rope_parameters");
  EXPECT_EQ(model_config_from_hf(j).rope_theta, 10000.0f);
}

TEST(HfConfig, MissingKvHeadsMeansFullAttention) {
  json j = hfc_tinyllama();
  j.erase("num_key_value_heads");
  EXPECT_EQ(model_config_from_hf(j).n_kv_heads, 32);
  j["num_key_value_heads"] = nullptr;
  EXPECT_EQ(model_config_from_hf(j).n_kv_heads, 32);
}

TEST(HfConfig, UnsupportedRopeScalingIsRefused) {
  json j = hfc_tinyllama();
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  std::string msg = hfc_error(j);
  EXPECT_TRUE(has(msg, "unsupported") && has(msg, "linear")) << msg;

  j = hfc_v5();
  j["rope_parameters"] = {{"rope_type", "llama3"}, {"rope_theta", 500000.0}, {"factor", 8.0}};
  msg = hfc_error(j);
  EXPECT_TRUE(has(msg, "unsupported") && has(msg, "llama3")) << msg;
}

TEST(HfConfig, OtherArchitecturesAreRefused) {
  json j = hfc_tinyllama();
  j["model_type"] = "mistral";
  EXPECT_TRUE(has(hfc_error(j), "mistral")) << hfc_error(j);
  j.erase("model_type");
  EXPECT_TRUE(has(hfc_error(j), "model_type")) << hfc_error(j);

  struct Case {
    const char* key;
    json value;
  };
  for (const auto& c : {Case{"hidden_act", "gelu"}, Case{"attention_bias", true},
                        Case{"mlp_bias", true}, Case{"head_dim", 128}}) {
    json k = hfc_tinyllama();
    k[c.key] = c.value;
    EXPECT_TRUE(has(hfc_error(k), c.key)) << c.key << ": " << hfc_error(k);
  }
  json ok = hfc_tinyllama();
  ok["head_dim"] = 64;
  EXPECT_EQ(model_config_from_hf(ok).head_dim(), 64);
}

TEST(HfConfig, MissingOrMistypedFieldsAreNamed) {
  json j = hfc_tinyllama();
  j.erase("hidden_size");
  EXPECT_TRUE(has(hfc_error(j), "hidden_size")) << hfc_error(j);
  j = hfc_tinyllama();
  j["vocab_size"] = "32000";
  EXPECT_TRUE(has(hfc_error(j), "vocab_size")) << hfc_error(j);
  j = hfc_tinyllama();
  j["vocab_size"] = 32000.5;
  EXPECT_TRUE(has(hfc_error(j), "vocab_size")) << hfc_error(j);
  j["vocab_size"] = 32000.0;  // an integral float is fine
  EXPECT_EQ(model_config_from_hf(j).vocab_size, 32000);
  j = hfc_tinyllama();
  j["num_key_value_heads"] = 5;  // does not divide 32 heads
  EXPECT_TRUE(has(hfc_error(j), "n_kv_heads")) << hfc_error(j);
  j = hfc_tinyllama();
  j["tie_word_embeddings"] = "no";
  EXPECT_TRUE(has(hfc_error(j), "tie_word_embeddings")) << hfc_error(j);
}

TEST(HfConfig, WrittenConfigIsCompleteAndReadsBack) {
  ModelConfig c = ckpt_test::small_config();
  c.rope_theta = 500000.0f;
  json j = hf_config_from_model(c, 1, 2);
  EXPECT_EQ(j["architectures"], json::array({"LlamaForCausalLM"}));
  EXPECT_EQ(j["model_type"], "llama");
  EXPECT_EQ(j["hidden_size"], 32);
  EXPECT_EQ(j["intermediate_size"], 40);
  EXPECT_EQ(j["num_hidden_layers"], 2);
  EXPECT_EQ(j["num_attention_heads"], 4);
  EXPECT_EQ(j["num_key_value_heads"], 2);
  EXPECT_EQ(j["vocab_size"], 48);
  EXPECT_EQ(j["max_position_embeddings"], 16);
  EXPECT_EQ(j["rms_norm_eps"].get<double>(), 1e-5);  // the decimal, not float(1e-5)
  EXPECT_EQ(j["rope_theta"].get<double>(), 500000.0);
  EXPECT_TRUE(j.contains("rope_scaling") && j["rope_scaling"].is_null());
  EXPECT_EQ(j["rope_parameters"]["rope_type"], "default");
  EXPECT_EQ(j["rope_parameters"]["rope_theta"].get<double>(), 500000.0);
  EXPECT_EQ(j["hidden_act"], "silu");
  EXPECT_EQ(j["bos_token_id"], 1);
  EXPECT_EQ(j["eos_token_id"], 2);
  EXPECT_EQ(j["tie_word_embeddings"], false);
  EXPECT_EQ(j["use_cache"], true);
  EXPECT_EQ(j["attention_bias"], false);
  EXPECT_EQ(j["mlp_bias"], false);
  EXPECT_EQ(j["pretraining_tp"], 1);
  EXPECT_TRUE(j["initializer_range"].is_number());
  EXPECT_TRUE(j.contains("torch_dtype") && j.contains("dtype"));

  ModelConfig back = model_config_from_hf(j);
  EXPECT_EQ(back.to_json(), c.to_json());
}
