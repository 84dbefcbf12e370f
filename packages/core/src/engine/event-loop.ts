/**
 * How long runs may follow each other without an event-loop turn. Programs often complete without
 * one (an eager backend computes synchronously, onnxruntime-node's binding returns at once), so a
 * training loop would otherwise hold the event loop for the whole run: timers, I/O, V8's
 * foreground GC tasks and FinalizationRegistry callbacks would all wait.
 */
export const EVENT_LOOP_TURN_MS = 5;

let lastTurn = performance.now();

/** Undefined, or a promise that resolves after one event-loop turn when none was taken for EVENT_LOOP_TURN_MS. */
export function eventLoopTurnIfDue(): Promise<void> | undefined {
  if (performance.now() - lastTurn < EVENT_LOOP_TURN_MS) return undefined;
  return new Promise((resolve) =>
    setImmediate(() => {
      lastTurn = performance.now();
      resolve();
    }),
  );
}
