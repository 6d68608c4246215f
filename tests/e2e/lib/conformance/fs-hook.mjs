// Module resolve hook (see register.mjs): `fs` / `node:fs` imported from inside the
// conformance package resolves to fs-shim.mjs, node's fs plus `globSync`.
const SHIM = new URL("./fs-shim.mjs", import.meta.url).href;
const PACKAGE = "/node_modules/@modelcontextprotocol/conformance/";

export async function resolve(specifier, context, next) {
    if ((specifier === "fs" || specifier === "node:fs") && context.parentURL?.includes(PACKAGE))
        return { url: SHIM, shortCircuit: true };
    return next(specifier, context);
}
