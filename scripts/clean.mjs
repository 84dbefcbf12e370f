// Removes build outputs and caches from the root and every workspace: dist/, .turbo/, coverage/
// and *.tsbuildinfo. node_modules stays; run `npm install` only when dependencies change.
import { readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const { workspaces } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const dirs = [root];
for (const pattern of workspaces) {
  const parent = join(root, pattern.replace(/\/\*$/, ""));
  for (const name of readdirSync(parent)) {
    const dir = join(parent, name);
    if (statSync(dir).isDirectory()) dirs.push(dir);
  }
}
for (const dir of dirs) {
  for (const name of readdirSync(dir)) {
    if (["dist", ".turbo", "coverage"].includes(name) || name.endsWith(".tsbuildinfo")) {
      rmSync(join(dir, name), { recursive: true, force: true });
      console.log(`removed ${join(dir, name).slice(root.length)}`);
    }
  }
}
