export { main, type CliIO } from "./main.js";
export { DEMOS, type Demo, type DemoDefaults, type DemoOutcome } from "./demos.js";
export { loadMnist, mnistLoaders, type MnistSplits } from "./mnist.js";
export { MnistClassifier, MnistCnn } from "./models.js";
export { MNIST_MODELS, trainMnist, type MnistModelName, type RunOptions, type RunResult } from "./run.js";
