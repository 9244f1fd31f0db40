// Drives browser/listen.html in headless Chromium (Debian's /usr/bin/chromium, through
// playwright-core) and relays what the page receives, in the same form as signalr-listen.mjs.
//
//   node browser-listen.mjs <server url> <server key SPKI sha256> <profile dir> [screenshot.png]
//
// The page and the SignalR bundles are served from this folder and node_modules by a small
// local web server on loopback (as a locally hosted web vault would be); the page's WebSocket
// goes to the real server. Chromium trusts the test server's key by its SPKI hash alone (it
// honours that only with its own --user-data-dir).
import { createServer } from "node:http";
import { dirname, join } from "node:path";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

import { emit, fail, readCommands } from "./report.mjs";

const [base, spki, profile, screenshot] = process.argv.slice(2);
if (!base || !spki || !profile) fail("usage: node browser-listen.mjs <url> <spki> <profile dir> [png]");

const here = dirname(fileURLToPath(import.meta.url));
const files = {
  "listen.html": [join(here, "browser", "listen.html"), "text/html"],
  "signalr.js": [join(here, "node_modules/@microsoft/signalr/dist/browser/signalr.js"), "text/javascript"],
  "signalr-protocol-msgpack.js": [
    join(here, "node_modules/@microsoft/signalr-protocol-msgpack/dist/browser/signalr-protocol-msgpack.js"),
    "text/javascript",
  ],
};

// Loopback page, loopback server: Chromium's local-network-access checks let it through.
const pages = createServer(async (request, response) => {
  const file = files[new URL(request.url, "http://localhost").pathname.slice(1)];
  if (!file) return response.writeHead(404).end("not found");
  response.writeHead(200, { "Content-Type": file[1] }).end(await readFile(file[0]));
});
await new Promise((resolve) => pages.listen(0, "127.0.0.1", resolve));
const pageUrl = `http://localhost:${pages.address().port}/listen.html?server=${encodeURIComponent(base)}`;

const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    `--ignore-certificate-errors-spki-list=${spki}`,
  ],
}).catch(fail);
const page = context.pages()[0] || (await context.newPage());
page.on("console", (message) => process.stderr.write(`[page ${message.type()}] ${message.text()}\n`));
page.on("pageerror", (error) => process.stderr.write(`[page error] ${error}\n`));
await page.exposeFunction("report", (line) => emit(JSON.parse(line)));
await page.goto(pageUrl).catch(fail);

let stopping = false;
readCommands({
  onToken: (token) => page.evaluate((value) => window.useToken(value), token).catch(fail),
  onStop: async () => {
    if (stopping) return;
    stopping = true;
    if (screenshot) await page.screenshot({ path: screenshot, fullPage: true }).catch(() => {});
    await page.evaluate(() => window.stopHub()).catch(() => {});
    await context.close();
    pages.close();
    process.exit(0);
  },
});
