// GraphiQL's files, taken byte for byte from the npm packages pinned in package-lock.json,
// shipped in the Python package so GET /graphql needs nothing from a CDN. The page
// (greenlight/console/graphiql.py) is strawberry's own, with unpkg.com/<package>@<version>/
// pointed at /console/vendor/<package>@<version>/; its integrity hashes still hold.
import { copyFileSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const modules = join(here, "..", "node_modules");
const vendor = join(here, "..", "..", "greenlight", "console", "static", "vendor");

const files = {
  react: ["umd/react.production.min.js"],
  "react-dom": ["umd/react-dom.production.min.js"],
  "js-cookie": ["dist/js.cookie.min.js"],
  graphiql: ["graphiql.min.css", "graphiql.min.js"],
  "@graphiql/plugin-explorer": ["dist/style.css", "dist/index.umd.js"],
};

rmSync(vendor, { recursive: true, force: true });
for (const [name, paths] of Object.entries(files)) {
  const { version } = JSON.parse(readFileSync(join(modules, name, "package.json"), "utf8"));
  for (const path of paths) {
    const target = join(vendor, `${name}@${version}`, path);
    mkdirSync(dirname(target), { recursive: true });
    copyFileSync(join(modules, name, path), target);
  }
}
