// Where a training step's JavaScript allocations come from: V8's sampling heap profiler over
// nbit's 32-true SGD steps (64-64-64-10, batch 32, as nbitPath in common.ts), recorded steps and
// steps replayed through a StepCapture, every sampled allocation counted by the package of its
// innermost frame in @nbit/core, this package's src, onnxruntime-common or onnxruntime-node.
// Inspector sessions turn on async hooks, so the figures run above a plain process's; read them as
// shares. npm run bench -w @nbit/cpu -- alloc
import { Session } from "node:inspector/promises";
import { env, nbitPath, SMALL } from "./common.js";

interface ProfileNode {
  callFrame: { url: string };
  selfSize: number;
  children: ProfileNode[];
}
const [STEPS, WARMUP] = [env("BENCH_STEPS", 1000), env("BENCH_WARMUP", 200)];

const OWNERS: [string, string][] = [
  ["/packages/core/", "@nbit/core"],
  ["/packages/cpu/src/", "@nbit/cpu (src)"],
  ["/packages/cpu/dist/", "@nbit/cpu (src)"],
  ["onnxruntime-common", "onnxruntime-common"],
  ["onnxruntime-node", "onnxruntime-node"],
  ["/packages/cpu/bench/", "this bench"],
];

async function sampledBytes(step: (i: number) => Promise<void>): Promise<Map<string, number>> {
  for (let i = 0; i < WARMUP; i++) await step(i);
  const session = new Session();
  session.connect();
  await session.post("HeapProfiler.startSampling", { samplingInterval: 1024, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  for (let i = 0; i < STEPS; i++) await step(WARMUP + i);
  const { profile } = (await session.post("HeapProfiler.stopSampling")) as unknown as { profile: { head: ProfileNode } };
  session.disconnect();
  const bytes = new Map<string, number>();
  const walk = (node: ProfileNode, owner: string) => {
    const own = OWNERS.find(([part]) => node.callFrame.url.includes(part))?.[1] ?? owner;
    bytes.set(own, (bytes.get(own) ?? 0) + node.selfSize);
    for (const child of node.children) walk(child, own);
  };
  walk(profile.head, "Node.js and other");
  return bytes;
}

for (const captured of [false, true]) {
  const path = nbitPath(SMALL, "32-true", { threads: 1 }, { captured });
  const bytes = await sampledBytes(path.step);
  const kind = captured ? `replayed steps (${path.capture!.stats.replayed} replayed)` : "recorded steps";
  console.log(`MLP ${SMALL.name}, 32-true, SGD, 1 thread, ${kind}: sampled JavaScript allocation per step over ${STEPS} steps after ${WARMUP}`);
  const total = [...bytes.values()].reduce((a, b) => a + b, 0);
  for (const [owner, b] of [...bytes].sort((a, z) => z[1] - a[1])) console.log(`  ${owner.padEnd(20)}${(b / STEPS / 1024).toFixed(1).padStart(8)} KiB`);
  console.log(`  ${"total".padEnd(20)}${(total / STEPS / 1024).toFixed(1).padStart(8)} KiB`);
}
