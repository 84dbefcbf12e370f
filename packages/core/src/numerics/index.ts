export * from "./float16.js";
export * from "./bfloat16.js";
export * from "./convert.js";
export * from "./formats.js";
