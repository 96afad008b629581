//! The browsable API page served at `/docs`: one self-contained HTML document (inline style and
//! script, no fonts, no CDN) that reads `/openapi.json` and lists the operations. The register
//! must not send its users' browsers to third parties (ADR 0008).

/// The page.
pub const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>registro API</title>
<style>
 body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 60rem; padding: 1rem 1.5rem; color: #1d1d1f; }
 h1 { font-size: 1.6rem; margin-bottom: .2rem; }
 .op { border: 1px solid #d0d4da; border-radius: 6px; margin: .8rem 0; }
 .op > summary { cursor: pointer; padding: .5rem .8rem; list-style: none; }
 .method { display: inline-block; min-width: 4.5rem; font-weight: 600; text-transform: uppercase; }
 .get { color: #0b6b3a; } .post { color: #0b4f9c; } .put, .patch { color: #8a5a00; } .delete { color: #a11; }
 .path { font-family: ui-monospace, monospace; }
 .body { padding: 0 .8rem .8rem; }
 table { border-collapse: collapse; width: 100%; } td, th { text-align: left; padding: .25rem .4rem; border-top: 1px solid #eee; vertical-align: top; }
 pre { background: #f5f6f8; padding: .6rem; overflow: auto; border-radius: 4px; }
 .muted { color: #666; }
</style>
</head>
<body>
<h1 id="title">registro API</h1>
<p id="description" class="muted">Loading <a href="/openapi.json">/openapi.json</a>…</p>
<div id="ops"></div>
<h2>Schemas</h2>
<div id="schemas"></div>
<script>
"use strict";
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
};
const refName = (s) => (s && s.$ref ? s.$ref.split("/").pop() : null);
const describe = (s) => refName(s) || (s && s.type) || "";
fetch("/openapi.json").then((r) => r.json()).then((spec) => {
  document.getElementById("title").textContent = `${spec.info.title} ${spec.info.version}`;
  document.getElementById("description").textContent = spec.info.description || "";
  const ops = document.getElementById("ops");
  for (const [path, item] of Object.entries(spec.paths || {})) {
    for (const [method, op] of Object.entries(item)) {
      const responses = el("table", {}, el("tr", {}, el("th", {}, "status"), el("th", {}, "description"), el("th", {}, "content"), el("th", {}, "headers")));
      for (const [status, resp] of Object.entries(op.responses || {})) {
        const content = Object.entries(resp.content || {}).map(([type, c]) => `${type} ${describe(c.schema)}`).join(", ");
        const headers = Object.keys(resp.headers || {}).join(", ");
        responses.append(el("tr", {}, el("td", {}, status), el("td", {}, resp.description || ""), el("td", {}, content), el("td", {}, headers)));
      }
      const params = (op.parameters || []).map((p) => `${p.name} (${p.in}${p.required ? ", required" : ""})`).join(", ");
      ops.append(el("details", { class: "op" },
        el("summary", {}, el("span", { class: `method ${method}` }, method), " ", el("span", { class: "path" }, path), " ", el("span", { class: "muted" }, op.summary || "")),
        el("div", { class: "body" },
          el("p", {}, op.description || ""),
          params ? el("p", {}, "Parameters: ", params) : "",
          responses)));
    }
  }
  const schemas = document.getElementById("schemas");
  for (const [name, schema] of Object.entries((spec.components || {}).schemas || {})) {
    schemas.append(el("details", { class: "op" }, el("summary", {}, el("span", { class: "path" }, name)),
      el("div", { class: "body" }, el("pre", {}, JSON.stringify(schema, null, 2)))));
  }
}).catch((e) => {
  document.getElementById("description").textContent = `Could not load /openapi.json: ${e}`;
});
</script>
</body>
</html>
"#;
