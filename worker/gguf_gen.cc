// corral_gguf_gen: writes a tiny llama-architecture GGUF model with random
// weights, for tests and benchmarks of the llama.cpp engine (no model hub is
// reachable from CI). The text it generates is gibberish; what matters is that
// llama.cpp loads it through the same code path as a real model, tokenizes
// with a real SentencePiece-style vocabulary (with byte fallback, so every
// input tokenizes), and runs the full transformer.
//
// Usage: corral_gguf_gen --out model.gguf [--n-embd 64] [--n-layer 2]
//          [--n-head 4] [--n-head-kv 4] [--n-ff 128] [--n-ctx 2048] [--seed 1]
//          [--chat-template chatml|none] [--f16]
#include <ggml.h>
#include <gguf.h>
#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace {

// llama.cpp's token types (llama_token_type in llama.h).
constexpr int32_t kNormal = 1;
constexpr int32_t kUnknown = 2;
constexpr int32_t kControl = 3;
constexpr int32_t kByte = 6;

// A small SentencePiece vocabulary: specials, the 256 byte-fallback tokens,
// single characters, and some whole words ("▁" marks a leading space).
struct Vocab {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  void Add(std::string t, float score, int32_t type) {
    tokens.push_back(std::move(t));
    scores.push_back(score);
    types.push_back(type);
  }
};

