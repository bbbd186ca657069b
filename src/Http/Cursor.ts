/**
 * The opaque page cursor of `GET /documents`: base64url of `v1:<position>`, where position is storage's creation
 * position of the last document of the previous page. Opaque so that the encoding can change (hence the `v1:`).
 */
import { Either } from "effect"

/** The cursor that continues after the document at `position`. */
export const encode = (position: number): string => Buffer.from(`v1:${position}`, "utf8").toString("base64url")

/** The position a cursor stands for, or a message saying why the cursor is not one of ours. */
export const decode = (cursor: string): Either.Either<number, string> => {
  if (!BASE64URL.test(cursor)) return Either.left("cursor is malformed")
  const match = /^v1:(\d{1,15})$/.exec(Buffer.from(cursor, "base64url").toString("utf8"))
  const digits = match?.[1]
  return digits === undefined ? Either.left("cursor is malformed") : Either.right(Number(digits))
}

const BASE64URL = /^[A-Za-z0-9_-]{1,64}$/
