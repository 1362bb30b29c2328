import assert from "node:assert/strict";
import {
  checkLayers,
  findCycles,
  importProblem,
  importsOf,
  layerOf,
  layerTable,
  MAY_IMPORT,
  resolveImport,
} from "./check_layers.ts";

Deno.test("importsOf finds static, dynamic and worker imports, and skips comments", () => {
  const source = [
    `/** \`\`\`ts\n * import { x } from "./example.ts";\n * \`\`\` */`,
    `import { a } from "./a.ts";`,
    `import type {\n  B,\n} from "../b/b.ts";`,
    `export { c } from "./c.ts";`,
    `// import { d } from "./d.ts";`,
    `const e = await import("./e.ts");`,
    `new Worker(new URL("./f.ts", import.meta.url), { type: "module" });`,
    `import fc from "fast-check";`,
  ].join("\n");
  assert.deepEqual(importsOf(source), ["./a.ts", "../b/b.ts", "./c.ts", "./e.ts", "./f.ts"]);
});

Deno.test("resolveImport joins a relative import onto the importer's folder", () => {
  assert.equal(resolveImport("session/session.ts", "../wire/front_end.ts"), "wire/front_end.ts");
  assert.equal(resolveImport("server.ts", "./server/server_cli.ts"), "server/server_cli.ts");
  assert.equal(resolveImport("io/driver_epoll.ts", "./libc.ts"), "io/libc.ts");
});

Deno.test("layerOf is the folder, the top level's table, or test", () => {
  assert.equal(layerOf("session/session.ts"), "session");
  assert.equal(layerOf("protocol.ts"), "codec");
  assert.equal(layerOf("server.ts"), "entry");
  assert.equal(layerOf("session/session_test.ts"), "test");
  assert.equal(layerOf("testing/processes.ts"), "testing");
  assert.equal(layerOf("tests/server_test.ts"), "test");
  assert.equal(layerOf("elsewhere/x.ts"), undefined);
  assert.equal(layerOf("stray.ts"), undefined);
});

Deno.test("importProblem allows the table's imports and refuses one up a layer", () => {
  assert.equal(importProblem({ from: "session/session.ts", to: "wire/front_end.ts" }), undefined);
  assert.equal(importProblem({ from: "wire/binary_front_end.ts", to: "protocol.ts" }), undefined);
  assert.equal(importProblem({ from: "session/a.ts", to: "session/b.ts" }), undefined);
  assert.match(
    importProblem({ from: "session/session.ts", to: "io/driver_epoll.ts" })!,
    /session\/session\.ts \(session\) imports io\/driver_epoll\.ts \(io\)/,
  );
  assert.match(importProblem({ from: "book/addressbook.ts", to: "protocol.ts" })!, /\(codec\)/);
  assert.match(importProblem({ from: "stray.ts", to: "protocol.ts" })!, /in no layer/);
  assert.match(importProblem({ from: "io/x.ts", to: "io/x_test.ts" })!, /test module/);
});

Deno.test("importProblem lets tests import anything, and test helpers all but an entry point", () => {
  assert.equal(importProblem({ from: "tests/x_test.ts", to: "io/driver_epoll.ts" }), undefined);
  assert.equal(importProblem({ from: "tests/x_test.ts", to: "server.ts" }), undefined);
  assert.equal(importProblem({ from: "testing/processes.ts", to: "server/start.ts" }), undefined);
  assert.match(importProblem({ from: "testing/processes.ts", to: "server.ts" })!, /entry point/);
  assert.match(importProblem({ from: "server/cli.ts", to: "client.ts" })!, /entry point/);
  assert.equal(importProblem({ from: "server.ts", to: "server/server_cli.ts" }), undefined);
});

Deno.test("findCycles finds each cycle once, and none in a tree", () => {
  const cyclic = new Map([["a", ["b"]], ["b", ["c"]], ["c", ["a"]], ["d", ["a"]]]);
  assert.deepEqual(findCycles(cyclic), [["a", "b", "c", "a"]]);
  const tree = new Map([["a", ["b", "c"]], ["b", ["c"]], ["c", []]]);
  assert.deepEqual(findCycles(tree), []);
});

Deno.test("every layer's row names only layers of the table, and none names itself", () => {
  for (const [layer, may] of Object.entries(MAY_IMPORT)) {
    for (const other of may) {
      assert.ok(other in MAY_IMPORT, `${layer} names ${other}`);
      assert.notEqual(other, layer);
    }
  }
  assert.equal(
    findCycles(new Map(Object.entries(MAY_IMPORT))).length,
    0,
    "the layers form no cycle",
  );
  assert.match(layerTable(), /^\| layer \| may import \|/);
});

Deno.test("checkLayers reports an import up a layer, a missing module and a cycle in a real tree", async () => {
  const root = await Deno.makeTempDir({ prefix: "check_layers_" });
  try {
    const files: Record<string, string> = {
      "protocol.ts": `export const X = 1;\n`,
      "book/book.ts": `import { Y } from "../session/session.ts";\nexport const B = Y;\n`,
      "session/session.ts": `import { B } from "../book/book.ts";\nexport const Y = B;\n`,
      "wire/front.ts": `import { X } from "../protocol.ts";\nimport "./gone.ts";\n`,
    };
    for (const [path, source] of Object.entries(files)) {
      await Deno.mkdir(`${root}/${path}`.replace(/\/[^/]+$/, ""), { recursive: true });
      await Deno.writeTextFile(`${root}/${path}`, source);
    }
    const problems = await checkLayers(root);
    assert.deepEqual(problems, [
      "book/book.ts (book) imports session/session.ts (session), which its layer may not",
      "wire/front.ts imports wire/gone.ts, which does not exist",
      "import cycle: book/book.ts -> session/session.ts -> book/book.ts",
    ]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("the repository itself keeps to its layers", async () => {
  const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  assert.deepEqual(await checkLayers(root), []);
});
