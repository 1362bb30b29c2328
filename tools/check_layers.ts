/**
 * Checks the layering of the code: fails on an import that goes up a layer
 * (or sideways where the table below does not allow it) and on an import
 * cycle. `deno task check` runs it, and so CI. Deno's standard library
 * keeps its own packages apart with a tool of the same kind
 * (`_tools/check_circular_package_dependencies.ts`).
 *
 * Each module's layer is its folder; the entry points at the top level have
 * their own (see {@linkcode TOP_LEVEL}). A module may import modules of its
 * own layer and of the layers its row in {@linkcode MAY_IMPORT} names.
 * Tests (`*_test.ts`, `tests/`) may import any module. Test helpers
 * (`testing/`) may import any layer but the entry points `server.ts` and
 * `client.ts`, which only start things: test scaffolding sits beside the
 * product, not above it.
 *
 * ```sh
 * deno run --allow-read tools/check_layers.ts        # prints each violation; exit 1 if any
 * deno run --allow-read tools/check_layers.ts --table # prints the layer table, for the README
 * ```
 *
 * @module
 */

/**
 * Which layers each layer may import, bottom up. The README's "Layers and
 * folders" shows the same table (`--table` prints it).
 */
export const MAY_IMPORT: Readonly<Record<string, readonly string[]>> = {
  common: [],
  codec: ["common"],
  book: ["common"],
  access: ["common"],
  wire: ["codec", "book", "common"],
  session: ["wire", "access", "book", "common"],
  transport: ["session", "common"],
  io: ["session", "transport", "wire", "access", "book", "common"],
  server: ["io", "session", "transport", "wire", "access", "book", "codec", "common"],
  client: ["codec", "common"],
  tools: ["book", "codec", "common"],
  testing: [
    "server",
    "io",
    "session",
    "transport",
    "wire",
    "access",
    "book",
    "codec",
    "client",
    "tools",
    "common",
  ],
  bench: ["testing", "client", "tools", "transport", "wire", "access", "book", "codec", "common"],
  entry: ["server", "client", "transport"],
};

/** The layer of each module kept at the top level. */
export const TOP_LEVEL: Readonly<Record<string, string>> = {
  "protocol.ts": "codec",
  "server.ts": "entry",
  "client.ts": "entry",
};

/** Folders that hold no code of the project. */
const SKIPPED: ReadonlySet<string> = new Set([".git", "dist", "node_modules", "data", "deploy"]);

/** One import of one module by another, as paths from the repository's root. */
export interface Import {
  from: string;
  to: string;
}

const IMPORT =
  /(?:import|export)\s[^;]*?from\s+["'](\.{1,2}\/[^"']+)["']|import\(\s*["'](\.{1,2}\/[^"']+)["']\s*\)|new URL\(\s*["'](\.{1,2}\/[^"']+\.ts)["']|^import\s+["'](\.{1,2}\/[^"']+)["']/gms;

/** The relative imports in a module's source (comments are skipped: examples import the module itself). */
export function importsOf(source: string): string[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  return [...code.matchAll(IMPORT)].map((match) => match[1] ?? match[2] ?? match[3] ?? match[4]);
}

/** The layer of a module, by its path from the root: `test` for tests, which may import anything. */
export function layerOf(path: string): string | undefined {
  const parts = path.split("/");
  if (path.endsWith("_test.ts") || parts[0] === "tests") return "test";
  if (parts.length === 1) return TOP_LEVEL[path];
  return parts[0] in MAY_IMPORT ? parts[0] : undefined;
}

/** What is wrong with one import, or `undefined` when the table allows it. */
export function importProblem({ from, to }: Import): string | undefined {
  const fromLayer = layerOf(from);
  const toLayer = layerOf(to);
  if (fromLayer === undefined) return `${from} is in no layer: add its folder to the table`;
  if (fromLayer === "test") return undefined;
  if (toLayer === "entry" && fromLayer !== "entry") {
    return `${from} imports the entry point ${to}: import the module it starts instead`;
  }
  if (toLayer === fromLayer) return undefined;
  if (toLayer === "test") return `${from} imports the test module ${to}`;
  if (toLayer === undefined || !MAY_IMPORT[fromLayer].includes(toLayer)) {
    return `${from} (${fromLayer}) imports ${to} (${
      toLayer ?? "no layer"
    }), which its layer may not`;
  }
  return undefined;
}

/** Every import cycle in a graph of modules, each as a path that returns to its start. */
export function findCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  const cycles: string[][] = [];
  const state = new Map<string, "visiting" | "done">();
  const stack: string[] = [];
  const visit = (module: string) => {
    state.set(module, "visiting");
    stack.push(module);
    for (const next of graph.get(module) ?? []) {
      if (!graph.has(next)) continue;
      if (state.get(next) === "visiting") cycles.push([...stack.slice(stack.indexOf(next)), next]);
      else if (state.get(next) === undefined) visit(next);
    }
    stack.pop();
    state.set(module, "done");
  };
  for (const module of [...graph.keys()].sort()) {
    if (state.get(module) === undefined) visit(module);
  }
  return cycles;
}

