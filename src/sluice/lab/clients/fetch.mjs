// Lab HTTPS client on Node.js (its bundled OpenSSL): node fetch.mjs --cafile CA [--gap S]
// [--api https|fetch] URL OUT [URL OUT ...].  With no gap a page's objects load concurrently.
import fs from "node:fs";
import https from "node:https";

const args = process.argv.slice(2);
let ca;
let gap = 0;
let api = "https";
const jobs = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--cafile") ca = fs.readFileSync(args[++i]);
  else if (args[i] === "--gap") gap = parseFloat(args[++i]);
  else if (args[i] === "--api") api = args[++i];
  else jobs.push([args[i], args[++i]]);
}
const agent = new https.Agent({ keepAlive: true, ca });
const sleep = (s) => new Promise((resolve) => setTimeout(resolve, s * 1000));

function viaHttps(url) {
  return new Promise((resolve, reject) => {
    https
      .get(url, { agent }, (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () =>
          res.statusCode === 200 ? resolve(Buffer.concat(chunks)) : reject(new Error(`status ${res.statusCode}`)),
        );
      })
      .on("error", reject);
  });
}

async function viaFetch(url) {
  const r = await fetch(url); // trusts the CA through NODE_EXTRA_CA_CERTS
  if (r.status !== 200) throw new Error(`status ${r.status}`);
  return Buffer.from(await r.arrayBuffer());
}

let failed = 0;
async function one([url, out]) {
  try {
    fs.writeFileSync(out, await (api === "fetch" ? viaFetch(url) : viaHttps(url)));
  } catch (e) {
    failed++;
    console.error(`${url}: ${e.message} ${e.cause ?? ""}`);
  }
}
if (gap > 0) {
  for (const [i, job] of jobs.entries()) {
    if (i) await sleep(gap);
    await one(job);
  }
} else {
  await Promise.all(jobs.map(one));
}
agent.destroy();
process.exit(failed ? 1 : 0);
