// bench/tokenizer/measure.mjs: the input tokens of a batch file by a real tokenizer
// (gpt-tokenizer, o200k_base: GPT-4o's), each line's body.messages as a chat: prints
// "lines=N tokens=T". bench/tokenizer/run.sh compares moonbatch.estimate with it.
import { readFileSync } from "node:fs";
import { encodeChat } from "gpt-tokenizer";

const path = process.argv[2];
let lines = 0;
let tokens = 0;
for (const text of readFileSync(path, "utf8").split("\n")) {
  if (!text.trim()) continue;
  const line = JSON.parse(text);
  lines += 1;
  tokens += encodeChat(line.body.messages, "gpt-4o").length;
}
console.log(`lines=${lines} tokens=${tokens}`);
