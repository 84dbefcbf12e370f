export { describeBackendConformance, type ConformanceOptions } from "./suite.js";
export { randomValues, matmulReference } from "./reference.js";
export { TinyClassifier, tinyClassification } from "./fixtures.js";
