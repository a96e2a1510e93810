// Validates an AsyncAPI document with the AsyncAPI project's parser, Avro payloads
// included. Prints every diagnostic; exits 1 on any error (severity 0), 0 otherwise.
//   node tools/asyncapi/validate.mjs <document.json>
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";
import { AvroSchemaParser } from "@asyncapi/avro-schema-parser";

const parser = new Parser();
parser.registerSchemaParser(AvroSchemaParser());
const text = readFileSync(process.argv[2], "utf8");
const { document, diagnostics } = await parser.parse(text);
for (const d of diagnostics) {
  console.log(JSON.stringify({ severity: d.severity, code: d.code, message: d.message, path: d.path }));
}
const errors = diagnostics.filter((d) => d.severity === 0);
if (!document || errors.length) {
  process.exit(1);
}
console.log(`valid: ${document.channels().length} channels, ${document.operations().length} operations`);
