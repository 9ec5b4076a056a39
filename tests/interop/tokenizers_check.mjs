// Loads an exported tokenizer.json with tokenizers.js (@huggingface/tokenizers) and prints
// the ids of each text (special tokens added as the post-processor says) and the decoding of
// those ids without special tokens, as JSON; the C++ test compares them with SentencePiece.
// Request (argv[2], JSON): {dir: exported folder, texts: [string...]}
import { readFileSync } from "node:fs";
import { Tokenizer } from "@huggingface/tokenizers";

const req = JSON.parse(readFileSync(process.argv[2], "utf8"));
const tokenizer = new Tokenizer(JSON.parse(readFileSync(`${req.dir}/tokenizer.json`, "utf8")),
                                JSON.parse(readFileSync(`${req.dir}/tokenizer_config.json`, "utf8")));
const ids = [], decoded = [];
for (const text of req.texts) {
  const enc = tokenizer.encode(text);
  ids.push(enc.ids);
  decoded.push(tokenizer.decode(enc.ids, { skip_special_tokens: true }));
}
process.stdout.write(JSON.stringify({ ids, decoded }));
