/**
 * Browser end-to-end test of the demo page, run by test/e2e/run.sh (not part of `npm test`):
 *
 *   tsx test/e2e/browser.ts <baseUrl> [artifactsDir]
 *
 * Two browser contexts (two people) open the same document: one creates it through the page, the other follows
 * the link. Both type; both show the merged text. Then one goes offline (the browser's network is cut), types,
 * comes back, and the other sees its text. Screenshots are written to the artifacts folder and their paths
 * printed. Exits non-zero on the first failed expectation.
 */
import { mkdir } from "node:fs/promises"
import { join, resolve } from "node:path"
import { type Browser, chromium, type Page } from "playwright-core"

const baseUrl = process.argv[2] ?? "http://127.0.0.1:8000"
const artifacts = resolve(process.argv[3] ?? "test/e2e/artifacts")
const TIMEOUT = 15_000

const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync"
]

let passed = 0
const step = (name: string) => console.log(`e2e: ${name}`)
const ok = (name: string) => {
  passed++
  console.log(`e2e:   ok - ${name}`)
}

const main = async () => {
  await mkdir(artifacts, { recursive: true })
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: CHROMIUM_ARGS })
  try {
    await run(browser)
  } finally {
    await browser.close()
  }
}

const run = async (browser: Browser) => {
  const ada = await browser.newContext({ viewport: { width: 900, height: 760 } })
  const bob = await browser.newContext({ viewport: { width: 900, height: 760 } })
  const a = await ada.newPage()
  const b = await bob.newPage()
  for (const [who, page] of [["ada", a], ["bob", b]] as const) {
    page.on("pageerror", (error) => console.error(`e2e: ${who}'s page threw: ${error.message}`))
    page.on("console", (message) => {
      if (message.type() === "error") console.error(`e2e: ${who}'s console: ${message.text()}`)
    })
  }

  step("ada opens the demo and creates a document")
  await a.goto(`${baseUrl}/`)
  await a.locator("#picker h2").waitFor({ timeout: TIMEOUT })
  await a.fill("#title", `e2e ${new Date().toISOString()}`)
  await a.click("#create button")
  await a.waitForURL(/#[0-9a-f-]{36}$/, { timeout: TIMEOUT })
  await status(a, "synced")
  await rename(a, "Ada")
  ok("the document opened, synced")

  step("bob follows the link")
  await b.goto(a.url())
  await status(b, "synced")
  await rename(b, "Bob")
  await until(b, () => peers(b).then((list) => list.includes("Ada")), "bob sees ada in presence")
  await until(a, () => peers(a).then((list) => list.includes("Bob")), "ada sees bob in presence")
  ok("both are here, and see each other's names")

  step("both type, at the same time")
  await typeAt(a, "End", "Hello from Ada. ")
  await until(b, async () => (await value(b)).includes("Hello from Ada. "), "bob sees ada's first line")
  // Concurrently: Ada at the start, Bob at the end. Each one's caret moves with the other's text.
  await Promise.all([typeAt(a, "Home", "Ada first. "), typeAt(b, "End", "Hi from Bob.")])
  for (const page of [a, b]) {
    await until(page, async () => {
      const text = await value(page)
      return text.includes("Hello from Ada. ") && text.includes("Hi from Bob.") && text.includes("Ada first. ")
    }, "both texts merged")
  }
  await until(a, async () => (await value(a)) === (await value(b)), "the same text on both pages")
  ok(`both pages show the merged text: ${JSON.stringify(await value(a))}`)
  await screenshot(a, "1-merged-ada")

  step("bob goes offline and types")
  await bob.setOffline(true)
  await status(b, "offline")
  await typeAt(b, "End", " Written offline by Bob.")
  await until(b, async () => (await value(b)).includes("Written offline by Bob."), "bob's page shows his offline text")
  // Ada must not have it yet: it can only travel once Bob is back.
  await a.waitForTimeout(500)
  if ((await value(a)).includes("Written offline by Bob.")) throw new Error("ada saw bob's text while bob was offline")
  await typeAt(a, "Home", "Ada meanwhile. ")
  await screenshot(b, "2-offline-bob")
  ok("offline: bob's page keeps his text, ada's does not have it")

  step("bob comes back")
  await bob.setOffline(false)
  await status(b, "synced")
  for (const page of [a, b]) {
    await until(page, async () => {
      const text = await value(page)
      return text.includes(" Written offline by Bob.") && text.includes("Ada meanwhile. ")
    }, "offline edits merged")
  }
  await until(a, async () => (await value(a)) === (await value(b)), "the same text on both pages")
  ok(`after reconnecting both pages show: ${JSON.stringify(await value(a))}`)
  const shot = await screenshot(a, "3-final-ada")
  await screenshot(b, "3-final-bob")
  console.log(`e2e: screenshot: ${shot}`)
}

// ---------------------------------------------------------------------------------------------------------------
// helpers

/** Waits for the status badge to show `status` (synced, online, offline). */
const status = (page: Page, wanted: string) =>
  page.locator(`#status[data-status="${wanted}"]`).waitFor({ timeout: TIMEOUT }).catch(async (error: unknown) => {
    throw new Error(`status badge never showed ${wanted} (it shows ${await page.locator("#status").textContent()}): ${String(error)}`)
  })

const rename = async (page: Page, name: string) => {
  await page.fill("#name", name)
  await page.locator("#name").dispatchEvent("change")
}

/** Puts the caret at the start (Home) or end (End) of the text and types, key by key. */
const typeAt = async (page: Page, where: "Home" | "End", text: string) => {
  await page.locator("#text").click()
  await page.keyboard.press(`Control+${where}`)
  await page.keyboard.type(text, { delay: 15 })
}

const value = (page: Page): Promise<string> => page.locator("#text").inputValue()

const peers = (page: Page): Promise<string> => page.locator("#peers").innerText()

/** Re-checks `check` until it holds, failing with `what` after TIMEOUT. */
const until = async (page: Page, check: () => Promise<boolean>, what: string) => {
  const deadline = Date.now() + TIMEOUT
  while (!(await check())) {
    if (Date.now() > deadline) {
      await screenshot(page, "failure")
      throw new Error(`timed out waiting until ${what}`)
    }
    await page.waitForTimeout(50)
  }
}

const screenshot = async (page: Page, name: string): Promise<string> => {
  const path = join(artifacts, `demo-${name}.png`)
  await page.screenshot({ path, fullPage: true })
  console.log(`e2e: saved ${path}`)
  return path
}

main().then(
  () => {
    console.log(`e2e: ${passed} passed, 0 failed`)
  },
  (error: unknown) => {
    console.error(`e2e: FAILED: ${error instanceof Error ? error.stack ?? error.message : String(error)}`)
    console.log(`e2e: ${passed} passed, 1 failed`)
    process.exitCode = 1
  }
)
