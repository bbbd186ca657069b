/**
 * A small typed event emitter: `on(event, listener)` returns the function that removes the listener.
 */

export type Listener<A> = (value: A) => void

export class Emitter<Events extends object> {
  private readonly listeners = new Map<keyof Events, Set<Listener<never>>>()

  /** Calls `listener` with every later `event`; returns the function that stops it. */
  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    let set = this.listeners.get(event)
    if (set === undefined) {
      set = new Set()
      this.listeners.set(event, set)
    }
    set.add(listener)
    return () => {
      set.delete(listener)
    }
  }

  /** Like `on`, for the next `event` only. */
  once<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    const off = this.on(event, (value) => {
      off()
      listener(value)
    })
    return off
  }

  /**
   * Calls every listener of `event`. A listener that throws does not stop the others nor the caller: its error
   * goes to `onListenerError`.
   */
  protected emit<K extends keyof Events>(event: K, value: Events[K]): void {
    const set = this.listeners.get(event)
    if (set === undefined) return
    for (const listener of [...set] as Array<Listener<Events[K]>>) {
      try {
        listener(value)
      } catch (error) {
        this.onListenerError(event, error)
      }
    }
  }

  /** What to do with an error thrown by a listener; nothing by default. */
  protected onListenerError(_event: keyof Events, _error: unknown): void {}
}
