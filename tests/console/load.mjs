#!/usr/bin/env node
// How long the console takes to show its pages, in headless Chromium: what
// `cargo bench --bench console` runs against a host holding many runs and against one holding
// few.
//
//   FLOWHOST_CONSOLE_LOAD='{"url": "...", "playwright_core": "...", "run": "<id>", "loads": 10}' \
//     node tests/console/load.mjs
//
// Each load is a fresh page (no cache): from navigation start to the moment the page shows
// its data: the runs page's first rows (`run-row`, the listing's first page), a run's steps
// (`step`), the dashboard's first figures. Prints one JSON line: per page, every load's
// milliseconds.

import { createRequire } from 'node:module';

const settings = JSON.parse(process.env.FLOWHOST_CONSOLE_LOAD);
const { chromium } = createRequire(import.meta.url)(settings.playwright_core);

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

const pages = [
  { name: 'runs', hash: '#/runs', ready: '[data-testid="run-row"]' },
  { name: 'run', hash: `#/runs/${settings.run}`, ready: '[data-testid="step"]' },
  { name: 'dashboard', hash: '#/dashboard', ready: '[data-testid="dash-started-rate-tile"]' },
];

const results = {};
try {
  for (const page of pages) {
    results[page.name] = [];
    for (let i = 0; i < settings.loads; i += 1) {
      const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      const tab = await context.newPage();
      await tab.goto(`${settings.url}/ui${page.hash}`);
      await tab.waitForSelector(page.ready, { timeout: 30000 });
      // Milliseconds since the navigation started, as the page itself tells.
      results[page.name].push(await tab.evaluate(() => performance.now()));
      await context.close();
    }
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(results));
