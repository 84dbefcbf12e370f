import { createRequire } from "node:module";
import type * as ort from "onnxruntime-node";

/** A session of onnxruntime-node's native binding: `run` returns the outputs, at once in 1.30, a promise in later versions. */
export interface NativeSession {
  run(feeds: Record<string, ort.Tensor>, fetches: Record<string, null>, options: object): Record<string, ort.Tensor> | Promise<Record<string, ort.Tensor>>;
  dispose(): void;
}

/** Creates native sessions without onnxruntime-node's public wrapper. */
export interface NativeBinding {
  createSession(model: Uint8Array, options: ort.InferenceSession.SessionOptions): NativeSession;
}

interface BindingModule {
  binding?: { InferenceSession?: new () => NativeSession & { loadModel(buffer: ArrayBufferLike, offset: number, length: number, options: object): void } };
  initOrt?: () => void;
}

/**
 * onnxruntime-node's native binding (dist/binding.js), or undefined when this onnxruntime-node
 * has no such module of the expected shape. Its public `session.run` runs the native call in a
 * `setImmediate` callback: one event-loop turn per run, 13-18 us of the small MLP's step
 * (bench/direct.ts). The binding's own `run` is the same native call without that turn;
 * core's Runtime keeps the event loop turning (EVENT_LOOP_TURN_MS).
 */
export function loadNativeBinding(): NativeBinding | undefined {
  let module: BindingModule;
  try {
    module = createRequire(import.meta.url)("onnxruntime-node/dist/binding.js") as BindingModule;
  } catch {
    return undefined;
  }
  const { binding, initOrt } = module;
  const Session = binding?.InferenceSession;
  if (typeof Session !== "function" || typeof initOrt !== "function") return undefined;
  if (typeof Session.prototype.loadModel !== "function" || typeof Session.prototype.run !== "function") return undefined;
  return {
    createSession(model, options) {
      // What onnxruntime-node's InferenceSession.create does for a model in memory on its CPU backend.
      initOrt();
      const session = new Session();
      session.loadModel(model.buffer, model.byteOffset, model.byteLength, options);
      return session;
    },
  };
}
