// Cross-backend agreement, measured: (1) how many of the 65,536 outputs of a bfloat16 matmul
// ([256, K] x [K, 256], K = 1024 by default) differ in their bits from the reference backend's,
// per backend; (2) the relative differences of a bf16-mixed MLP's 50 losses from the reference
// backend's (the model and data of the conformance kit's agreement test).
// Run: npm run bench:agreement -w @nbit/cli [-- K]
import { autocastPolicyOf, Generator, ReferenceBackend, Runtime, tensor, withRuntime, type Accelerator, type AutocastPolicy, type Backend } from "@nbit/core";
import { AGREEMENT_BOUNDS, bf16MixedLosses } from "@nbit/conformance/agreement";
import { CpuAccelerator } from "@nbit/cpu";
import { CudaAccelerator } from "@nbit/cuda";
import { TpuAccelerator } from "@nbit/tpu";

const K = Number(process.argv[2] ?? 1024);
const accelerators: [string, Accelerator][] = [
  ["cpu (onnxruntime)", new CpuAccelerator({ threads: 1 })],
  ["tpu (MXU rule)", new TpuAccelerator()],
  ["cuda (tfjs-cpu kernels)", new CudaAccelerator("tfjs-cpu")],
];

async function matmulBits(backend: Backend, trial: number): Promise<Uint16Array> {
  const g = new Generator(100 + trial);
  const a = Float32Array.from({ length: 256 * K }, () => g.normal());
  const b = Float32Array.from({ length: K * 256 }, () => g.normal());
  return withRuntime(new Runtime(backend), async () => {
    const out = tensor(a, [256, K], "bfloat16").matmul(tensor(b, [K, 256], "bfloat16"));
    return (await out.toHost()) as Uint16Array;
  });
}

async function mlpLosses(backend: Backend, policy: AutocastPolicy, steps = AGREEMENT_BOUNDS.steps): Promise<number[]> {
  return withRuntime(new Runtime(backend), () => bf16MixedLosses(policy, steps));
}

if (process.argv[3] !== "mlp-only") {
  console.log(`bfloat16 matmul [256, ${K}] x [${K}, 256]: outputs whose bits differ from the reference backend's (of 65,536), 3 input draws`);
  const reference = new ReferenceBackend();
  const refBits = await Promise.all([0, 1, 2].map((t) => matmulBits(reference, t)));
  for (const [name, acc] of accelerators) {
    const backend = acc.createBackend();
    const counts: number[] = [];
    let ulps = 0;
    for (let t = 0; t < 3; t++) {
      const bits = await matmulBits(backend, t);
      let n = 0;
      for (let i = 0; i < bits.length; i++)
        if (bits[i] !== refBits[t]![i]) {
          n++;
          ulps = Math.max(ulps, Math.abs(bits[i]! - refBits[t]![i]!));
        }
      counts.push(n);
    }
    console.log(`  ${name.padEnd(26)} ${counts.join(", ")} (largest difference ${ulps} bfloat16 ulp)`);
  }
}

console.log("\nbf16-mixed MLP, 50 SGD steps: relative difference of each loss from the reference backend's");
for (const [name, acc] of accelerators) {
  const policy = autocastPolicyOf(acc);
  const theirs = await mlpLosses(new ReferenceBackend(), policy);
  const mine = await mlpLosses(acc.createBackend(), policy);
  const rel = mine.map((l, i) => Math.abs(l - theirs[i]!) / theirs[i]!);
  const worst = rel.indexOf(Math.max(...rel));
  const firstDiffering = rel.findIndex((r) => r > 0);
  console.log(
    `  ${name.padEnd(26)} first loss ${rel[0]!.toExponential(2)}, largest ${rel[worst]!.toExponential(2)} (step ${worst}), first differing step ${firstDiffering}; loss ${theirs[0]!.toFixed(4)} -> ${theirs.at(-1)!.toFixed(4)} (${policy.name} lists)`,
  );
}
