export { main, type CliIO } from "./main.js";
export { DEMOS, type Demo, type DemoDefaults, type DemoOutcome } from "./demos.js";
export { loadMnist, mnistLoaders, type MnistSplits } from "./mnist.js";
export { MnistClassifier, MnistCnn } from "./models.js";
export { MNIST_MODELS, trainMnist, type MnistModelName, type RunOptions, type RunResult } from "./run.js";
export {
  CharTransformer,
  DEFAULT_CHAR_TRANSFORMER,
  sampleNames,
  trainNames,
  type CharTransformerConfig,
  type NamesRunOptions,
  type NamesRunResult,
} from "./transformer.js";
export { bigramNll, loadNames, nameDataset, predictedCharacters, splitNames, Vocabulary } from "./names.js";
export { namesSummary, transformerDemoPrecision } from "./transformer-demo.js";
