// bench/node/sdk.mjs: the official openai npm SDK on the bench's upload and list cases (context
// for scripts/bench, no target). Prints one line of key=value pairs, like bench/driver.lua; the
// time is measured around the SDK calls only.
//
//   node sdk.mjs upload BASE_URL KEY FILE    one files.create({file: fs.createReadStream(FILE)})
//   node sdk.mjs list BASE_URL KEY N         N sequential files.list()
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import OpenAI from 'openai';

const [mode, baseURL, apiKey, arg] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });

function die(msg) {
  process.stderr.write(`bench/node/sdk.mjs ${mode}: ${msg}\n`);
  process.exit(1);
}

if (mode === 'upload') {
  const size = fs.statSync(arg).size;
  const t0 = performance.now();
  const file = await client.files.create({ file: fs.createReadStream(arg), purpose: 'batch' });
  const seconds = (performance.now() - t0) / 1000;
  if (file.bytes !== size) die(`the server got ${file.bytes} bytes of ${size}`);
  console.log(`seconds=${seconds.toFixed(6)} bytes=${size}`);
} else if (mode === 'list') {
  const n = Number(arg);
  const first = await client.files.list();
  const perPage = first.data.length;
  if (perPage === 0) die('the list page is empty');
  let items = 0;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const page = await client.files.list();
    items += page.data.length;
  }
  const seconds = (performance.now() - t0) / 1000;
  if (items !== n * perPage) die(`${items} items in ${n} pages of ${perPage}`);
  console.log(`seconds=${seconds.toFixed(6)} calls=${n} rate=${(n / seconds).toFixed(1)} per_page=${perPage}`);
} else {
  die('usage: node sdk.mjs upload|list BASE_URL KEY ARG');
}
