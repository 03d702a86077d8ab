// The status page in a real browser: Debian's chromium, headless, driven by
// playwright-core (no downloaded browser), against a node on 127.0.0.1 with
// records published over MQTT by mqtt.js and an HTTP sink whose receiver is
// stopped (so the sink lags and its error shows). The page must show the
// live figures and follow them when more records arrive. With
// TRIBUTARY_UPDATE_SCREENSHOT=1 the first test also writes
// docs/status-page.png, the screenshot the README shows (not on every run:
// a test run must not change the checkout).

import { join } from 'node:path'
import { type Browser, chromium, type Page } from 'playwright-core'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import { HttpReceiver } from '../helpers/http-receiver.ts'
import { Cleanup, WAIT_MS } from '../helpers/integration.ts'

const CHROMIUM = '/usr/bin/chromium'
const SCREENSHOT = join(import.meta.dirname, '../../docs/status-page.png')
const UPDATE_SCREENSHOT = process.env.TRIBUTARY_UPDATE_SCREENSHOT === '1'
const TOKEN = 'a-long-enough-page-token'

const cleanup = new Cleanup()
afterEach(() => cleanup.run())

/** What the functions run in the page use of the DOM (the project's TypeScript has no DOM lib). */
interface PageDocument {
  querySelector(selector: string): { readonly textContent: string | null } | null
  querySelectorAll(selector: string): Iterable<{
    querySelector(selector: string): { readonly textContent: string | null } | null
  }>
}

let browser: Browser
beforeAll(async () => {
  // playwright gives each launch a fresh --user-data-dir of its own and removes it on close.
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // The flags of ../shared/TESTING.md: root needs --no-sandbox; nothing may call out to the network.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  })
})
afterAll(async () => {
  await browser?.close()
})

async function cellText(page: Page, selector: string): Promise<string> {
  return ((await page.locator(selector).textContent({ timeout: WAIT_MS })) ?? '').trim()
}

/** Waits until the text at `selector` is `expected` (the page redraws on each poll). */
async function waitForText(page: Page, selector: string, expected: string): Promise<void> {
  await page.waitForFunction(
    ([sel, want]) =>
      (globalThis as unknown as { document: PageDocument }).document
        .querySelector(sel ?? '')
        ?.textContent?.trim() === want,
    [selector, expected],
    { timeout: WAIT_MS, polling: 100 },
  )
}

