// Module resolve hook (see register.mjs): `fs` / `node:fs` imported from inside the
// conformance package (0.1.16, and 0.2.0-alpha.12 installed as `conformance-2026`) resolves to
// fs-shim.mjs, node's fs plus `globSync`.
const SHIM = new URL("./fs-shim.mjs", import.meta.url).href;
const PACKAGES = ["/node_modules/@modelcontextprotocol/conformance/", "/node_modules/conformance-2026/"];

export async function resolve(specifier, context, next) {
    if ((specifier === "fs" || specifier === "node:fs") && PACKAGES.some((p) => context.parentURL?.includes(p)))
        return { url: SHIM, shortCircuit: true };
    return next(specifier, context);
}