/** Joins a relative import onto the importing module's folder: a path from the root. */
export function resolveImport(from: string, specifier: string): string {
  const parts = from.split("/").slice(0, -1);
  for (const part of specifier.split("/")) {
    if (part === "..") parts.pop();
    else if (part !== ".") parts.push(part);
  }
  return parts.join("/");
}

/** Reads every module under `root` into a graph of imports, by path from the root. */
export async function readGraph(root: string): Promise<Map<string, string[]>> {
  const graph = new Map<string, string[]>();
  const walk = async (folder: string) => {
    for await (const entry of Deno.readDir(`${root}/${folder}`)) {
      const path = folder === "" ? entry.name : `${folder}/${entry.name}`;
      if (entry.isDirectory && !SKIPPED.has(entry.name) && !entry.name.startsWith(".")) {
        await walk(path);
      } else if (entry.isFile && entry.name.endsWith(".ts")) {
        const source = await Deno.readTextFile(`${root}/${path}`);
        const imports = importsOf(source).map((specifier) => resolveImport(path, specifier));
        // A module that starts itself as a worker imports itself: not a cycle.
        graph.set(path, [...new Set(imports)].filter((to) => to !== path));
      }
    }
  };
  await walk("");
  return graph;
}

/** Every problem in the repository at `root`: bad imports, then cycles. */
export async function checkLayers(root: string): Promise<string[]> {
  const graph = await readGraph(root);
  const problems: string[] = [];
  for (const [from, imports] of [...graph].sort(([a], [b]) => a.localeCompare(b))) {
    for (const to of imports) {
      if (!graph.has(to)) {
        // Tests hold module sources as text; deno check finds their real imports.
        if (to.endsWith(".ts") && layerOf(from) !== "test") {
          problems.push(`${from} imports ${to}, which does not exist`);
        }
        continue;
      }
      const problem = importProblem({ from, to });
      if (problem !== undefined) problems.push(problem);
    }
  }
  for (const cycle of findCycles(graph)) problems.push(`import cycle: ${cycle.join(" -> ")}`);
  return problems;
}

/** The layer table as Markdown, for the README. */
export function layerTable(): string {
  const rows = Object.entries(MAY_IMPORT).map(([layer, may]) =>
    `| \`${layer}\` | ${may.length === 0 ? "nothing" : may.map((l) => `\`${l}\``).join(", ")} |`
  );
  return ["| layer | may import |", "| --- | --- |", ...rows].join("\n");
}

if (import.meta.main) {
  if (Deno.args.includes("--table")) {
    console.log(layerTable());
    Deno.exit(0);
  }
  const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  const problems = await checkLayers(root);
  for (const problem of problems) console.error(`check_layers: ${problem}`);
  if (problems.length > 0) {
    console.error(
      `check_layers: ${problems.length} problems; see the table in tools/check_layers.ts.`,
    );
    Deno.exit(1);
  }
}
