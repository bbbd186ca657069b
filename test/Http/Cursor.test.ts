import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import * as Cursor from "../../src/Http/Cursor.js"

describe("Cursor", () => {
  it("round-trips positions and is opaque (base64url)", () => {
    for (const position of [0, 1, 42, 2 ** 40]) {
      const cursor = Cursor.encode(position)
      assert.match(cursor, /^[A-Za-z0-9_-]+$/)
      assert.deepStrictEqual(Cursor.decode(cursor), Either.right(position))
    }
  })

  it("rejects anything it did not issue", () => {
    const foreign = (text: string) => Buffer.from(text).toString("base64url")
    for (const cursor of ["", "!!!", "a".repeat(65), foreign("v1:"), foreign("v1:-3"), foreign("v1:1.5"), foreign("v2:3"), foreign("3"), foreign("v1:1234567890123456")]) {
      assert.isTrue(Either.isLeft(Cursor.decode(cursor)), cursor)
    }
  })
})
