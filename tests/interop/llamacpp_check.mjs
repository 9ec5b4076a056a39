// Runs our GGUF files through llama.cpp (node-llama-cpp's prebuilt CPU build) and
// @huggingface/gguf, and prints what they compute as JSON; the C++ test compares it with ours.
// Request (argv[2], JSON): {models: [path...], texts: [string...], prompts: [[id...]...],
//   n_new, probes: [[id...]...], top: k}
// Result: {models: [{path, gguf: {metadata, tensors}, tokens: [[id...]], greedy: [[id...]],
//   probes: [[{position, count, sum, top: [[id, p]...], p_of: {id: p}}...]]}]}
import { readFileSync } from "node:fs";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";
import { gguf } from "@huggingface/gguf";

const req = JSON.parse(readFileSync(process.argv[2], "utf8"));
// One thread: ggml's worker threads spin while they wait for each other, which on a small
// shared machine (CI, or ctest -j) turns milliseconds into seconds per token.
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error, maxThreads: 1 });
const out = { models: [] };

for (const path of req.models) {
  const parsed = await gguf(path, { allowLocalFile: true });
  const meta = {};
  for (const [k, v] of Object.entries(parsed.metadata)) {
    if (k === "tokenizer.ggml.tokens" || k === "tokenizer.ggml.scores" || k === "tokenizer.ggml.token_type")
      meta[k] = { length: v.length, first: v.slice(0, 300) };
    else meta[k] = typeof v === "bigint" ? Number(v) : v;
  }
  const tensors = parsed.tensorInfos.map((t) => ({ name: t.name, shape: t.shape.map(Number), dtype: t.dtype }));

  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  const tokens = req.texts.map((t) => Array.from(model.tokenize(t)));
  // fp32 attention: no flash attention (its CPU kernel rounds through f16, ~1e-4 in the
  // probabilities) and an f32 KV cache (llama.cpp's default is f16).
  const context = await model.createContext({
    contextSize: req.context ?? 256, batchSize: 256, sequences: 1, threads: 1, flashAttention: false,
    experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
  });
  const seq = context.getSequence();

  const greedy = [];
  for (const prompt of req.prompts) {
    await seq.clearHistory();
    const got = [];
    for await (const tok of seq.evaluate(prompt, { temperature: 0 })) {
      got.push(tok);
      if (got.length >= req.n_new) break;
    }
    greedy.push(got);
  }

  const probes = [];
  for (const probe of req.probes) {
    await seq.clearHistory();
    // Temperature 1 with every filter off: the model's own softmax over the whole vocabulary.
    const options = { temperature: 1, topK: 0, topP: 1, minP: 0 };
    const input = probe.map((id) => [id, { generateNext: { probabilities: true, options } }]);
    const res = await seq.controlledEvaluate(input);
    const rows = [];
    for (let i = 0; i < probe.length; ++i) {
      const probs = res[i]?.next?.probabilities;
      if (!probs) { rows.push(null); continue; }
      const all = Array.from(probs.entries()).sort((a, b) => b[1] - a[1]);
      const p_of = {};
      for (const id of req.probe_ids ?? []) p_of[id] = probs.get(id) ?? 0;
      // The sampler normalizes in float32 (a sum over the whole vocabulary, off by up to ~1e-4
      // relative when one token dominates); its sum in double lets the test undo that rounding.
      let sum = 0;
      for (const [, p] of all) sum += p;
      rows.push({ position: i, count: all.length, sum, top: all.slice(0, req.top ?? 10), p_of });
    }
    probes.push(rows);
  }
  await context.dispose();
  await model.dispose();
  out.models.push({ path, gguf: { version: parsed.metadata.version, metadata: meta, tensors }, tokens, greedy, probes });
}
process.stdout.write(JSON.stringify(out));
await llama.dispose();
