// Writes the tool, prompt and resource definitions of the npm reference servers installed in
// tests/e2e/node_modules to tests/integrity/corpus/benign/<server>.json (the benign corpus).
// Run from tests/e2e: node lib/dump-benign.mjs
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const nm = join(here, '../node_modules/@modelcontextprotocol');
const scratch = mkdtempSync(join(tmpdir(), 'tg-benign-'));
const servers = [
  ['server-everything', [join(nm, 'server-everything/dist/index.js'), 'stdio']],
  ['server-filesystem', [join(nm, 'server-filesystem/dist/index.js'), scratch]],
  ['server-memory', [join(nm, 'server-memory/dist/index.js')]],
];

for (const [name, args] of servers) {
  const transport = new StdioClientTransport({
    command: process.execPath, args, stderr: 'ignore',
    env: { ...process.env, MEMORY_FILE_PATH: join(scratch, 'memory.jsonl') },
  });
  const client = new Client({ name: 'corpus-dump', version: '1.0.0' });
  await client.connect(transport);
  const caps = client.getServerCapabilities() ?? {};
  const out = { server: name, tools: [], prompts: [], resources: [], resourceTemplates: [] };
  if (caps.tools) out.tools = (await client.listTools()).tools;
  if (caps.prompts) out.prompts = (await client.listPrompts()).prompts;
  if (caps.resources) {
    out.resources = (await client.listResources()).resources;
    out.resourceTemplates = (await client.listResourceTemplates()).resourceTemplates;
  }
  writeFileSync(join(here, '../../integrity/corpus/benign', `${name}.json`), JSON.stringify(out, null, 2) + '\n');
  console.log(name, out.tools.length, 'tools', out.prompts.length, 'prompts',
    out.resources.length, 'resources', out.resourceTemplates.length, 'templates');
  await client.close();
}