Vocab MakeVocab(bool chatml) {
  Vocab v;
  v.Add("<unk>", 0, kUnknown);
  v.Add("<s>", 0, kControl);
  v.Add("</s>", 0, kControl);
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    v.Add(buf, 0, kByte);
  }
  const std::string sp = "\xE2\x96\x81";  // U+2581, SentencePiece's space
  const char* words[] = {"the",   "a",      "of",    "and",   "to",     "in",     "is",    "it",
                         "you",   "that",   "he",    "was",   "for",    "on",     "are",   "with",
                         "as",    "I",      "his",   "they",  "be",     "at",     "one",   "have",
                         "this",  "from",   "or",    "had",   "by",     "hello",  "world", "model",
                         "token", "corral", "llama", "fleet", "worker", "engine", "cat",   "dog"};
  float score = -1;
  for (const char* w : words) v.Add(sp + w, score, kNormal), score -= 0.01f;
  v.Add(sp, score, kNormal);
  score -= 0.01f;
  const std::string chars =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?:;'\"-()[]{}<>/"
      "|_=+*&^%$#@~` ";
  for (char c : chars) v.Add(std::string(1, c), score, kNormal), score -= 0.01f;
  if (chatml) {
    v.Add("<|im_start|>", 0, kControl);
    v.Add("<|im_end|>", 0, kControl);
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Writes a tiny llama-architecture GGUF model with random weights."};
  std::string out;
  int n_embd = 64, n_layer = 2, n_head = 4, n_head_kv = 4, n_ff = 128, n_ctx = 2048;
  uint32_t seed = 1;
  std::string chat_template = "chatml";
  bool f16 = false;
  app.add_option("--out", out, "output file")->required();
  app.add_option("--n-embd", n_embd, "embedding width")->check(CLI::Range(8, 8192));
  app.add_option("--n-layer", n_layer, "transformer blocks")->check(CLI::Range(1, 256));
  app.add_option("--n-head", n_head, "attention heads")->check(CLI::Range(1, 256));
  app.add_option("--n-head-kv", n_head_kv, "KV heads (GQA)")->check(CLI::Range(1, 256));
  app.add_option("--n-ff", n_ff, "feed-forward width")->check(CLI::Range(8, 65536));
  app.add_option("--n-ctx", n_ctx, "training context length")->check(CLI::Range(16, 1 << 20));
  app.add_option("--seed", seed, "random seed of the weights");
  app.add_option("--chat-template", chat_template, "chatml or none")
      ->check(CLI::IsMember({"chatml", "none"}));
  app.add_flag("--f16", f16, "store matrices as F16 (default F32)");
  CLI11_PARSE(app, argc, argv);
  if (n_embd % n_head != 0 || n_head % n_head_kv != 0) {
    std::fprintf(stderr, "gguf_gen: n_embd must divide by n_head, n_head by n_head_kv\n");
    return 2;
  }

  const bool chatml = chat_template == "chatml";
  const Vocab vocab = MakeVocab(chatml);
  const int64_t n_vocab = static_cast<int64_t>(vocab.tokens.size());
  const int64_t head_dim = n_embd / n_head;
  const int64_t n_embd_kv = head_dim * n_head_kv;

  gguf_context* g = gguf_init_empty();
  gguf_set_val_str(g, "general.architecture", "llama");
  gguf_set_val_str(g, "general.name", "corral-tiny-random");
  gguf_set_val_u32(g, "general.file_type", f16 ? 1 : 0);
  gguf_set_val_u32(g, "llama.context_length", static_cast<uint32_t>(n_ctx));
  gguf_set_val_u32(g, "llama.embedding_length", static_cast<uint32_t>(n_embd));
  gguf_set_val_u32(g, "llama.block_count", static_cast<uint32_t>(n_layer));
  gguf_set_val_u32(g, "llama.feed_forward_length", static_cast<uint32_t>(n_ff));
  gguf_set_val_u32(g, "llama.attention.head_count", static_cast<uint32_t>(n_head));
  gguf_set_val_u32(g, "llama.attention.head_count_kv", static_cast<uint32_t>(n_head_kv));
  gguf_set_val_f32(g, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
  gguf_set_val_u32(g, "llama.rope.dimension_count", static_cast<uint32_t>(head_dim));
  gguf_set_val_f32(g, "llama.rope.freq_base", 10000.0f);
  gguf_set_val_u32(g, "llama.vocab_size", static_cast<uint32_t>(n_vocab));

  gguf_set_val_str(g, "tokenizer.ggml.model", "llama");
  std::vector<const char*> token_ptrs;
  for (const auto& t : vocab.tokens) token_ptrs.push_back(t.c_str());
  gguf_set_arr_str(g, "tokenizer.ggml.tokens", token_ptrs.data(), token_ptrs.size());
  gguf_set_arr_data(g, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, vocab.scores.data(),
                    vocab.scores.size());
  gguf_set_arr_data(g, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, vocab.types.data(),
                    vocab.types.size());
  gguf_set_val_u32(g, "tokenizer.ggml.bos_token_id", 1);
  gguf_set_val_u32(g, "tokenizer.ggml.eos_token_id",
                   chatml ? static_cast<uint32_t>(n_vocab - 1) : 2);
  gguf_set_val_u32(g, "tokenizer.ggml.unknown_token_id", 0);
  gguf_set_val_bool(g, "tokenizer.ggml.add_bos_token", true);
  gguf_set_val_bool(g, "tokenizer.ggml.add_eos_token", false);
  if (chatml) {
    // The shape llama.cpp's built-in renderer recognises as ChatML.
    gguf_set_val_str(g, "tokenizer.chat_template",
                     "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                     "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
                     "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}");
  }

  // Tensors, in ggml's order of dimensions (ne0 is the row length).
  struct Spec {
    std::string name;
    int64_t ne0, ne1;  // ne1 0: a vector
    bool norm;
  };
  std::vector<Spec> specs = {{"token_embd.weight", n_embd, n_vocab, false},
                             {"output_norm.weight", n_embd, 0, true},
                             {"output.weight", n_embd, n_vocab, false}};
  for (int l = 0; l < n_layer; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    specs.push_back({b + "attn_norm.weight", n_embd, 0, true});
    specs.push_back({b + "attn_q.weight", n_embd, n_embd, false});
    specs.push_back({b + "attn_k.weight", n_embd, n_embd_kv, false});
    specs.push_back({b + "attn_v.weight", n_embd, n_embd_kv, false});
    specs.push_back({b + "attn_output.weight", n_embd, n_embd, false});
    specs.push_back({b + "ffn_norm.weight", n_embd, 0, true});
    specs.push_back({b + "ffn_gate.weight", n_embd, n_ff, false});
    specs.push_back({b + "ffn_up.weight", n_embd, n_ff, false});
    specs.push_back({b + "ffn_down.weight", n_ff, n_embd, false});
  }
  size_t bytes = 0;
  for (const auto& s : specs) bytes += (s.ne1 ? s.ne0 * s.ne1 : s.ne0) * 4 + 256;
  ggml_init_params params{};
  params.mem_size = bytes + specs.size() * ggml_tensor_overhead() + (1 << 16);
  params.mem_buffer = nullptr;
  params.no_alloc = false;
  ggml_context* ctx = ggml_init(params);
  if (ctx == nullptr) {
    std::fprintf(stderr, "gguf_gen: ggml_init failed\n");
    return 1;
  }

  std::mt19937 rng(seed);
  for (const auto& s : specs) {
    // Norms at 1 (identity scale); matrices small and random, scaled by the
    // fan-in so activations stay in range through the layers.
    const bool matrix = s.ne1 != 0;
    const ggml_type type = matrix && f16 ? GGML_TYPE_F16 : GGML_TYPE_F32;
    ggml_tensor* t = matrix ? ggml_new_tensor_2d(ctx, type, s.ne0, s.ne1)
                            : ggml_new_tensor_1d(ctx, GGML_TYPE_F32, s.ne0);
    ggml_set_name(t, s.name.c_str());
    const int64_t n = ggml_nelements(t);
    std::normal_distribution<float> dist(0.0f, 1.0f / std::sqrt(static_cast<float>(s.ne0)));
    for (int64_t i = 0; i < n; ++i) {
      const float x = s.norm ? 1.0f : dist(rng);
      if (type == GGML_TYPE_F16) {
        static_cast<ggml_fp16_t*>(t->data)[i] = ggml_fp32_to_fp16(x);
      } else {
        static_cast<float*>(t->data)[i] = x;
      }
    }
    gguf_add_tensor(g, t);
  }

  const bool ok = gguf_write_to_file(g, out.c_str(), false);
  gguf_free(g);
  ggml_free(ctx);
  if (!ok) {
    std::fprintf(stderr, "gguf_gen: cannot write %s\n", out.c_str());
    return 1;
  }
  return 0;
}
