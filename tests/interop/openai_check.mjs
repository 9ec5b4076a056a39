// The official OpenAI client against `tinyllama serve`: argv[2] is a JSON file
// {base_url, api_key, model, prompts, greedy_prompt, max_new, stop}; prints one JSON object
// with what the client got back, for tests/serve/test_serve_openai.cpp to check.
import fs from "node:fs";
import OpenAI from "openai";

const req = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const client = new OpenAI({ baseURL: req.base_url + "/v1", apiKey: req.api_key, maxRetries: 0, timeout: 120000 });
const model = req.model;
const out = {};

// lm-evaluation-harness's loglikelihood request.
const ll = await client.completions.create({
  model, prompt: req.prompts, echo: true, logprobs: 1, max_tokens: 0, temperature: 0, seed: 1234,
});
out.loglik = ll.choices.map((c) => ({ index: c.index, text: c.text, token_logprobs: c.logprobs.token_logprobs,
                                      top_logprobs: c.logprobs.top_logprobs }));

// Greedy text, whole and streamed ("ignore_eos" is our extension; the client passes it on).
const greedy = { model, prompt: req.greedy_prompt, max_tokens: req.max_new, temperature: 0, ignore_eos: true };
out.greedy_text = (await client.completions.create(greedy)).choices[0].text;
let streamed = "";
for await (const chunk of await client.completions.create({ ...greedy, stream: true })) streamed += chunk.choices[0]?.text ?? "";
out.stream_text = streamed;
out.stop_text = (await client.completions.create({ ...greedy, stop: [req.stop] })).choices[0].text;

// n choices with a seed, twice.
const sampled = { model, prompt: "Once upon a time", max_tokens: 8, temperature: 1, n: 3, seed: 11, ignore_eos: true };
const a = await client.completions.create(sampled);
const b = await client.completions.create(sampled);
out.n_texts = [a.choices.map((c) => c.text), b.choices.map((c) => c.text)];

// Chat, whole with logprobs and streamed.
const chat = { model, messages: [{ role: "user", content: "Hello" }], max_tokens: 10, temperature: 0 };
const c = await client.chat.completions.create({ ...chat, logprobs: true, top_logprobs: 2 });
out.chat = { content: c.choices[0].message.content, role: c.choices[0].message.role,
             finish: c.choices[0].finish_reason, logprobs: c.choices[0].logprobs.content.length,
             top: c.choices[0].logprobs.content[0]?.top_logprobs.length ?? 0, usage: c.usage };
let chatStream = "";
for await (const chunk of await client.chat.completions.create({ ...chat, stream: true })) chatStream += chunk.choices[0]?.delta?.content ?? "";
out.chat_stream = chatStream;

out.models = (await client.models.list()).data.map((m) => m.id);

// Errors arrive as the client's error classes, with the status and the field.
try {
  await new OpenAI({ baseURL: req.base_url + "/v1", apiKey: "wrong", maxRetries: 0 }).models.list();
  out.bad_key = "no error";
} catch (e) {
  out.bad_key = { status: e.status, name: e.constructor.name };
}
try {
  await client.completions.create({ model, prompt: "x", logprobs: 9 });
  out.bad_request = "no error";
} catch (e) {
  out.bad_request = { status: e.status, param: e.param ?? null, name: e.constructor.name };
}
console.log(JSON.stringify(out));
