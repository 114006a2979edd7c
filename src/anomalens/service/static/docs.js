// The API documentation: /openapi.json rendered as a page, with no script from elsewhere.
"use strict";

const METHODS = ["get", "post", "put", "patch", "delete"];

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

/** A short text for a JSON schema: a $ref's name, a type, a list or a union. */
function typeText(schema) {
  if (!schema) return "";
  if (schema.$ref) return schema.$ref.split("/").pop();
  if (schema.anyOf) return schema.anyOf.map(typeText).join(" | ");
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  if (schema.type === "array") return `${typeText(schema.items)}[]`;
  if (schema.type === "object" && schema.additionalProperties) {
    return `{name: ${typeText(schema.additionalProperties)}}`;
  }
  return schema.format === "binary" ? "file" : schema.type || "any";
}

function limits(schema) {
  const parts = [];
  for (const [key, sign] of [["minimum", "≥"], ["exclusiveMinimum", ">"], ["maximum", "≤"], ["exclusiveMaximum", "<"]]) {
    if (schema[key] !== undefined) parts.push(`${sign} ${schema[key]}`);
  }
  if (schema.default !== undefined) parts.push(`default ${JSON.stringify(schema.default)}`);
  return parts.join(", ");
}

function fieldTable(rows) {
  const body = rows.map(([name, where, schema, required, description]) =>
    element(
      "tr", {},
      element("td", {}, element("code", {}, name), required ? " *" : ""),
      element("td", {}, where),
      element("td", {}, element("code", {}, typeText(schema))),
      element("td", {}, [description || schema.description || "", limits(schema)].filter(Boolean).join(" · ")),
    ),
  );
  return element(
    "table", { class: "history fields" },
    element("thead", {}, element("tr", {}, ...["Name", "In", "Type", "About"].map((h) => element("th", {}, h)))),
    element("tbody", {}, ...body),
  );
}

function bodyRows(spec, content) {
  const [type, media] = Object.entries(content)[0];
  let schema = media.schema || {};
  if (schema.$ref) schema = spec.components.schemas[typeText(schema)];
  const required = new Set(schema.required || []);
  const where = type.includes("multipart") ? "form" : "body";
  return Object.entries(schema.properties || {}).map(([name, field]) => [name, where, field, required.has(name)]);
}

function endpoint(spec, path, method, operation) {
  const id = `${method}-${path}`.replace(/[^A-Za-z0-9]+/g, "-");
  const rows = (operation.parameters || []).map((p) => [p.name, p.in, p.schema || {}, p.required, p.description]);
  if (operation.requestBody) rows.push(...bodyRows(spec, operation.requestBody.content));
  const answers = Object.entries(operation.responses || {}).map(([status, response]) => {
    const content = response.content || {};
    const shown = Object.entries(content).map(([type, media]) => `${type}${media.schema ? ` ${typeText(media.schema)}` : ""}`);
    return element("li", {}, element("code", {}, status), ` ${response.description || ""} ${shown.join(", ")}`);
  });
  return element(
    "section", { class: "panel endpoint", id },
    element("h2", {}, element("span", { class: `method ${method}` }, method.toUpperCase()), " ", element("code", {}, path)),
    element("p", {}, operation.summary || ""),
    operation.description ? element("p", { class: "none" }, operation.description) : null,
    rows.length ? fieldTable(rows) : element("p", { class: "none" }, "no parameters"),
    element("ul", { class: "answers" }, ...answers),
  );
}

function schemaSection(name, schema) {
  const required = new Set(schema.required || []);
  const rows = Object.entries(schema.properties || {}).map(([field, value]) => [field, "", value, required.has(field)]);
  return element(
    "div", { class: "schema", id: `schema-${name}` },
    element("h3", {}, name),
    schema.description ? element("p", { class: "none" }, schema.description) : null,
    rows.length ? fieldTable(rows) : null,
  );
}

async function start() {
  const intro = document.querySelector("#docs-intro");
  try {
    const response = await fetch("/openapi.json");
    if (!response.ok) throw new Error(`the server answered ${response.status}`);
    const spec = await response.json();
    document.title = `${spec.info.title} ${spec.info.version} API`;
    intro.textContent = `${spec.info.title} ${spec.info.version}: ${spec.info.description || ""}`;
    intro.dataset.kind = "info";
    const index = [];
    const sections = [];
    for (const [path, item] of Object.entries(spec.paths)) {
      for (const method of METHODS.filter((m) => item[m])) {
        const section = endpoint(spec, path, method, item[method]);
        sections.push(section);
        index.push(element("li", {}, element("a", { href: `#${section.id}` }, `${method.toUpperCase()} ${path}`)));
      }
    }
    document.querySelector("#docs-index").replaceChildren(element("ul", {}, ...index));
    document.querySelector("#docs-endpoints").replaceChildren(...sections);
    const schemas = Object.entries((spec.components || {}).schemas || {});
    document.querySelector("#docs-schemas").replaceChildren(...schemas.map(([n, s]) => schemaSection(n, s)));
  } catch (error) {
    intro.textContent = `could not read /openapi.json: ${error.message}`;
    intro.dataset.kind = "error";
  }
}

start();
