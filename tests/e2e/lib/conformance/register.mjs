// Registered with `node --import` before the conformance suite loads: its build (0.1.16 and
// 0.2.0-alpha.12 alike) imports `globSync` from `fs`, which Node 20 does not have; that is the
// only API either needs beyond Node 20. The hook below gives those packages a `fs` with
// `globSync` taken from the `glob` package; every other importer gets node's own.
import { register } from "node:module";

register("./fs-hook.mjs", import.meta.url);
