/**
 * Textarea <-> Y.Text, as pure functions: the smallest single edit between two strings, and how an edit made
 * elsewhere moves a caret.
 */

/** Replace `remove` characters at `index` by `insert`. */
export interface Splice {
  readonly index: number
  readonly remove: number
  readonly insert: string
}

/**
 * The single splice that turns `before` into `after`: keep the longest common prefix and suffix, replace the
 * middle. Typing, pasting and deleting a selection are each exactly one such splice.
 */
export const diff = (before: string, after: string): Splice | undefined => {
  if (before === after) return undefined
  const max = Math.min(before.length, after.length)
  let start = 0
  while (start < max && before.charCodeAt(start) === after.charCodeAt(start)) start++
  let end = 0
  while (
    end < max - start &&
    before.charCodeAt(before.length - 1 - end) === after.charCodeAt(after.length - 1 - end)
  ) end++
  return { index: start, remove: before.length - start - end, insert: after.slice(start, after.length - end) }
}

/** One operation of a Y.Text change (`event.delta`). */
export type DeltaOp =
  | { readonly retain: number }
  | { readonly insert: string | object }
  | { readonly delete: number }

/**
 * Where a caret at `position` ends up after `delta` was applied to the text: text inserted before it pushes it
 * right, text deleted before it pulls it left (to the deletion's start when the caret was inside it). Text
 * inserted exactly at the caret stays after it, so a local caret is not dragged along by a remote typist.
 */
export const transformPosition = (position: number, delta: ReadonlyArray<DeltaOp>): number => {
  let index = 0 // in the old text
  let shift = 0
  for (const op of delta) {
    if (index > position) break
    if ("retain" in op) {
      index += op.retain
    } else if ("insert" in op) {
      if (index < position) shift += typeof op.insert === "string" ? op.insert.length : 1
    } else {
      shift -= Math.min(op.delete, Math.max(0, position - index))
      index += op.delete
    }
  }
  return position + shift
}
