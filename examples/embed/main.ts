/**
 * Runs the embedding example: `npx tsx examples/embed/main.ts`, then
 *   curl -H 'x-user: ada' localhost:3000/app/hello
 *   curl -H 'x-user: ada' -H 'x-role: editor' -H 'content-type: application/json' \
 *        -d '{"title":"Notes"}' localhost:3000/collab/api/v1/documents
 * and connect a WebSocket to ws://localhost:3000/collab/ws/documents/<id> with the same headers.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Layer } from "effect"
import { makeApp } from "./app.js"

const port = Number(process.env["PORT"] ?? 3000)

Layer.launch(makeApp({ port, filename: process.env["APP_DB"] ?? "embed-example.db" })).pipe(NodeRuntime.runMain)
