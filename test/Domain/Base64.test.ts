/**
 * The protocol's base64 check (every binary payload is padded standard base64).
 */
import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import * as Base64 from "../../src/Domain/Base64.js"

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

/** The definition, one character at a time: groups of four, `=` only as the last one or two characters. */
const reference = (text: string): boolean => {
  if (text.length % 4 !== 0) return false
  let padding = 0
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string
    if (c === "=") {
      if (i < text.length - 2) return false
      padding++
    } else if (padding > 0 || !ALPHABET.includes(c)) {
      return false
    }
  }
  return true
}

describe("Base64.isBase64", () => {
  it("takes padded standard base64 and nothing else", () => {
    for (const good of ["", "AAAA", "AAA=", "AA==", "Zm9vYmFy", "Zm9vYg==", "+/+/", "AAAAAA=="]) {
      assert.isTrue(Base64.isBase64(good), good)
    }
    for (const bad of ["A", "AA", "AAA", "A===", "====", "AA==AA==", "AA=A", "=AAA", "-_-_", "AA AA==", "AA==\n", "\nAAAA", "AAAA====", "Zm9v!mFy", "😀😀==", "AAA\n", "AA=\n", "😀==", "é===", "AAé="]) {
      assert.isFalse(Base64.isBase64(bad), JSON.stringify(bad))
    }
  })

  it("agrees with the definition on any string of base64 characters, padding and others", () => {
    const text = fc.string({ unit: fc.constantFrom(..."AZaz09+/=", "-", "_", " ", "\n", "é"), maxLength: 24 })
    fc.assert(fc.property(text, (s) => Base64.isBase64(s) === reference(s)), { numRuns: 20_000 })
  })

  it("takes whatever Node encodes, and decodes it back with the length it announces", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      const text = Buffer.from(bytes).toString("base64")
      assert.isTrue(Base64.isBase64(text))
      assert.strictEqual(Base64.decodedLength(text), bytes.length)
      assert.deepStrictEqual(Array.from(Base64.decode(text)), Array.from(bytes))
    }))
  })
})
