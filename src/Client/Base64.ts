/**
 * Standard padded base64 (RFC 4648) for the client, with `btoa`/`atob` only: they exist in browsers and in
 * Node 16+, so this module carries no Node-only API into a browser bundle.
 */

/** Bytes to standard padded base64. */
export const encode = (bytes: Uint8Array): string => {
  // Chunked so that String.fromCharCode never receives more arguments than an engine accepts.
  let binary = ""
  for (let offset = 0; offset < bytes.length; offset += CHUNK) {
    binary += String.fromCharCode(...bytes.subarray(offset, offset + CHUNK))
  }
  return btoa(binary)
}

/** Standard base64 to bytes; throws on text that is not base64. */
export const decode = (text: string): Uint8Array => {
  const binary = atob(text)
  const bytes = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i)
  return bytes
}

const CHUNK = 0x8000