describe('status page', () => {
  test('shows the live figures of a running node and follows them', async () => {
    // A receiver that is not running: the sink cannot deliver and lags.
    const rx = new HttpReceiver()
    await rx.start()
    const url = rx.url
    await rx.stop()
    const running = await cleanup.node({
      config: {
        streams: [
          {
            name: 'temps',
            match: ['sensors/+/temperature'],
            partitions: 2,
            key: { from: 'topic-level', level: 1 },
          },
        ],
        sinks: [{ name: 'hq', type: 'http', url, lingerMs: 10, retry: { initialMs: 50, maxMs: 200 } }],
      },
    })
    const client = await cleanup.mqtt(running.url, { clientId: 'page-sensor' })
    for (let i = 0; i < 7; i++)
      await client.publishAsync(`sensors/dev-${i % 3}/temperature`, `{"c":${i}}`, { qos: 1 })

    const page = await browser.newPage({ viewport: { width: 1100, height: 900 } })
    cleanup.defer('close the page', () => page.close())
    const consoleErrors: string[] = []
    page.on('pageerror', (err) => consoleErrors.push(err.message))
    const res = await page.goto(`${running.httpUrl}/?refreshMs=300`)
    expect(res?.status()).toBe(200)
    expect(res?.headers()['content-type']).toMatch(/^text\/html/)

    await waitForText(page, 'tr.stream[data-stream="temps"] td[data-field="records"]', '7')
    expect(await cellText(page, '#node')).toBe(running.node.nodeId)
    expect(await cellText(page, '#ready')).toBe('ready')
    expect(await cellText(page, '#connections')).toBe('1')
    expect(await page.locator('#streams tr[data-stream="temps"][data-partition]').count()).toBe(2)
    expect(await cellText(page, '#disk dd[data-field="high-water mark"]')).toBe('95 %')
    expect(await cellText(page, '#disk dd[data-field="used"]')).toMatch(/^\d+\.\d %$/)

    // The sink row: 7 records not forwarded, its state and its error.
    const sinkRow = 'tr[data-sink="hq"][data-stream="temps"]'
    await page.waitForFunction(
      (sel) =>
        [...(globalThis as unknown as { document: PageDocument }).document.querySelectorAll(sel)].reduce(
          (sum, tr) => sum + Number(tr.querySelector('[data-field="lagRecords"]')?.textContent),
          0,
        ) === 7,
      sinkRow,
      { timeout: WAIT_MS, polling: 100 },
    )
    await page.waitForSelector(`${sinkRow} td[data-field="state"]:has-text("retrying")`, { timeout: WAIT_MS })
    await page.waitForSelector('#errors tr[data-level="sink"]', { timeout: WAIT_MS })
    expect(await cellText(page, '#errors tbody')).toContain('TRIB_SINK_UNAVAILABLE')
    expect(await cellText(page, '#peers tbody')).toMatch(/^no peers/)
    expect(await cellText(page, '#cluster')).toMatch(/runs alone/)

    // More records: the count moves, and the rate from two polls shows above zero.
    for (let i = 0; i < 5; i++)
      await client.publishAsync(`sensors/dev-${i % 3}/temperature`, `{"c":${i}}`, { qos: 1 })
    await waitForText(page, 'tr.stream[data-stream="temps"] td[data-field="records"]', '12')
    const rate = Number(await cellText(page, 'tr.stream[data-stream="temps"] td[data-field="rate"]'))
    // The poll that saw the new records may or may not have been the first after them; a later one shows 0.
    expect(Number.isFinite(rate)).toBe(true)
    await page.waitForFunction(
      (sel) =>
        [...(globalThis as unknown as { document: PageDocument }).document.querySelectorAll(sel)].reduce(
          (sum, tr) => sum + Number(tr.querySelector('[data-field="lagRecords"]')?.textContent),
          0,
        ) === 12,
      sinkRow,
      { timeout: WAIT_MS, polling: 100 },
    )
    expect(consoleErrors).toEqual([])
    const png = await page.screenshot({ fullPage: true, ...(UPDATE_SCREENSHOT ? { path: SCREENSHOT } : {}) })
    expect(png.subarray(1, 4).toString()).toBe('PNG')
  })

  test('with a token the page takes ?token= and its polls send it as a bearer header', async () => {
    const running = await cleanup.node({
      config: { http: { token: TOKEN }, streams: [{ name: 'events', match: ['ev/#'] }] },
    })
    const client = await cleanup.mqtt(running.url, { clientId: 'page-sensor-2' })
    for (let i = 0; i < 3; i++) await client.publishAsync('ev/x', `e${i}`, { qos: 1 })

    expect((await fetch(`${running.httpUrl}/`)).status).toBe(401)
    expect((await fetch(`${running.httpUrl}/status?token=${TOKEN}x`)).status).toBe(401)
    // ?token= opens the page only; the API routes still want the header.
    expect((await fetch(`${running.httpUrl}/v1/status?token=${TOKEN}`)).status).toBe(401)

    const page = await browser.newPage()
    cleanup.defer('close the page', () => page.close())
    const res = await page.goto(`${running.httpUrl}/status?token=${TOKEN}&refreshMs=300`)
    expect(res?.status()).toBe(200)
    await waitForText(page, 'tr.stream[data-stream="events"] td[data-field="records"]', '3')
    // The token left the address bar (it stays in the tab's sessionStorage).
    expect(page.url()).toBe(`${running.httpUrl}/status?refreshMs=300`)
    expect(await cellText(page, '#error')).toBe('')
  })
})
