// A file on a host, written over ssh: the smallest real dynamic resource, used to test the
// engine harness. Plain JS so the plugin process can load it without a compiler.
const pulumi = require("@pulumi/pulumi");

const fileProvider = {
  async check(olds, news) {
    const failures = [];
    if (!news.path || !String(news.path).startsWith("/")) failures.push({ property: "path", reason: "path must be absolute" });
    return { inputs: news, failures };
  },
  async diff(id, olds, news) {
    const replaces = olds.path !== news.path || olds.host !== news.host ? ["path"] : [];
    const changes = replaces.length > 0 || olds.content !== news.content || olds.mode !== news.mode;
    return { changes, replaces, deleteBeforeReplace: false };
  },
  async create(inputs) {
    const impl = require("./remote-file-impl");
    await impl.write(inputs);
    console.log(`${inputs.name}: wrote ${inputs.path}`);
    return { id: `${inputs.host}:${inputs.path}`, outs: { ...inputs, digest: impl.digest(inputs.content) } };
  },
  async update(id, olds, news) {
    const impl = require("./remote-file-impl");
    await impl.write(news);
    return { outs: { ...news, digest: impl.digest(news.content) } };
  },
  async read(id, props) {
    const impl = require("./remote-file-impl");
    const content = await impl.read(props);
    if (content === undefined) return {};
    return { id, props: { ...props, content, digest: impl.digest(content) } };
  },
  async delete(id, props) {
    await require("./remote-file-impl").remove(props);
  },
};

class RemoteFile extends pulumi.dynamic.Resource {
  constructor(name, args, opts) {
    super(fileProvider, name, { digest: undefined, name, ...args }, opts);
  }
}

const config = new pulumi.Config();
const host = config.require("host");
const keyPath = config.require("keyPath");
const files = config.requireObject("files");
const out = {};
for (const [name, f] of Object.entries(files)) {
  const r = new RemoteFile(name, { host, keyPath, path: f.path, content: f.content, mode: f.mode || "0644" });
  out[name] = r.digest;
}
module.exports = out;
