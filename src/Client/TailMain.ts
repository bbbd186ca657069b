#!/usr/bin/env node
/**
 * The `docsync-tail` command (`npm run tail -- <documentId>`, `npx docsync-tail <documentId>`): see Tail.ts.
 */
import { main } from "./Tail.js"

const stop = new AbortController()
process.once("SIGINT", () => stop.abort())
process.once("SIGTERM", () => stop.abort())
main(process.argv.slice(2), process.env, { out: console.log, err: console.error }, stop.signal).then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error)
    process.exit(1)
  }
)
