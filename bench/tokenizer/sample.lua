-- bench/tokenizer/sample.lua: a sample batch input of varied text (English prose, code, Chinese,
-- French with accents, numbers; one to three messages a line) for bench/tokenizer/run.sh:
--   lua bench/tokenizer/sample.lua PATH N
local cjson = require("cjson")
local path, n = arg[1], tonumber(arg[2] or "2000")
local texts = {
  "Summarise the following passage in three sentences and list its key terms: the committee met on Tuesday to discuss the budget.",
  "Write a Python function that returns the n-th Fibonacci number, with a docstring and two doctests. def fib(n): ...",
  "请用三句话总结下面的段落，并列出其中的关键词：数据批处理可以显著降低推理成本。",
  "Résumez le texte suivant en français, avec des phrases courtes : l'été dernier, la météo était très changeante à Genève.",
  "Translate to German: 'The quick brown fox jumps over the lazy dog' and explain each word's grammar.",
  "Given the JSON {\"id\": 42, \"tags\": [\"a\", \"b\"], \"price\": 19.99}, write a jq filter that sums the prices.",
  "List 10 prime numbers greater than 1000 and explain how you checked each one: 1009, 1013, ...",
  "日本語で自己紹介を書いてください。趣味は読書と登山です。",
}
math.randomseed(7)
local f = assert(io.open(path, "wb"))
for i = 1, n do
  local messages = {}
  if i % 3 == 0 then messages[#messages + 1] = { role = "system", content = "You are a careful assistant." } end
  for _ = 1, 1 + i % 2 do
    messages[#messages + 1] = { role = "user", content = texts[math.random(#texts)] .. " (" .. i .. ")" }
  end
  f:write(cjson.encode({ custom_id = "s" .. i, method = "POST", url = "/v1/chat/completions",
    body = { model = "gpt-4o-mini", messages = messages, max_tokens = 256 } }), "\n")
end
f:close()
