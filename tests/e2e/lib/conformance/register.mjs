// Registered with `node --import` before the conformance suite loads: its build imports
// `globSync` from `fs`, which Node 20 does not have. The hook below gives that one package a
// `fs` with `globSync` taken from the `glob` package; every other importer gets node's own.
import { register } from "node:module";

register("./fs-hook.mjs", import.meta.url);
