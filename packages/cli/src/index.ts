export { main, type CliIO } from "./main.js";
export { CharTransformer, DEFAULT_CHAR_TRANSFORMER, sampleNames, trainNames, type CharTransformerConfig, type NamesRunOptions, type NamesRunResult } from "./transformer.js";
export { bigramNll, loadNames, nameDataset, predictedCharacters, splitNames, Vocabulary } from "./names.js";
export { namesSummary, transformerDemoPrecision } from "./transformer-demo.js";
