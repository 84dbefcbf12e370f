import { Session } from "node:inspector/promises";
import { nbitPath, SMALL } from "./common.js";
interface ProfileNode { callFrame: { url: string; functionName: string; lineNumber: number }; selfSize: number; children: ProfileNode[] }
const path = nbitPath(SMALL, "32-true", { threads: 1 }, { captured: true });
for (let i = 0; i < 300; i++) await path.step(i);
const session = new Session(); session.connect();
await session.post("HeapProfiler.startSampling", { samplingInterval: 256, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
const N = 3000;
for (let i = 0; i < N; i++) await path.step(i);
const { profile } = (await session.post("HeapProfiler.stopSampling")) as any;
const bytes = new Map<string, number>();
const walk = (n: ProfileNode, stack: string) => { const k = `${n.callFrame.functionName || "(anon)"} ${n.callFrame.url.split("/").slice(-2).join("/")}:${n.callFrame.lineNumber + 1}`; if (n.selfSize) bytes.set(k + " <- " + stack, (bytes.get(k + " <- " + stack) ?? 0) + n.selfSize); for (const c of n.children) walk(c, k.split(" ")[0]!); };
walk(profile.head, "");
for (const [k, b] of [...bytes].sort((a, z) => z[1] - a[1]).slice(0, 30)) console.log((b / N).toFixed(0).padStart(6), k);
