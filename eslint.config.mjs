// @ts-check
import js from "@eslint/js"
import tseslint from "typescript-eslint"

export default tseslint.config(
  { ignores: ["**/dist/**", "**/node_modules/**", "**/*.d.ts", "**/.turbo/**", "**/.generated/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/no-explicit-any": "off",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-empty-object-type": "off",
      "no-constant-condition": "off"
    }
  },
  {
    // @flexec/testing loads without vitest: only its lazy loader may name it (types aside)
    files: ["packages/testing/src/**/*.ts"],
    ignores: ["packages/testing/src/internal/vitest.ts"],
    rules: {
      "no-restricted-imports": ["error", { paths: [
        { name: "vitest", message: "import describe/it/expect from internal/vitest.js: @flexec/testing must load without vitest", allowTypeImports: true },
        { name: "@effect/vitest", message: "@flexec/testing must load without vitest", allowTypeImports: true }
      ] }]
    }
  },
  {
    // the byte codec is shared with the worker runtime, which imports only node: built-ins
    files: ["packages/core/src/protocol/Frame.ts", "packages/core/src/worker/**/*.ts"],
    rules: {
      "no-restricted-imports": ["error", { patterns: [
        { regex: "^(?!node:|\\.)", message: "the worker runtime and protocol/Frame.ts import only node: built-ins and their own modules" }
      ] }]
    }
  },
  {
    files: ["**/*.js", "**/*.cjs", "**/*.mjs"],
    languageOptions: { globals: { process: "readonly", require: "readonly", module: "writable", console: "readonly", Buffer: "readonly", setTimeout: "readonly", clearTimeout: "readonly", setInterval: "readonly", clearInterval: "readonly", __dirname: "readonly" } },
    rules: { "@typescript-eslint/no-require-imports": "off" }
  }
)
