/**
 * Strict standard base64 (RFC 4648, with padding), as the protocol requires for every binary payload.
 */

/**
 * With a length that is a multiple of 4, the same strings as groups of four alphabet characters with a last group
 * ending in at most two `=`: checked as one character class, because a group per four characters made this check
 * most of a large frame's decoding (docs/performance.md, eighth round).
 */
const STRICT = /^[A-Za-z0-9+/]*={0,2}$/

/** Whether `text` is padded base64 of the standard alphabet (RFC 4648, section 4). */
export const isBase64 = (text: string): boolean => text.length % 4 === 0 && STRICT.test(text)

/** Number of bytes `text` decodes to, without decoding it (assumes `isBase64(text)`). */
export const decodedLength = (text: string): number => {
  if (text.length === 0) return 0
  const padding = text.endsWith("==") ? 2 : text.endsWith("=") ? 1 : 0
  return (text.length / 4) * 3 - padding
}

export const decode = (text: string): Uint8Array => {
  const buffer = Buffer.from(text, "base64")
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
}

export const encode = (bytes: Uint8Array): string =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64")
