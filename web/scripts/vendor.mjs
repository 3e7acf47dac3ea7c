// Writes the copy of the SDK that gateways serve under /sdk/ (gateway/frys/gateway/static/sdk):
// the SDK's modules and type declarations as they are, except deps.js, whose two package
// imports point at the ES module builds of those packages vendored next to it. Pages then
// load the SDK with a plain <script type="module">: no bundler, no import map, no other host.
//
//   npm run vendor          write the copy (commit it)
//   npm run vendor -- --check   exit 1 when the committed copy is out of date
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const web = join(dirname(fileURLToPath(import.meta.url)), "..");
const target = join(web, "..", "gateway", "frys", "gateway", "static", "sdk");
const check = process.argv.includes("--check");

/** The vendored builds: package, the folder of its ES module build, where it goes. */
const PACKAGES = [
  { name: "@msgpack/msgpack", build: "dist.esm", into: "vendor/msgpack", license: "LICENSE" },
  { name: "fzstd", build: "esm", into: "vendor/fzstd", license: "LICENSE" },
];

/** The import of each package in src/deps.js, as the served copy writes it. */
export const REWRITES = {
  '"@msgpack/msgpack"': '"./vendor/msgpack/index.mjs"',
  '"fzstd"': '"./vendor/fzstd/index.mjs"',
};

/** @type {Map<string, Buffer | string>} */
const files = new Map();

for (const name of readdirSync(join(web, "src"))) {
  if (!name.endsWith(".js")) continue;
  let text = readFileSync(join(web, "src", name), "utf8");
  if (name === "deps.js") {
    for (const [from, to] of Object.entries(REWRITES)) text = text.replace(from, to);
  }
  files.set(name, text);
}
for (const name of readdirSync(join(web, "types"))) {
  if (name.endsWith(".d.ts")) files.set(name, readFileSync(join(web, "types", name), "utf8"));
}

/** @param {string} dir @returns {string[]} */
function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : [path];
  });
}

const versions = {};
const modules = join(web, "node_modules");
if (existsSync(modules)) {
  for (const pkg of PACKAGES) {
    const root = join(modules, pkg.name);
    const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
    versions[pkg.name] = manifest.version;
    for (const path of walk(join(root, pkg.build))) {
      if (!path.endsWith(".mjs")) continue;
      // Source maps are not shipped: drop the comment that would make a browser ask for one.
      const text = readFileSync(path, "utf8").replace(/\n\/\/# sourceMappingURL=\S+\s*$/, "\n");
      files.set(join(pkg.into, relative(join(root, pkg.build), path)), text);
    }
    files.set(join(pkg.into, "LICENSE"), readFileSync(join(root, pkg.license)));
  }
  files.set("vendor/VERSIONS.json", `${JSON.stringify(versions, null, 2)}\n`);
} else if (!check) {
  console.error("web/node_modules is missing: run `npm ci` in web/ first");
  process.exit(2);
}

/** @param {Buffer | string} data */
const digest = (data) => createHash("sha256").update(data).digest("hex");

if (check) {
  const stale = [];
  for (const [name, data] of files) {
    const path = join(target, name);
    if (!existsSync(path) || digest(readFileSync(path)) !== digest(Buffer.from(data))) stale.push(name);
  }
  if (stale.length) {
    console.error(`gateway/frys/gateway/static/sdk is out of date (${stale.join(", ")}): run npm run vendor`);
    process.exit(1);
  }
  console.log(`static/sdk is up to date (${files.size} files checked)`);
} else {
  rmSync(target, { recursive: true, force: true });
  for (const [name, data] of files) {
    mkdirSync(dirname(join(target, name)), { recursive: true });
    writeFileSync(join(target, name), data);
  }
  console.log(`wrote ${files.size} files to ${relative(join(web, ".."), target)}`);
}
