/**
 * Every WebSocket close code docsync sends, by name (protocol section 2.5).
 */

/** The server is shutting down, after it stopped taking updates and flushed what it acked. */
export const GoingAway = 1001
/** A frame over MAX_MESSAGE_BYTES. */
export const MessageTooBig = 1009
/** Missing, invalid or expired token (also: the token expired while the socket was open). */
export const Unauthorized = 4401
/** The token does not grant this document. */
export const Forbidden = 4403
/** Unknown document. */
export const NotFound = 4404
/** The client fell too far behind (its outbound buffer overflowed); it resumes with `since`. */
export const SlowConsumer = 4408
/**
 * Too many connections: the server is at MAX_CONNECTIONS, or the document at MAX_CONNECTIONS_PER_DOCUMENT.
 * Transient: reconnect later, with backoff.
 */
export const TooManyConnections = 4429
/** The document was deleted. */
export const Gone = 4410
/** The server failed while serving the join (storage unreachable); reconnect later. */
export const InternalError = 1011

export const reason: Record<number, string> = {
  [GoingAway]: "server shutting down",
  [MessageTooBig]: "message too big",
  [Unauthorized]: "unauthorized",
  [Forbidden]: "forbidden",
  [NotFound]: "document not found",
  [SlowConsumer]: "too far behind; resume with since",
  [TooManyConnections]: "too many connections; retry later",
  [Gone]: "document deleted",
  [InternalError]: "internal error; reconnect later"
}
