// Files in a local directory as dynamic resources, with every resource option the engine honours
// taken from stack config: the program the engine-semantics tests drive (no lab needed).
// Every provider operation appends a line to <dir>/ops.log, so tests see what ran and in which order.
const pulumi = require("@pulumi/pulumi");

const fileProvider = {
  async check(olds, news) {
    const failures = [];
    if (!news.path || String(news.path).includes("/")) failures.push({ property: "path", reason: "path must be a plain file name" });
    return { inputs: news, failures };
  },
  async diff(id, olds, news) {
    const replaces = olds.path !== news.path ? ["path"] : [];
    // `note` is recorded but never a reason to change anything.
    const changes = replaces.length > 0 || olds.content !== news.content;
    return { changes, replaces, deleteBeforeReplace: true };
  },
  async create(inputs) {
    const fs = require("fs");
    const p = require("path");
    fs.appendFileSync(p.join(inputs.dir, "ops.log"), `create ${inputs.name} ${inputs.path}\n`);
    if (inputs.delayMs) await new Promise((r) => setTimeout(r, inputs.delayMs));
    if (inputs.failCreate === "error") throw new Error(`${inputs.name}: create failed as asked`);
    fs.writeFileSync(p.join(inputs.dir, inputs.path), inputs.content);
    fs.appendFileSync(p.join(inputs.dir, "ops.log"), `created ${inputs.name} ${inputs.path}\n`);
    const outs = { ...inputs, digest: `d-${inputs.content}` };
    if (inputs.failCreate === "partial") throw { id: inputs.path, properties: outs, reasons: ["unhealthy as asked"] };
    return { id: inputs.path, outs };
  },
  async update(id, olds, news) {
    const fs = require("fs");
    const p = require("path");
    fs.appendFileSync(p.join(news.dir, "ops.log"), `update ${news.name} ${news.path}\n`);
    fs.writeFileSync(p.join(news.dir, news.path), news.content);
    return { outs: { ...news, digest: `d-${news.content}` } };
  },
  async read(id, props) {
    const fs = require("fs");
    const p = require("path");
    const f = p.join(props.dir, props.path);
    if (!fs.existsSync(f)) return {};
    const content = fs.readFileSync(f, "utf8");
    return { id, props: { ...props, content, digest: `d-${content}` } };
  },
  async delete(id, props) {
    const fs = require("fs");
    const p = require("path");
    fs.appendFileSync(p.join(props.dir, "ops.log"), `delete ${props.name} ${props.path}\n`);
    fs.rmSync(p.join(props.dir, props.path), { force: true });
  },
};

class LocalFile extends pulumi.dynamic.Resource {
  constructor(name, args, opts) {
    super(fileProvider, name, { digest: undefined, name, ...args }, opts);
  }
}

class Group extends pulumi.ComponentResource {
  constructor(name, opts) {
    super("test:index:Group", name, {}, opts);
    this.registerOutputs({ name });
  }
}

const config = new pulumi.Config();
const dir = config.require("dir");
const groups = {};
for (const g of config.getObject("groups") ?? []) groups[g] = new Group(g);
const files = config.requireObject("files");
const made = {};
const out = {};
for (const [name, f] of Object.entries(files)) {
  const opts = {
    protect: f.protect, retainOnDelete: f.retain, ignoreChanges: f.ignore, deleteBeforeReplace: f.dbr,
    replaceOnChanges: f.replaceOnChanges, parent: f.parent ? groups[f.parent] : undefined,
    aliases: (f.aliases ?? []).map((a) => ({ name: a })),
    dependsOn: (f.dependsOn ?? []).map((d) => made[d]),
  };
  made[name] = new LocalFile(name, { dir, path: f.path ?? `${name}.txt`, content: f.content ?? name, note: f.note ?? "", delayMs: f.delayMs ?? 0, failCreate: f.failCreate ?? "" }, opts);
  out[name] = made[name].digest;
}
for (const m of config.getObject("warn") ?? []) pulumi.log.warn(m);
if (config.get("throw")) throw new Error(config.get("throw"));
module.exports = out;
