// node's fs with `globSync` added when this Node lacks it (Node 20); see register.mjs.
import fs from "node:fs";
import { globSync as packageGlobSync } from "glob";

export * from "node:fs";
export default fs;
export const globSync = fs.globSync ?? packageGlobSync;
